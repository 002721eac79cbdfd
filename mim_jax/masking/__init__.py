"""Data-independent masks as pure, jit-compiled functions of a PRNG key.

>>> import jax
>>> from mim_jax import masking
>>> gen = masking.get("green")
>>> m = gen(jax.random.key(0), batch_size=8, grid=(14, 14), mask_ratio=0.75)
>>> m.keep.shape, m.mask.shape
((8, 49), (8, 196))

``help(masking.get)`` is the user guide: every name (:func:`names`), the call arguments, the
common and per-strategy options, the returned :class:`Masks` fields with shapes and dtypes, the
rounding rule of the visible count (:func:`num_visible`, defined once in
:mod:`mim_jax.masking.core`) and the errors. :mod:`mim_jax.masking.stats` measures masks
(spectra, visible-cluster sizes, per-position frequency) and :mod:`mim_jax.masking.viz` draws
them; ``notebooks/masking_explorer.ipynb`` shows both.
"""

from mim_jax.masking import stats
from mim_jax.masking.base import MaskGenerator
from mim_jax.masking.color import COLORS, FILTERS, color_noise
from mim_jax.masking.colorbank import generate_bank, load_bank, save_bank
from mim_jax.masking.core import Masks, num_masked, num_visible
from mim_jax.masking.registry import STRATEGIES, get, names
from mim_jax.masking.spec import MaskSpec, mask_options, mask_spec_from_config

__all__ = [
    "COLORS",
    "FILTERS",
    "STRATEGIES",
    "MaskGenerator",
    "MaskSpec",
    "Masks",
    "color_noise",
    "generate_bank",
    "get",
    "load_bank",
    "mask_options",
    "mask_spec_from_config",
    "names",
    "num_masked",
    "num_visible",
    "save_bank",
    "stats",
]
