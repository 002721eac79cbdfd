"""The mask container, the one rounding rule for the visible count, and shared validation.

Every generator in :mod:`mim_jax.masking` returns a :class:`Masks` whose index arrays have static
shapes fixed by ``(batch_size, grid, mask_ratio)`` alone, so a train step compiled for one strategy
accepts masks from any other.

The rounding rule (the only one in mim_jax)
--------------------------------------------
For a grid of ``N = prod(grid)`` patches and a ratio ``r`` in (0, 1)::

    num_masked(N, r)  = floor(N * r + 1/2)      # nearest integer, halves round up
    num_visible(N, r) = N - num_masked(N, r)    # K, identical for every sample and strategy

It agrees with MAE's ``int(N * (1 - r))`` wherever that is free of float error (196 patches at
0.75 -> 49 visible) and differs where it is not (1568 patches at 0.9: MAE's float expression gives
156 visible, this rule gives 157, the same as VideoMAE's ``int(r * N)`` masked count).
A ratio that leaves no visible or no masked patch is rejected.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import chex
import jax
import jax.numpy as jnp
from flax import struct

Grid = tuple[int, ...]


@struct.dataclass
class Masks:
    """A batch of masks over a patch grid flattened row-major (``i = r*W + c``; video: t*H*W + i).

    Attributes:
      keep: int32[B, K] indices of the visible patches, in the order the encoder receives them.
      masked: int32[B, N - K] indices of the masked patches.
      restore: int32[B, N] inverse permutation:
        ``take_along_axis(concat([keep, masked], -1), restore, -1) == arange(N)``.
      mask: bool[B, N], True where the patch is masked (hidden from the encoder).
      secondary: optional bool[B, K], True for visible tokens that a second stage hides again
        (UM-MAE's secondary masking); ``None`` for strategies without one.
    """

    keep: jax.Array
    masked: jax.Array
    restore: jax.Array
    mask: jax.Array
    secondary: jax.Array | None = None

    @property
    def batch_size(self) -> int:
        return self.keep.shape[0]

    @property
    def num_visible(self) -> int:
        return self.keep.shape[1]

    @property
    def num_patches(self) -> int:
        return self.restore.shape[1]


def num_masked(num_patches: int, mask_ratio: float) -> int:
    """Number of masked patches: the nearest integer to ``num_patches * mask_ratio`` (halves up)."""
    return math.floor(num_patches * mask_ratio + 0.5)


def num_visible(num_patches: int, mask_ratio: float) -> int:
    """Static visible count K (see the module docstring for the rule)."""
    return num_patches - num_masked(num_patches, mask_ratio)


def check_request(
    name: str,
    batch_size: int,
    grid: Sequence[int],
    mask_ratio: float,
    ndims: Sequence[int] = (2,),
) -> tuple[Grid, int]:
    """Validates a generator call and returns ``(grid, K)``.

    Raises:
      ValueError: naming the bad argument and what is valid: a batch size below 1, a grid whose
        rank the strategy cannot take or with a non-positive side, a ratio outside (0, 1), or a
        ratio that leaves K = 0 or K = N.
    """
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"{name}: batch_size must be a positive int, got {batch_size!r}.")
    try:
        grid = tuple(int(g) for g in grid)
    except TypeError:
        raise ValueError(f"{name}: grid must be a tuple of ints, got {grid!r}.") from None
    if len(grid) not in ndims:
        shapes = " or ".join({1: "(L,)", 2: "(H, W)", 3: "(T, H, W)"}[n] for n in ndims)
        raise ValueError(f"{name}: grid must have shape {shapes}, got {grid!r}.")
    if any(g < 1 for g in grid):
        raise ValueError(f"{name}: every grid side must be >= 1, got {grid!r}.")
    if isinstance(mask_ratio, bool) or not isinstance(mask_ratio, int | float):
        raise ValueError(f"{name}: mask_ratio must be a float in (0, 1), got {mask_ratio!r}.")
    if not 0.0 < float(mask_ratio) < 1.0:
        raise ValueError(f"{name}: mask_ratio must lie strictly between 0 and 1, got {mask_ratio}.")
    n = math.prod(grid)
    k = num_visible(n, float(mask_ratio))
    if k <= 0 or k >= n:
        lo, hi = 0.5 / n, 1.0 - 0.5 / n
        raise ValueError(
            f"{name}: mask_ratio={mask_ratio} on a grid of {n} patches leaves {k} visible; "
            f"at least one patch must be visible and one masked, so use a ratio in "
            f"[{lo:.4g}, {hi:.4g})."
        )
    return grid, k


def masks_from_scores(scores: jax.Array, k: int) -> Masks:
    """Keeps the ``k`` highest scores of each row visible (ties: lower index first).

    Args:
      scores: float32 or int32[B, N] ranking scores; higher means visible.
      k: static number of visible patches, 0 < k < N.

    Returns:
      Masks whose ``keep`` lists visible indices in descending score order.
    """
    chex.assert_rank(scores, 2)
    order = descending_order(scores)
    restore = _inverse_permutation(order)
    return Masks(keep=order[:, :k], masked=order[:, k:], restore=restore, mask=restore >= k)


def descending_order(scores: jax.Array) -> jax.Array:
    """int32[B, N]: each row's indices by descending score, ties by ascending index.

    Same result as a stable descending argsort, computed as one single-operand sort of packed
    uint32 keys ``(level << index_bits) | index``, where ``level`` quantises the row's score range
    onto 24 bits, as fine as float32's mantissa (about 6x faster than argsort's key-value sort on
    CPU). The quantisation is monotone, so it never reorders two scores; it can only tie scores
    less than 2**-24 of the row's range apart, which then keep index order. Rows too long to
    leave 16 bits for the level (N > 65536) use argsort.
    """
    _, n = scores.shape
    index_bits = max(1, (n - 1).bit_length())
    level_bits = min(24, 32 - index_bits)
    if level_bits < 16:
        return jnp.argsort(scores, axis=-1, descending=True, stable=True).astype(jnp.int32)
    s = scores.astype(jnp.float32)
    hi = s.max(axis=-1, keepdims=True)
    span = hi - s.min(axis=-1, keepdims=True)
    top = float(2**level_bits - 1)
    scale = jnp.where(span > 0, top / jnp.where(span > 0, span, 1.0), 0.0)
    level = jnp.clip(jnp.floor((hi - s) * scale), 0.0, top).astype(jnp.uint32)
    keys = (level << index_bits) | jnp.arange(n, dtype=jnp.uint32)
    return (jnp.sort(keys, axis=-1) & jnp.uint32(2**index_bits - 1)).astype(jnp.int32)


def masks_from_boolean(mask: jax.Array, k: int) -> Masks:
    """Index sets for a boolean mask with exactly ``N - k`` True entries per row.

    Visible and masked indices both come out in raster order (as ``x[~mask]`` gives them in
    VideoMAE and UM-MAE).

    Args:
      mask: bool[B, N], True where masked; each row must hold exactly ``N - k`` True values.
      k: static number of visible patches.
    """
    chex.assert_rank(mask, 2)
    return masks_from_scores(jnp.where(mask, 0, 1).astype(jnp.int32), k)


def _inverse_permutation(order: jax.Array) -> jax.Array:
    """int32[B, N] inverse of each row permutation, by scatter (cheaper than a second argsort)."""
    b, n = order.shape
    positions = jnp.broadcast_to(jnp.arange(n, dtype=jnp.int32), (b, n))
    rows = jnp.arange(b, dtype=jnp.int32)[:, None]
    return jnp.zeros((b, n), jnp.int32).at[rows, order].set(positions, unique_indices=True)
