"""Pictures of masks: batches as PNG grids, masks laid over images, and a strategy gallery.

Figures are drawn with matplotlib's object API and written straight to PNG, so importing this
module leaves pyplot's backend (for example a notebook's inline plots) alone.

``python -m mim_jax.masking.viz --out masks.png`` draws a row of samples per strategy, every
strategy at the same mask ratio (stated in the title). Visible patches are light, masked patches
dark; the figure's legend says so.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

import jax
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from mim_jax.masking.core import Masks, num_masked
from mim_jax.masking.registry import get

VISIBLE_SHADE, MASKED_SHADE = 0.95, 0.2

GALLERY: tuple[tuple[str, str, dict], ...] = (
    ("random", "random", {}),
    ("block", "block", {}),
    ("simmim", "simmim", {}),
    ("grid", "grid", {}),
    ("uniform", "uniform", {}),
    ("white", "color", {"color": "white"}),
    ("red", "color", {"color": "red"}),
    ("blue", "color", {"color": "blue"}),
    ("green", "color", {"color": "green"}),
    ("purple", "color", {"color": "purple"}),
)


def mask_images(masks: Masks | np.ndarray, grid: Sequence[int]) -> np.ndarray:
    """float32[B, *grid] images of a batch: ``VISIBLE_SHADE`` where visible, else dark."""
    mask = np.asarray(masks.mask if isinstance(masks, Masks) else masks, bool)
    return np.where(mask, MASKED_SHADE, VISIBLE_SHADE).reshape(mask.shape[0], *grid)


def render_masks(
    masks: Masks | np.ndarray,
    grid: Sequence[int],
    path: str | os.PathLike,
    ncols: int = 8,
    title: str | None = None,
) -> str:
    """Draws a batch of 2-D masks (``Masks`` or bool[B, H*W]) as a PNG grid; returns the path."""
    images = mask_images(masks, grid)
    if images.ndim != 3:
        raise ValueError(f"render_masks draws 2-D grids; got grid {tuple(grid)}.")
    rows = -(-len(images) // ncols)
    fig = Figure(figsize=(1.3 * ncols, 1.3 * rows + 0.4))
    axes = fig.subplots(rows, ncols, squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, image in zip(axes.ravel(), images, strict=False):
        ax.imshow(image, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return str(path)


def apply_mask(
    image: np.ndarray, mask: np.ndarray, patch_size: int, fill: float = 0.5
) -> np.ndarray:
    """Returns ``image`` (float[H, W, C] in [0, 1]) with masked patches set to ``fill``.

    ``mask`` is bool[N] over the row-major patch grid ``(H / patch_size, W / patch_size)``.
    """
    h, w = image.shape[:2]
    gh, gw = h // patch_size, w // patch_size
    if gh * patch_size != h or gw * patch_size != w or np.size(mask) != gh * gw:
        raise ValueError(
            f"image {image.shape[:2]} with patch_size {patch_size} gives a {gh}x{gw} grid, which "
            f"does not match a mask of {np.size(mask)} patches."
        )
    pixel_mask = np.kron(np.asarray(mask, bool).reshape(gh, gw), np.ones((patch_size, patch_size)))
    out = np.array(image, np.float32, copy=True)
    out[pixel_mask.astype(bool)] = fill
    return out


def render_masked_image(
    image: np.ndarray, masks: Masks, patch_size: int, path: str | os.PathLike
) -> str:
    """Draws ``image`` (float[H, W, C] in [0, 1]) under each mask of a batch; returns the path."""
    mask = np.asarray(masks.mask, bool)
    panels = [image] + [apply_mask(image, row, patch_size) for row in mask]
    fig = Figure(figsize=(1.6 * len(panels), 1.9))
    axes = fig.subplots(1, len(panels), squeeze=False)
    for ax, panel, label in zip(
        axes[0], panels, ["image"] + [f"mask {i}" for i in range(len(mask))], strict=True
    ):
        ax.imshow(np.clip(panel, 0, 1).squeeze(), cmap="gray" if panel.shape[-1] == 1 else None)
        ax.set_title(label, fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return str(path)


def shade_legend() -> list[Patch]:
    """Legend handles for :func:`mask_images` pictures: a light and a dark square."""
    edge = {"edgecolor": "0.5", "linewidth": 0.8}
    return [
        Patch(facecolor=str(VISIBLE_SHADE), label="visible (fed to the encoder)", **edge),
        Patch(facecolor=str(MASKED_SHADE), label="masked (to reconstruct)", **edge),
    ]


def gallery_figure(
    seed: int = 0,
    grid: tuple[int, int] = (14, 14),
    mask_ratio: float = 0.75,
    samples: int = 6,
) -> Figure:
    """One row of ``samples`` masks per strategy in ``GALLERY``, all at ``mask_ratio``.

    The title states the grid, the ratio and the exact masked count (the same for every
    strategy and sample); a legend tells visible from masked.
    """
    key = jax.random.key(seed)
    n = int(np.prod(grid))
    fig = Figure(figsize=(1.2 * samples + 1.2, 1.2 * len(GALLERY) + 0.9))
    axes = fig.subplots(len(GALLERY), samples, squeeze=False)
    for row, (label, name, options) in enumerate(GALLERY):
        masks = get(name, **options)(key, batch_size=samples, grid=grid, mask_ratio=mask_ratio)
        for col, image in enumerate(mask_images(masks, grid)):
            ax = axes[row, col]
            ax.imshow(image, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
        axes[row, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=10)
    fig.suptitle(
        f"{grid[0]}x{grid[1]} patches, mask ratio {mask_ratio:g}: every strategy masks "
        f"{num_masked(n, mask_ratio)} of {n}",
        fontsize=11,
    )
    fig.legend(handles=shade_legend(), loc="lower center", ncol=2, frameon=False, fontsize=9)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return fig


def render_gallery(
    path: str | os.PathLike,
    seed: int = 0,
    grid: tuple[int, int] = (14, 14),
    mask_ratio: float = 0.75,
    samples: int = 6,
) -> str:
    """Writes :func:`gallery_figure` to ``path`` as PNG; returns the path."""
    gallery_figure(seed, grid, mask_ratio, samples).savefig(path, dpi=100)
    return str(path)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="masks.png", help="PNG path to write")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--grid", default="14,14", help="H,W of the patch grid")
    parser.add_argument("--mask-ratio", type=float, default=0.75)
    args = parser.parse_args(argv)
    grid = tuple(int(g) for g in args.grid.split(","))
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    print(render_gallery(args.out, args.seed, grid, args.mask_ratio))


if __name__ == "__main__":
    main()
