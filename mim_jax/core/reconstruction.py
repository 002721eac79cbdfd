"""Reconstruction pictures: original, masked input and the model's reconstruction, as PNG.

The model predicts normalised patches when trained with ``norm_pix_loss``; the picture undoes that
with each target patch's own mean and std (as MAE's visualisation does), and pastes the visible
patches of the original back in, so what is shown is what the model had to infer.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from matplotlib.figure import Figure

from mim_jax import masking
from mim_jax.models.loss import denormalize_patches
from mim_jax.models.mae import MAE


def reconstruct(
    model: MAE, images: jax.Array, masks: masking.Masks
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(original, masked, reconstruction), each float32[B, H, W, C], for an MAE-decoder model.

    Pure: can run under ``jax.jit`` (see :func:`reconstruction_fn`).

    Args:
      model: an MAE with the MAE decoder (every patch predicted).
      images: float[B, H, W, C] model inputs (normalised as in training).
      masks: masks over the model's grid.
    """
    tokens = model.config.tokens
    _, out = model(images, masks)
    pred = out.pred
    if model.config.norm_pix_loss:
        pred = denormalize_patches(pred, out.target)
    mask = masks.mask[..., None]
    patches = tokens.patchify(images.astype(jnp.float32))
    recon = jnp.where(mask, pred, patches)
    masked = jnp.where(mask, jnp.zeros_like(patches), patches)
    return images.astype(jnp.float32), tokens.unpatchify(masked), tokens.unpatchify(recon)


def reconstruction_fn(graphdef: nnx.GraphDef):
    """A jitted ``(params, constants, images, masks) -> (original, masked, reconstruction)``."""

    @jax.jit
    def run(params, constants, images, masks):
        return reconstruct(nnx.merge(graphdef, params, constants), images, masks)

    return run


def save_reconstructions(
    path: str, original: np.ndarray, masked: np.ndarray, recon: np.ndarray, max_rows: int = 8
) -> str:
    """Writes rows of (original | masked | reconstruction) to ``path``; returns the path."""
    rows = min(max_rows, len(original))
    fig = Figure(figsize=(4.5, 1.5 * rows))
    axes = fig.subplots(rows, 3, squeeze=False)
    for r in range(rows):
        for c, (title, batch) in enumerate(
            (("original", original), ("masked", masked), ("reconstruction", recon))
        ):
            image = batch[r]
            lo, hi = float(original[r].min()), float(original[r].max())
            shown = np.clip((image - lo) / max(hi - lo, 1e-6), 0, 1)
            ax = axes[r, c]
            ax.imshow(shown.squeeze(-1) if shown.shape[-1] == 1 else shown, cmap="gray")
            ax.axis("off")
            if r == 0:
                ax.set_title(title, fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=100)
    return path
