"""Regular-lattice masking: the MAE paper's fixed ``grid`` and UM-MAE's randomised ``uniform``.

``grid`` (MAE §4, Fig. 6 "grid-wise sampling"; no official code): keep one patch per
``period x period`` cell at a fixed position. ``uniform`` (Li et al. 2022, ``implus/UM-MAE``
``RandomMaskingGenerator(regular=True)``): keep one patch per 2x2 cell at a random position,
optionally hiding a fraction of the visible tokens again (secondary masking).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from mim_jax.masking.base import MaskGenerator, positive
from mim_jax.masking.core import Grid, Masks, masks_from_boolean, num_visible


def _check_lattice(name: str, grid: Grid, k: int, mask_ratio: float, period: int) -> None:
    h, w = grid
    if h % period or w % period:
        raise ValueError(
            f"{name}: keeps one patch per {period}x{period} cell, so both grid sides must be "
            f"multiples of {period}; got grid {grid}. Use an image size that is a multiple of "
            f"{period} * patch_size, or another strategy."
        )
    cells = (h // period) * (w // period)
    if k != cells:
        exact = 1.0 - 1.0 / period**2
        raise ValueError(
            f"{name}: one visible patch per {period}x{period} cell means mask_ratio={exact:g} "
            f"(K={cells} of {h * w}); got mask_ratio={mask_ratio} (K={k})."
        )


@dataclasses.dataclass(frozen=True)
class GridMasking(MaskGenerator):
    """Fixed lattice: patch (r, c) is visible iff ``r % period == row`` and ``c % period == col``.

    Options:
      period: cell side in patches (2 gives the paper's 75%); the ratio must be 1 - 1/period^2.
      offset: (row, col) of the visible patch inside each cell.
    The pattern is the same for every sample and ignores the key (it is fixed by definition).
    """

    name = "grid"
    deterministic = True
    period: int = 2
    offset: tuple[int, int] = (0, 0)

    def _validate_options(self) -> None:
        if not isinstance(self.period, int) or self.period < 2:
            raise ValueError(f"grid: option period must be an int >= 2, got {self.period!r}.")
        off = tuple(self.offset)
        object.__setattr__(self, "offset", off)
        if len(off) != 2 or not all(isinstance(o, int) and 0 <= o < self.period for o in off):
            raise ValueError(
                f"grid: option offset must be (row, col) with entries in [0, {self.period}), "
                f"got {self.offset!r}."
            )

    def _check(self, grid: Grid, k: int, mask_ratio: float) -> None:
        _check_lattice(self.name, grid, k, mask_ratio, self.period)

    def _generate(self, key: jax.Array, *, batch_size: int, grid: Grid, k: int) -> Masks:
        h, w = grid
        rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
        visible = (rows % self.period == self.offset[0]) & (cols % self.period == self.offset[1])
        mask = jnp.broadcast_to(jnp.asarray(~visible.reshape(-1)), (batch_size, h * w))
        return masks_from_boolean(mask, k)


@dataclasses.dataclass(frozen=True)
class UniformMasking(MaskGenerator):
    """UM-MAE uniform sampling: exactly one visible patch per 2x2 cell, at a random position.

    Options:
      sampling: "balanced" (default, as the reference) draws the G = H*W/4 cell positions from a
        shuffled pool holding equally many of each of the 4 positions (pool of 4*ceil(H*W/8)
        rows), so position counts are hypergeometric; "iid" draws each cell's position
        independently and uniformly.
      secondary_ratio: fraction of the K visible tokens hidden again (UM-MAE
        ``--vis_mask_ratio``, 0.25 in its recipe); 0 disables it. The result's ``secondary`` is
        bool[B, K], True on the ``K - int(K * (1 - secondary_ratio))`` hidden tokens.
    Visible indices come out in raster order. The ratio must be 0.75 and the grid sides even.
    """

    name = "uniform"
    sampling: str = "balanced"
    secondary_ratio: float = 0.0

    def _validate_options(self) -> None:
        if self.sampling not in ("balanced", "iid"):
            raise ValueError(
                f"uniform: option sampling must be 'balanced' or 'iid', got {self.sampling!r}."
            )
        positive(self.name, "secondary_ratio", self.secondary_ratio, allow_zero=True)
        if not self.secondary_ratio < 1:
            raise ValueError(
                f"uniform: option secondary_ratio must lie in [0, 1), got {self.secondary_ratio}."
            )

    def _check(self, grid: Grid, k: int, mask_ratio: float) -> None:
        _check_lattice(self.name, grid, k, mask_ratio, 2)

    def _generate(self, key: jax.Array, *, batch_size: int, grid: Grid, k: int) -> Masks:
        h, w = grid
        cells = k
        key_pos, key_secondary = jax.random.split(key)
        if self.sampling == "iid":
            position = jax.random.randint(key_pos, (batch_size, cells), 0, 4)
        else:
            pool_size = 4 * math.ceil(h * w / 8)
            pool = jnp.arange(pool_size, dtype=jnp.int32) % 4
            draws = jax.random.uniform(key_pos, (batch_size, pool_size))
            position = pool[jnp.argsort(draws, axis=-1)[:, :cells]]
        # Cell (i, j) with in-cell position p = 2 * dr + dc maps to patch (2i + dr, 2j + dc).
        cell_rows, cell_cols = np.divmod(np.arange(cells), w // 2)
        rows = 2 * cell_rows[None] + position // 2
        cols = 2 * cell_cols[None] + position % 2
        visible_index = (rows * w + cols).astype(jnp.int32)
        mask = jnp.ones((batch_size, h * w), bool)
        mask = mask.at[jnp.arange(batch_size)[:, None], visible_index].set(False)
        masks = masks_from_boolean(mask, k)
        if self.secondary_ratio == 0:
            return masks
        still_visible = num_visible(k, self.secondary_ratio)
        noise = jax.random.uniform(key_secondary, (batch_size, k))
        ranks = jnp.argsort(jnp.argsort(noise, axis=-1), axis=-1)
        return masks.replace(secondary=ranks >= still_visible)
