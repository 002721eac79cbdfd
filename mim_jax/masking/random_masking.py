"""MAE uniform random masking (He et al. 2022, ``facebookresearch/mae`` ``random_masking``)."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from mim_jax.masking.base import MaskGenerator
from mim_jax.masking.core import Grid, Masks, masks_from_scores


@dataclasses.dataclass(frozen=True)
class RandomMasking(MaskGenerator):
    """Each sample keeps K patches drawn uniformly without replacement.

    As in MAE: float32 uniform noise per patch, the K *smallest* values stay visible, and ``keep``
    lists them in noise order (not raster order). Works on any grid rank (images, video, audio).
    """

    name = "random"
    ndims = (1, 2, 3)

    def _generate(self, key: jax.Array, *, batch_size: int, grid: Grid, k: int) -> Masks:
        noise = jax.random.uniform(key, (batch_size, math.prod(grid)), jnp.float32)
        return masks_from_scores(-noise, k)
