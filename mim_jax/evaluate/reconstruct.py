"""Reconstruction figures of a checkpoint for any mask strategy and ratio, as PNG.

For each strategy, a fixed batch of validation images is masked (one key, so each strategy sees
the same images), reconstructed by the run's MAE decoder and drawn as rows of
``original | masked | reconstruction`` (:mod:`mim_jax.core.reconstruction`); the masked-patch
loss of that batch is reported too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mim_jax.core import paths
from mim_jax.core.reconstruction import (
    reconstruction_fn,
    reconstruction_title,
    save_reconstructions,
)
from mim_jax.core.workdir import Pretrained
from mim_jax.masking import MaskSpec


def reconstruction_figures(
    pretrained: Pretrained,
    images: np.ndarray,
    masks: Sequence[str],
    mask_ratio: float,
    out_dir: str,
    *,
    seed: int = 0,
    step: int | None = None,
) -> dict[str, Any]:
    """Writes ``out_dir/recon_<mask>_r<ratio>.png`` for each mask name; returns paths and losses.

    Args:
      pretrained: a loaded run with the MAE decoder.
      images: float32[B, H, W, C] model inputs (evaluation transform), B >= 1.
      masks: registry or colour names (``random``, ``green``, ``block``, ...).
      mask_ratio: fraction of patches masked.
      out_dir: folder for the PNGs (created), a local path or a URL (:mod:`mim_jax.core.paths`).
      seed: the masks' key.
      step: the checkpoint's step, for the pictures' titles.

    Raises:
      ValueError: a CrossMAE run (it does not decode every patch), or an unknown mask name or a
        ratio the grid cannot take (the masking library's message).
    """
    model = pretrained.model
    if model.config.decoder.kind != "mae":
        raise ValueError(
            "reconstruction figures need the MAE decoder; this run uses "
            f"{model.config.decoder.kind!r}, which predicts only a subset of the masked patches."
        )
    images = jnp.asarray(images, jnp.float32)
    graphdef, params, constants = nnx.split(model, nnx.Param, ...)
    recon = reconstruction_fn(graphdef)

    @jax.jit
    def loss_fn(params, constants, images, masks):
        loss, _ = nnx.merge(graphdef, params, constants)(images, masks)
        return loss

    paths.makedirs(out_dir)
    out: dict[str, Any] = {"mask_ratio": mask_ratio, "figures": {}, "loss": {}}
    key = jax.random.key(seed)
    for name in masks:
        gen = MaskSpec(name=name, ratio=mask_ratio).generator()
        drawn = gen(
            key, batch_size=images.shape[0], grid=model.config.tokens.grid, mask_ratio=mask_ratio
        )
        pictures = recon(params, constants, images, drawn)
        loss = float(loss_fn(params, constants, images, drawn))
        grid = model.config.tokens.grid
        n = int(np.prod(grid))
        title = reconstruction_title(
            name, mask_ratio, step, loss, "masked-patch loss", (n - drawn.keep.shape[-1], n)
        )
        mask = np.asarray(drawn.mask).reshape(-1, *grid) if len(grid) == 2 else None
        path = paths.join(out_dir, f"recon_{name}_r{mask_ratio:g}.png")
        save_reconstructions(
            path, *(np.asarray(p) for p in pictures), max_rows=len(images), mask=mask, title=title
        )
        out["figures"][name] = path
        out["loss"][name] = loss
    return out
