"""SimMIM masking (Xie et al. 2022, ``microsoft/SimMIM`` ``data_simmim.py::MaskGenerator``)."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from mim_jax.masking.base import MaskGenerator
from mim_jax.masking.core import Grid, Masks, masks_from_scores


@dataclasses.dataclass(frozen=True)
class SimMIMMasking(MaskGenerator):
    """Random masking on a coarse grid of ``scale x scale``-patch cells, upsampled to patches.

    Options:
      scale: coarse cell side in patches, ``mask_patch_size / model_patch_size`` (SimMIM's
        ViT recipe: 32 / 16 = 2; its Swin recipe: 32 / 4 = 8). Both grid sides must divide by it.

    Coarse cells are ranked by uniform noise and whole cells are masked in that order. The
    reference masks ``ceil(r * cells)`` whole cells; mim_jax keeps the shared static count K
    instead, so when the masked count is not a multiple of ``scale**2`` the last cell in the
    ranking is split: a random part of it is masked, the rest stays visible. Every other cell
    is masked or visible as a whole.
    """

    name = "simmim"
    scale: int = 2

    def _validate_options(self) -> None:
        if not isinstance(self.scale, int) or self.scale < 1:
            raise ValueError(f"simmim: option scale must be an int >= 1, got {self.scale!r}.")

    def _check(self, grid: Grid, k: int, mask_ratio: float) -> None:
        h, w = grid
        if h % self.scale or w % self.scale:
            raise ValueError(
                f"simmim: grid {grid} is not divisible into {self.scale}x{self.scale} coarse "
                f"cells (scale = mask_patch_size / patch_size); choose a scale dividing both "
                f"sides, e.g. one of {[s for s in range(1, min(h, w) + 1) if h % s == w % s == 0]}."
            )

    def _generate(self, key: jax.Array, *, batch_size: int, grid: Grid, k: int) -> Masks:
        h, w = grid
        s = self.scale
        key_cells, key_split = jax.random.split(key)
        cell_noise = jax.random.uniform(key_cells, (batch_size, h // s, w // s), jnp.float32)
        flat = cell_noise.reshape(batch_size, -1)
        cell_rank = jnp.argsort(jnp.argsort(flat, axis=-1), axis=-1).reshape(cell_noise.shape)
        patch_rank = jnp.repeat(jnp.repeat(cell_rank, s, axis=1), s, axis=2).reshape(batch_size, -1)
        within_cell = jax.random.uniform(key_split, (batch_size, h * w), jnp.float32)
        scores = -patch_rank.astype(jnp.float32) - 0.5 * within_cell
        return masks_from_scores(scores, k)
