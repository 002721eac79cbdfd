"""Token selection by index: visible tokens for the encoder, position rows, decoder queries."""

from __future__ import annotations

from typing import Literal

import chex
import jax
import jax.numpy as jnp

GatherMethod = Literal["take", "onehot"]


def gather_tokens(x: jax.Array, ids: jax.Array, method: GatherMethod = "take") -> jax.Array:
    """Selects tokens by index along the token axis.

    Args:
      x: [B, L, D] per-example tokens, or a shared [L, D] table (e.g. position embeddings).
      ids: int32[B, M] indices into L.
      method: "take" is an XLA gather (its gradient is a scatter-add). "onehot" is
        ``einsum(one_hot(ids, L), x)``, a matmul whose gradient is a matmul: FLIP's trick for TPU,
        where gather/scatter is slow (docs/mae_recipes.md, "Gather versus one-hot"). It runs
        at HIGHEST precision so float32 selection stays exact.

    Returns:
      [B, M, D], same dtype as ``x``.
    """
    chex.assert_rank(ids, 2)
    chex.assert_rank(x, {2, 3})
    shared = x.ndim == 2
    if not shared:
        chex.assert_equal(x.shape[0], ids.shape[0])
    if method == "take":
        if shared:
            return jnp.take(x, ids, axis=0)
        return jnp.take_along_axis(x, ids[:, :, None], axis=1)
    if method == "onehot":
        onehot = jax.nn.one_hot(ids, x.shape[-2], dtype=x.dtype)
        spec = "bml,ld->bmd" if shared else "bml,bld->bmd"
        return jnp.einsum(spec, onehot, x, precision=jax.lax.Precision.HIGHEST)
    raise ValueError(f"gather method must be 'take' or 'onehot', got {method!r}.")
