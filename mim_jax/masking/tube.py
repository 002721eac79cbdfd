"""VideoMAE tube masking (Tong et al. 2022, ``MCG-NJU/VideoMAE`` ``TubeMaskingGenerator``)."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from mim_jax.masking.base import MaskGenerator
from mim_jax.masking.core import Grid, Masks, masks_from_scores


@dataclasses.dataclass(frozen=True)
class TubeMasking(MaskGenerator):
    """One random spatial pattern per sample, repeated over every time step of a (T, H, W) grid.

    K/T patches per frame are drawn uniformly without replacement; all frames share them, so
    the visible set is a union of "tubes". The shared rounding rule must give a K divisible by
    T; otherwise the call fails and names the nearest ratios that work.
    """

    name = "tube"
    ndims = (3,)

    def _check(self, grid: Grid, k: int, mask_ratio: float) -> None:
        t, h, w = grid
        if k % t == 0:
            return
        n = t * h * w
        below, above = (k // t) * t, (k // t + 1) * t
        options = [f"{(n - kk) / n:.6g} (K={kk})" for kk in (above, below) if 0 < kk < n]
        raise ValueError(
            f"tube: mask_ratio={mask_ratio} on grid {grid} gives K={k} visible patches, which is "
            f"not a multiple of T={t}, so the pattern cannot repeat in every frame. Ratios near "
            f"it that work: {', '.join(options)}."
        )

    def _generate(self, key: jax.Array, *, batch_size: int, grid: Grid, k: int) -> Masks:
        t, h, w = grid
        noise = jax.random.uniform(key, (batch_size, h * w), jnp.float32)
        # Integer ranks (0 = visible first) make the tiled scores tie only across frames, so the
        # top K are exactly the K/T best spatial positions in every frame.
        spatial_rank = jnp.argsort(jnp.argsort(noise, axis=-1), axis=-1).astype(jnp.int32)
        scores = jnp.tile(-spatial_rank, (1, t))
        return masks_from_scores(scores, k)
