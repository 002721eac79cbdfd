"""BEiT block-wise masking (Bao et al. 2022, ``microsoft/unilm`` ``beit2/masking_generator.py``).

The reference runs on the host with a Python loop. Here the same sampler runs on device, per
sample (``vmap``), as a bounded ``lax.while_loop`` over blocks. Each loop step draws the
reference's 10 placement attempts at once and accepts the first that fits, which is the same
distribution as trying them one after another. BEiT v2's final correction then makes the masked
count exact: missing patches are added uniformly at random among the unmasked ones.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from mim_jax.masking.base import MaskGenerator, positive
from mim_jax.masking.core import Grid, Masks, masks_from_scores

ATTEMPTS_PER_BLOCK = 10  # the reference tries 10 placements before giving up on a block


@dataclasses.dataclass(frozen=True)
class BlockMasking(MaskGenerator):
    """Masks random rectangles until the static masked count is reached.

    Options (BEiT defaults):
      min_num_patches: smallest block area drawn (16).
      max_num_patches: largest block area; ``None`` means the whole masked count.
      min_aspect: smallest aspect ratio h/w (0.3); aspect is log-uniform.
      max_aspect: largest aspect ratio; ``None`` means ``1 / min_aspect``.

    A block is accepted only if it adds between 1 and the remaining budget of new patches and
    spans neither a full row nor a full column (``h < H``, ``w < W``), as in the reference.
    Visible patches come out in random order.
    """

    name = "block"
    min_num_patches: int = 16
    max_num_patches: int | None = None
    min_aspect: float = 0.3
    max_aspect: float | None = None

    def _validate_options(self) -> None:
        positive(self.name, "min_num_patches", self.min_num_patches)
        if self.max_num_patches is not None:
            positive(self.name, "max_num_patches", self.max_num_patches)
        positive(self.name, "min_aspect", self.min_aspect)
        if self.max_aspect is not None:
            positive(self.name, "max_aspect", self.max_aspect)
            if self.max_aspect < self.min_aspect:
                raise ValueError(
                    f"block: max_aspect ({self.max_aspect}) must be >= min_aspect "
                    f"({self.min_aspect})."
                )

    def _check(self, grid: Grid, k: int, mask_ratio: float) -> None:
        h, w = grid
        if h < 2 or w < 2:
            raise ValueError(f"block: blocks need a grid of at least 2x2 patches, got {grid}.")

    def _generate(self, key: jax.Array, *, batch_size: int, grid: Grid, k: int) -> Masks:
        h, w = grid
        target = h * w - k
        key_blocks, key_fill = jax.random.split(key)
        block_mask = jax.vmap(lambda kk: self._sample_blocks(kk, h, w, target))(
            jax.random.split(key_blocks, batch_size)
        )
        # BEiT v2 top-up: the K visible are the K highest-noise patches outside the blocks, so
        # the missing masked patches are drawn uniformly among the unmasked ones.
        noise = jax.random.uniform(key_fill, (batch_size, h * w), jnp.float32)
        scores = jnp.where(block_mask.reshape(batch_size, -1), -1.0, noise)
        return masks_from_scores(scores, k)

    def _sample_blocks(self, key: jax.Array, h: int, w: int, target: int) -> jax.Array:
        """bool[H, W] union of accepted blocks, with at most ``target`` True entries."""
        max_patches = target if self.max_num_patches is None else self.max_num_patches
        log_aspect_lo = math.log(self.min_aspect)
        log_aspect_hi = math.log(
            1.0 / self.min_aspect if self.max_aspect is None else self.max_aspect
        )
        rows = jnp.arange(h)[None, :, None]
        cols = jnp.arange(w)[None, None, :]

        def place(state):
            key, mask, count, _ = state
            key, k_area, k_aspect, k_top, k_left = jax.random.split(key, 5)
            budget = jnp.minimum(target - count, max_patches).astype(jnp.float32)
            lo = jnp.minimum(budget, self.min_num_patches)
            hi = jnp.maximum(budget, self.min_num_patches)
            shape = (ATTEMPTS_PER_BLOCK,)
            area = jax.random.uniform(k_area, shape, minval=lo, maxval=hi)
            aspect = jnp.exp(
                jax.random.uniform(k_aspect, shape, minval=log_aspect_lo, maxval=log_aspect_hi)
            )
            bh = jnp.round(jnp.sqrt(area * aspect)).astype(jnp.int32)  # half-to-even, as Python
            bw = jnp.round(jnp.sqrt(area / aspect)).astype(jnp.int32)
            fits = (bw < w) & (bh < h)
            top = jax.random.randint(k_top, shape, 0, jnp.maximum(h - bh + 1, 1))
            left = jax.random.randint(k_left, shape, 0, jnp.maximum(w - bw + 1, 1))
            rect = (
                (rows >= top[:, None, None])
                & (rows < (top + bh)[:, None, None])
                & (cols >= left[:, None, None])
                & (cols < (left + bw)[:, None, None])
            )
            new = jnp.sum(rect & ~mask[None], axis=(1, 2))
            ok = fits & (new > 0) & (new <= budget)
            first = jnp.argmax(ok)
            accepted = ok[first]
            mask = jnp.where(accepted, mask | rect[first], mask)
            count = count + jnp.where(accepted, new[first], 0)
            return key, mask, count, accepted

        def keep_going(state):
            _, _, count, last_accepted = state
            return (count < target) & last_accepted

        init = (key, jnp.zeros((h, w), bool), jnp.int32(0), jnp.bool_(True))
        _, mask, _, _ = jax.lax.while_loop(keep_going, place, init)
        return mask
