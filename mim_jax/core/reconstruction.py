"""Reconstruction pictures: original, masked input and the model's reconstruction, as PNG.

The model predicts normalised patches when trained with ``norm_pix_loss``; the picture undoes that
with each target patch's own mean and std (as MAE's visualisation does), and pastes the visible
patches of the original back in, so what is shown is what the model had to infer.

The PNG shows pixels, not model inputs: the input normalisation (ImageNet mean and std per
channel, as the data pipeline applies it) is undone channel by channel, so a grey image stays
grey. Masked patches are painted :data:`MASK_COLOUR` in the masked input and outlined in that
colour on the reconstruction, so they cannot be taken for strokes; the title names the mask, its
ratio, the step and the loss.
"""

from __future__ import annotations

import io

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from mim_jax import masking
from mim_jax.core import paths
from mim_jax.data.augment import IMAGENET_MEAN, IMAGENET_STD
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


#: Colour of masked patches in the pictures: no grey value, so never mistaken for a stroke.
MASK_COLOUR: tuple[float, float, float] = (0.93, 0.45, 0.13)


def to_pixels(
    images: np.ndarray,
    mean: tuple[float, ...] = IMAGENET_MEAN,
    std: tuple[float, ...] = IMAGENET_STD,
) -> np.ndarray:
    """float32[..., H, W, 3] RGB in [0, 1] from normalised model inputs ``(x - mean) / std``.

    Undoes the normalisation per channel (one-channel images use the first entries and are
    repeated to grey RGB), then clips to [0, 1].
    """
    images = np.asarray(images, np.float32)
    c = images.shape[-1]
    pixels = images * np.asarray(std, np.float32)[:c] + np.asarray(mean, np.float32)[:c]
    if c == 1:
        pixels = np.repeat(pixels, 3, axis=-1)
    return np.clip(pixels, 0.0, 1.0)


def _patch_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """bool[H, W] pixel mask from a bool[gh, gw] patch mask over an ``shape`` image."""
    gh, gw = mask.shape
    h, w = shape
    if h % gh or w % gw:
        raise ValueError(f"a {gh}x{gw} patch mask does not tile a {h}x{w} image.")
    return np.kron(mask.astype(np.uint8), np.ones((h // gh, w // gw), np.uint8)).astype(bool)


def _outline(mask: np.ndarray, shape: tuple[int, int]) -> list[list[tuple[float, float]]]:
    """Segments (in ``imshow`` pixel coordinates) around the masked region of a patch mask."""
    gh, gw = mask.shape
    ph, pw = shape[0] / gh, shape[1] / gw
    padded = np.pad(mask.astype(bool), 1)
    segments = []
    for r, c in zip(*np.nonzero(mask), strict=True):
        top, left = r * ph - 0.5, c * pw - 0.5
        if not padded[r, c + 1]:  # the patch above is visible (or outside)
            segments.append([(left, top), (left + pw, top)])
        if not padded[r + 2, c + 1]:
            segments.append([(left, top + ph), (left + pw, top + ph)])
        if not padded[r + 1, c]:
            segments.append([(left, top), (left, top + ph)])
        if not padded[r + 1, c + 2]:
            segments.append([(left + pw, top), (left + pw, top + ph)])
    return segments


def reconstruction_title(
    mask_name: str | None = None,
    mask_ratio: float | None = None,
    step: int | None = None,
    loss: float | None = None,
    loss_name: str = "loss",
    num_masked: tuple[int, int] | None = None,
) -> str:
    """``mask green, ratio 0.75 (48 of 64 patches), step 600, loss 0.962``: what is known."""
    parts = []
    if mask_name is not None:
        parts.append(f"mask {mask_name}")
    if mask_ratio is not None:
        counted = f" ({num_masked[0]} of {num_masked[1]} patches)" if num_masked else ""
        parts.append(f"ratio {mask_ratio:g}{counted}")
    if step is not None:
        parts.append(f"step {step}")
    if loss is not None:
        parts.append(f"{loss_name} {loss:.4g}")
    return ", ".join(parts)


def reconstruction_figure(
    original: np.ndarray,
    masked: np.ndarray,
    recon: np.ndarray,
    max_rows: int = 8,
    *,
    mask: np.ndarray | None = None,
    title: str | None = None,
    mean: tuple[float, ...] = IMAGENET_MEAN,
    std: tuple[float, ...] = IMAGENET_STD,
) -> Figure:
    """Rows of (original | masked input | reconstruction) in pixel colours.

    Args:
      original, masked, recon: float[B, H, W, C] normalised model inputs, as from
        :func:`reconstruct`.
      max_rows: at most this many images.
      mask: bool[B, gh, gw] patch masks (True = masked). Masked patches are then painted
        :data:`MASK_COLOUR` in the masked input and outlined on the reconstruction; without it
        the masked input is drawn as given.
      title: a line above the rows (see :func:`reconstruction_title`).
      mean, std: the input normalisation to undo (the data pipeline's: ImageNet's).
    """
    rows = min(max_rows, len(original))
    shape = tuple(original.shape[1:3])
    fig = Figure(figsize=(4.8, 1.5 * rows + (0.9 if mask is not None else 0.4)))
    axes = fig.subplots(rows, 3, squeeze=False)
    names = ("original", "masked input", "reconstruction")
    for r in range(rows):
        panels = [to_pixels(batch[r], mean, std) for batch in (original, masked, recon)]
        if mask is not None:
            panels[1] = panels[0].copy()
            panels[1][_patch_mask(np.asarray(mask[r]), shape)] = MASK_COLOUR
        for c, panel in enumerate(panels):
            ax = axes[r, c]
            ax.imshow(panel, interpolation="nearest")
            if mask is not None and c == 2:
                lines = _outline(np.asarray(mask[r]), shape)
                ax.add_collection(LineCollection(lines, colors=[MASK_COLOUR], linewidths=1.0))
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(names[c], fontsize=8)
    if title:
        fig.suptitle(title, fontsize=8)
    bottom = 0.0
    if mask is not None:
        legend = [Patch(facecolor=MASK_COLOUR, label="masked patches (inferred by the model)")]
        fig.legend(handles=legend, loc="lower center", frameon=False, fontsize=7)
        bottom = 0.6 / fig.get_figheight()
    fig.tight_layout(rect=(0, bottom, 1, 1))
    return fig


def save_reconstructions(
    path: str,
    original: np.ndarray,
    masked: np.ndarray,
    recon: np.ndarray,
    max_rows: int = 8,
    **options,
) -> str:
    """Writes :func:`reconstruction_figure` (same arguments) to ``path`` as PNG; returns it."""
    fig = reconstruction_figure(original, masked, recon, max_rows, **options)
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=100)
    paths.write_bytes(path, png.getvalue())  # a local path or a URL (mim_jax.core.paths)
    return path
