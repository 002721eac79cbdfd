"""Fixed sin-cos position embeddings (NumPy, computed once at model construction).

The 2-D table reproduces MAE's ``util/pos_embed.py :: get_2d_sincos_pos_embed``
(``facebookresearch/mae``; see docs/mae_recipes.md, "Patches and position tables"):

- 1-D table at width d for positions ``pos``: ``[sin(pos * w_k) for k < d/2] ++ [cos(pos * w_k)]``
  (concatenated, not interleaved) with ``w_k = 10000 ** (-k / (d/2))``;
- 2-D table at width D on an (H, W) grid, token ``i = r*W + c``: the first D/2 dims are the 1-D
  table of the **column** c, the second D/2 the 1-D table of the row r (MAE's meshgrid puts w
  first). Inside each half ``w_k = 10000 ** (-k / (D/4))``;
- computed in float64, returned as float32; ``cls_token=True`` prepends a zero row.

Rectangular grids are accepted, which is AudioMAE's ``get_2d_sincos_pos_embed_flexible`` on a
(T, F) spectrogram grid (columns = frequency, rows = time).

The 3-D table for (T, H, W) tubelet grids, token ``i = t*H*W + r*W + c``, uses the split of
Prithvi-EO (IBM/NASA's temporal MAE, ``get_3d_sincos_pos_embed``): 6D/16 dims for the column,
6D/16 for the row, then 4D/16 for time. That equals ``concat(2-D table at width 3D/4, 1-D time
table at width D/4)``, so every frame carries an exact MAE 2-D table (scaled to 3/4 of the width)
and time gets a quarter, the same 3:1 spatial:temporal split as diffusers' and OpenSora's 3-D
tables. It needs D divisible by 16 (every standard ViT width is).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def sincos_1d(embed_dim: int, positions: np.ndarray) -> np.ndarray:
    """1-D sin-cos table.

    Args:
      embed_dim: even width d.
      positions: [M] positions (any real dtype).

    Returns:
      float64[M, d]: ``[sin(pos*w_k)]_{k<d/2} ++ [cos(pos*w_k)]_{k<d/2}``, ``w_k = 10000^(-2k/d)``.
    """
    if embed_dim % 2:
        raise ValueError(f"sincos_1d needs an even embed_dim, got {embed_dim}.")
    omega = 1.0 / 10000.0 ** (np.arange(embed_dim // 2, dtype=np.float64) / (embed_dim / 2.0))
    out = np.asarray(positions, np.float64).reshape(-1)[:, None] * omega[None, :]
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)


def _with_cls(table: np.ndarray, cls_token: bool) -> np.ndarray:
    if cls_token:
        table = np.concatenate([np.zeros((1, table.shape[1])), table], axis=0)
    return table.astype(np.float32)


def sincos_2d(embed_dim: int, grid: Sequence[int], cls_token: bool = False) -> np.ndarray:
    """MAE's 2-D sin-cos table on an (H, W) grid (non-square allowed).

    Args:
      embed_dim: width D, divisible by 4.
      grid: (H, W) token grid; token ``i = r*W + c``.
      cls_token: prepend a zero row for the cls token.

    Returns:
      float32[(1 if cls_token else 0) + H*W, D]; dims [0, D/2) encode the column, [D/2, D) the row.
    """
    h, w = (int(g) for g in grid)
    if embed_dim % 4:
        raise ValueError(f"sincos_2d needs embed_dim divisible by 4, got {embed_dim}.")
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")  # [H, W] each
    table = np.concatenate(
        [sincos_1d(embed_dim // 2, cols), sincos_1d(embed_dim // 2, rows)], axis=1
    )
    return _with_cls(table, cls_token)


def sincos_3d(embed_dim: int, grid: Sequence[int], cls_token: bool = False) -> np.ndarray:
    """3-D sin-cos table on a (T, H, W) tubelet grid (split documented in the module docstring).

    Args:
      embed_dim: width D, divisible by 16.
      grid: (T, H, W) token grid; token ``i = t*H*W + r*W + c``.
      cls_token: prepend a zero row.

    Returns:
      float32[(1 if cls_token else 0) + T*H*W, D]: dims [0, 3D/8) column, [3D/8, 3D/4) row,
      [3D/4, D) time, each part a 1-D table (sin block then cos block).
    """
    t, h, w = (int(g) for g in grid)
    if embed_dim % 16:
        raise ValueError(f"sincos_3d needs embed_dim divisible by 16, got {embed_dim}.")
    space_dim = embed_dim // 16 * 12
    frames, rows, cols = np.meshgrid(np.arange(t), np.arange(h), np.arange(w), indexing="ij")
    table = np.concatenate(
        [
            sincos_1d(space_dim // 2, cols),
            sincos_1d(space_dim // 2, rows),
            sincos_1d(embed_dim - space_dim, frames),
        ],
        axis=1,
    )
    return _with_cls(table, cls_token)


def sincos_pos_embed(embed_dim: int, grid: Sequence[int], cls_token: bool = False) -> np.ndarray:
    """Dispatches on the grid rank: 1-D (L,), 2-D (H, W) or (T, F), 3-D (T, H, W).

    Returns:
      float32[(1 if cls_token else 0) + prod(grid), embed_dim].
    """
    grid = tuple(int(g) for g in grid)
    if len(grid) == 1:
        return _with_cls(sincos_1d(embed_dim, np.arange(grid[0])), cls_token)
    if len(grid) == 2:
        return sincos_2d(embed_dim, grid, cls_token)
    if len(grid) == 3:
        return sincos_3d(embed_dim, grid, cls_token)
    raise ValueError(f"grid must have 1, 2 or 3 axes, got {grid} ({math.prod(grid)} tokens).")
