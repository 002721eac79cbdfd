"""Mixup / CutMix with label smoothing, batch mode, on device (timm's ``Mixup`` as MAE uses it).

Per batch (timm ``mode='batch'``): with probability ``prob`` the batch is mixed with its reverse
(``x.flip(0)``): CutMix with probability ``switch_prob`` when both are enabled (else whichever is
enabled), with ``lam ~ Beta(alpha, alpha)``. CutMix pastes a box of side ``sqrt(1 - lam)`` times
the image (random centre, clipped to the image) and corrects ``lam`` to the pasted area. Targets
are smoothed one-hots (``off = s / C``, ``on = 1 - s + off``) mixed with the same ``lam``.
"""

from __future__ import annotations

import dataclasses

import chex
import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class MixupConfig:
    """MAE fine-tune defaults: mixup 0.8, cutmix 1.0, prob 1, switch 0.5, smoothing 0.1."""

    mixup_alpha: float = 0.8
    cutmix_alpha: float = 1.0
    prob: float = 1.0
    switch_prob: float = 0.5
    label_smoothing: float = 0.1

    @property
    def enabled(self) -> bool:
        return self.prob > 0 and (self.mixup_alpha > 0 or self.cutmix_alpha > 0)


def smooth_one_hot(labels: jax.Array, num_classes: int, smoothing: float) -> jax.Array:
    """int[B] -> float32[B, C] with ``1 - s + s/C`` on the label and ``s/C`` elsewhere."""
    off = smoothing / num_classes
    return jax.nn.one_hot(labels, num_classes) * (1.0 - smoothing) + off


def cutmix_box(
    key: jax.Array, height: int, width: int, lam: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """(bool[H, W] box mask, corrected lam): timm's ``rand_bbox`` + ``correct_lam``."""
    ratio = jnp.sqrt(1.0 - lam)
    cut_h = (height * ratio).astype(jnp.int32)
    cut_w = (width * ratio).astype(jnp.int32)
    key_y, key_x = jax.random.split(key)
    cy = jax.random.randint(key_y, (), 0, height)
    cx = jax.random.randint(key_x, (), 0, width)
    y0, y1 = jnp.clip(cy - cut_h // 2, 0, height), jnp.clip(cy + cut_h // 2, 0, height)
    x0, x1 = jnp.clip(cx - cut_w // 2, 0, width), jnp.clip(cx + cut_w // 2, 0, width)
    rows = jnp.arange(height)[:, None]
    cols = jnp.arange(width)[None, :]
    box = (rows >= y0) & (rows < y1) & (cols >= x0) & (cols < x1)
    area = ((y1 - y0) * (x1 - x0)).astype(jnp.float32)
    return box, 1.0 - area / (height * width)


def mix_batch(
    key: jax.Array, images: jax.Array, labels: jax.Array, num_classes: int, config: MixupConfig
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Mixes a batch: (images float[B, H, W, C], soft targets float32[B, C], lam float32 scalar).

    Without mixing (disabled, or the ``prob`` draw fails) lam is 1 and the targets are the
    smoothed one-hots.
    """
    chex.assert_rank(images, 4)
    targets = smooth_one_hot(labels, num_classes, config.label_smoothing)
    if not config.enabled:
        return images, targets, jnp.ones((), jnp.float32)
    key_apply, key_switch, key_mix, key_cut, key_box = jax.random.split(key, 5)
    apply = jax.random.uniform(key_apply) < config.prob
    if config.mixup_alpha > 0 and config.cutmix_alpha > 0:
        use_cutmix = jax.random.uniform(key_switch) < config.switch_prob
    else:
        use_cutmix = jnp.asarray(config.cutmix_alpha > 0)
    lam_mix = (
        jax.random.beta(key_mix, config.mixup_alpha, config.mixup_alpha)
        if config.mixup_alpha > 0
        else jnp.ones(())
    )
    lam_cut = (
        jax.random.beta(key_cut, config.cutmix_alpha, config.cutmix_alpha)
        if config.cutmix_alpha > 0
        else jnp.ones(())
    )
    flipped = images[::-1]
    box, lam_box = cutmix_box(key_box, images.shape[1], images.shape[2], lam_cut)
    cut = jnp.where(box[None, :, :, None], flipped, images)
    lam_mix = lam_mix.astype(images.dtype)
    mixed = images * lam_mix + flipped * (1 - lam_mix)
    lam = jnp.where(apply, jnp.where(use_cutmix, lam_box, lam_mix), 1.0).astype(jnp.float32)
    out = jnp.where(apply, jnp.where(use_cutmix, cut, mixed), images)
    targets = targets * lam + targets[::-1] * (1.0 - lam)
    return out, targets, lam
