"""MAE reconstruction loss (``facebookresearch/mae`` ``models_mae.py :: forward_loss``).

Target: per-patch normalised pixels when ``norm_pix_loss``, ``(t - mean) / sqrt(var + 1e-6)``
over the patch's p*q*C values with torch's default **unbiased** variance (ddof=1), computed in
float32 (docs/mae_recipes.md, "Pretraining loss"). Loss: per-patch MSE, then the mean over
the patches whose weight is 1 (the masked ones for MAE, the queried ones for CrossMAE).
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp

NORM_PIX_EPS = 1e-6


def patch_stats(target: jax.Array, eps: float = NORM_PIX_EPS) -> tuple[jax.Array, jax.Array]:
    """Per-patch mean and std ``sqrt(var_unbiased + eps)``, float32[..., 1] each."""
    target = target.astype(jnp.float32)
    mean = jnp.mean(target, axis=-1, keepdims=True)
    var = jnp.var(target, axis=-1, keepdims=True, ddof=1)
    return mean, jnp.sqrt(var + eps)


def normalize_patches(target: jax.Array, eps: float = NORM_PIX_EPS) -> jax.Array:
    """float32[..., P] per-patch normalised target (ddof=1, eps inside the sqrt)."""
    mean, std = patch_stats(target, eps)
    return (target.astype(jnp.float32) - mean) / std


def denormalize_patches(pred: jax.Array, target: jax.Array, eps: float = NORM_PIX_EPS) -> jax.Array:
    """Maps a norm-pix prediction back to pixels with the target patch's own statistics.

    Args:
      pred: [..., P] prediction in normalised units.
      target: [..., P] raw target patches (same shape).

    Returns:
      float32[..., P] ``pred * std + mean`` (for reconstruction images).
    """
    chex.assert_equal_shape([pred, target])
    mean, std = patch_stats(target, eps)
    return pred.astype(jnp.float32) * std + mean


def mae_loss(
    pred: jax.Array,
    target_patches: jax.Array,
    mask: jax.Array,
    norm_pix_loss: bool = True,
) -> jax.Array:
    """MSE on the weighted (masked) patches.

    Args:
      pred: [B, Q, P] predictions (any float dtype; upcast to float32).
      target_patches: [B, Q, P] raw patchified pixels at the same positions.
      mask: bool or float[B, Q], 1/True where the patch counts (masked for MAE).
      norm_pix_loss: normalise each target patch first (ddof=1, eps 1e-6).

    Returns:
      float32 scalar ``sum(mse_per_patch * mask) / sum(mask)``.
    """
    chex.assert_rank([pred, target_patches, mask], [3, 3, 2])
    chex.assert_equal_shape([pred, target_patches])
    chex.assert_equal_shape_prefix([pred, mask], 2)
    target = target_patches.astype(jnp.float32)
    if norm_pix_loss:
        target = normalize_patches(target)
    per_patch = jnp.mean(jnp.square(pred.astype(jnp.float32) - target), axis=-1)
    weights = mask.astype(jnp.float32)
    return jnp.sum(per_patch * weights) / jnp.sum(weights)
