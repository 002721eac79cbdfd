"""The colour filters against the official ColorMAE noise, and the colour masks' statistics.

``python -m mim_jax.masking.calibrate [--grid 14,14] [--mask-ratio 0.75] [--samples 2048]
[--field 128] [--filter figure|paper]`` prints two tables:

1. the normalised radial periodogram of :func:`mim_jax.masking.color_noise` on ``field x field``
   windows next to the official noise's (``FIGURE_PROFILES``), ring by ring, with the largest
   difference per colour;
2. one row per colour of the binary masks on ``grid``: the filter's options, the patch-weighted
   mean size of visible clusters (4-connectivity), the share of visible patches with no visible
   neighbour, and where the mask's radially averaged power spectrum peaks and dips, relative to
   white noise's.

The official noise
------------------
ColorMAE's released code does not generate its noise: it downloads four pre-computed banks (one
per colour). Their periodograms are shown in the official repository's overview figure
(``carlosh93/ColorMAE``, ``assets/proposed.png``, 3758 x 982 pixels, panels "P"). mim_jax's
reading of them, pixel by pixel: each periodogram panel (about 375 x 375 pixels, zero frequency at
the centre) was mapped back from the viridis colour map to its value in 0..1 (nearest of the 256
viridis colours), the corner holding the panel's "P" label left out, and the values averaged in
rings of radius ``r`` (``r = 1`` at the panel's half-width, i.e. the Nyquist frequency along an
axis, 0.5 cycles per noise sample; one noise sample per patch; the corners reach ``r = 1.41``).
The white-noise panel reads a flat 0.28-0.30, so every panel shares one colour scale; the
profiles below are each divided by their largest ring, because the figure's absolute scale is
unknown. They are periodograms of a large noise image, not of a 14 x 14 window.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import jax
import numpy as np

from mim_jax.masking import stats
from mim_jax.masking.color import color_noise
from mim_jax.masking.filters import COLORS, FILTERS
from mim_jax.masking.registry import get

# Ring centres r = |f| / Nyquist; each ring is [r - 0.05, r + 0.05).
FIGURE_RINGS = np.round(np.arange(0.05, 1.4, 0.1), 2)
# The official banks' normalised radial periodograms (each row divided by its largest ring), read
# off the overview figure as described in the module docstring. White noise is flat.
FIGURE_PROFILES: dict[str, np.ndarray] = {
    color: np.array(row.split(), float)
    for color, row in {
        "red": "   1.00 0.45 0.03 0.00 0.00 0.00 0.00 0.00 0.00 0.00 0.00 0.00 0.00 0.00",
        "green": " 0.01 0.04 0.32 1.00 0.82 0.29 0.10 0.05 0.04 0.02 0.02 0.01 0.01 0.01",
        "blue": "  0.00 0.00 0.00 0.00 0.00 0.01 0.05 0.12 0.25 0.39 0.56 0.81 0.95 1.00",
        "purple": "0.96 0.29 0.05 0.03 0.03 0.01 0.03 0.04 0.07 0.13 0.28 0.53 0.86 1.00",
    }.items()
}


def figure_rings_profile(fields) -> np.ndarray:
    """float64[14] radial periodogram of fields ``[B, H, W]`` in the figure's rings, normalised.

    Each field has its mean removed; ``|FFT|^2`` is averaged over the batch and over the
    frequencies in each ring ``[r - 0.05, r + 0.05)`` of ``r = |f| / 0.5`` (zero frequency left
    out), and the 14 ring means are divided by their maximum.
    """
    x = np.asarray(fields, np.float64)
    if x.ndim != 3:
        raise ValueError(f"figure_rings_profile expects [B, H, W], got shape {x.shape}.")
    x = x - x.mean(axis=(1, 2), keepdims=True)
    power = (np.abs(np.fft.fft2(x)) ** 2).mean(axis=0)
    fy, fx = np.meshgrid(np.fft.fftfreq(x.shape[1]), np.fft.fftfreq(x.shape[2]), indexing="ij")
    r = np.hypot(fy, fx) / 0.5
    ring = np.floor(r / 0.1).astype(int)
    use = (ring < len(FIGURE_RINGS)) & (r > 0)
    sums = np.bincount(ring[use], power[use], len(FIGURE_RINGS))
    counts = np.bincount(ring[use], minlength=len(FIGURE_RINGS))
    profile = sums / np.maximum(counts, 1)
    return profile / profile.max()


def figure_comparison(
    field: int = 128, samples: int = 64, seed: int = 0, **options
) -> dict[str, np.ndarray]:
    """``{colour: float64[14]}`` normalised ring profiles of ``color_noise`` on field x field."""
    out = {}
    for color in FIGURE_PROFILES:
        noise = color_noise(
            jax.random.key(seed), (field, field), color=color, batch_size=samples, **options
        )
        out[color] = figure_rings_profile(noise)
    return out


def colour_table(
    grid: tuple[int, int] = (14, 14),
    mask_ratio: float = 0.75,
    samples: int = 2048,
    seed: int = 0,
    **options,
) -> list[dict]:
    """One dict per colour with its filter options and measured mask statistics."""
    rows, white_power = [], None
    for color in COLORS:
        gen = get("color", color=color, **options)
        masks = gen(jax.random.key(seed), batch_size=samples, grid=grid, mask_ratio=mask_ratio)
        visible = ~np.asarray(masks.mask).reshape(samples, *grid)
        freqs, power = stats.radial_power_spectrum(visible)
        if white_power is None:
            white_power = power
        relative = power / white_power
        sizes = stats.cluster_sizes(visible)
        rows.append(
            {
                "color": color,
                "params": gen.params,
                "mean_cluster": stats.mean_cluster_size(visible),
                "isolated": float((sizes == 1).sum() / visible.sum()),
                "peak_freq": float(freqs[np.argmax(relative)]),
                "dip_freq": float(freqs[np.argmin(relative)]),
                "relative_power": relative,
                "freqs": freqs,
            }
        )
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", default="14,14")
    parser.add_argument("--mask-ratio", type=float, default=0.75)
    parser.add_argument("--samples", type=int, default=2048)
    parser.add_argument("--field", type=int, default=128, help="side of the noise for spectra")
    parser.add_argument("--filter", default="figure", choices=FILTERS)
    args = parser.parse_args(argv)
    grid = tuple(int(g) for g in args.grid.split(","))

    print(
        f"normalised radial periodogram of color_noise (filter={args.filter!r}, "
        f"{args.field}x{args.field}, 64 fields) vs the official noise (figure), "
        f"rings of r = |f| / Nyquist\n"
    )
    ours = figure_comparison(args.field, filter=args.filter)
    print("| colour | | " + " | ".join(f"{r:.2f}" for r in FIGURE_RINGS) + " | max diff |")
    print("|---|---|" + "---|" * len(FIGURE_RINGS) + "---|")
    for color, target in FIGURE_PROFILES.items():
        diff = np.abs(ours[color] - target).max()
        print(f"| {color} | figure | " + " | ".join(f"{v:.2f}" for v in target) + " | |")
        print("| | mim_jax | " + " | ".join(f"{v:.2f}" for v in ours[color]) + f" | {diff:.2f} |")

    print(
        f"\nmasks: grid {grid}, mask_ratio {args.mask_ratio}, {args.samples} samples per colour\n"
    )
    print(
        "| colour | filter options | mean visible cluster | isolated visible | "
        "spectrum peak / dip vs white (cycles/patch) |"
    )
    print("|---|---|---|---|---|")
    for row in colour_table(grid, args.mask_ratio, args.samples, filter=args.filter):
        opts = ", ".join(f"{k}={v:g}" for k, v in row["params"].items()) or "-"
        print(
            f"| {row['color']} | {opts} | {row['mean_cluster']:.2f} | {row['isolated']:.0%} | "
            f"{row['peak_freq']:.3f} / {row['dip_freq']:.3f} |"
        )


if __name__ == "__main__":
    main()
