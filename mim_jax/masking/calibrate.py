"""Measures the colour masks' statistics: how the default sigmas were chosen.

``python -m mim_jax.masking.calibrate [--grid 14,14] [--mask-ratio 0.75] [--samples 2048]``
prints one row per colour: its sigmas, the patch-weighted mean size of visible clusters
(4-connectivity), the share of visible patches with no visible neighbour, and where the mask's
radially averaged power spectrum peaks, relative to white noise's.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import jax
import numpy as np

from mim_jax.masking import stats
from mim_jax.masking.color import COLORS
from mim_jax.masking.registry import get


def colour_table(
    grid: tuple[int, int] = (14, 14), mask_ratio: float = 0.75, samples: int = 2048, seed: int = 0
) -> list[dict]:
    """One dict per colour with its sigmas and measured mask statistics."""
    rows, white_power = [], None
    for color in COLORS:
        gen = get("color", color=color)
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
                "sigmas": gen.sigmas,
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
    args = parser.parse_args(argv)
    grid = tuple(int(g) for g in args.grid.split(","))
    print(f"grid {grid}, mask_ratio {args.mask_ratio}, {args.samples} samples per colour\n")
    print(
        "| colour | sigmas (patches) | mean visible cluster | isolated visible | "
        "spectrum peak / dip vs white (cycles/patch) |"
    )
    print("|---|---|---|---|---|")
    for row in colour_table(grid, args.mask_ratio, args.samples):
        sig = ", ".join(f"{k}={v}" for k, v in row["sigmas"].items()) or "-"
        print(
            f"| {row['color']} | {sig} | {row['mean_cluster']:.2f} | {row['isolated']:.0%} | "
            f"{row['peak_freq']:.3f} / {row['dip_freq']:.3f} |"
        )


if __name__ == "__main__":
    main()
