"""Data-independent masks as pure, jit-compiled functions of a PRNG key.

>>> from mim_jax import masking
>>> gen = masking.get("green")
>>> m = gen(jax.random.key(0), batch_size=8, grid=(14, 14), mask_ratio=0.75)

See :func:`get` for every strategy and its options, :class:`Masks` for the output, and
:mod:`mim_jax.masking.core` for the single rounding rule of the visible count.
"""

from mim_jax.masking import stats
from mim_jax.masking.base import MaskGenerator
from mim_jax.masking.color import COLORS
from mim_jax.masking.colorbank import generate_bank, load_bank, save_bank
from mim_jax.masking.core import Masks, num_masked, num_visible
from mim_jax.masking.registry import STRATEGIES, get, names

__all__ = [
    "COLORS",
    "STRATEGIES",
    "MaskGenerator",
    "Masks",
    "generate_bank",
    "get",
    "load_bank",
    "names",
    "num_masked",
    "num_visible",
    "save_bank",
    "stats",
]
