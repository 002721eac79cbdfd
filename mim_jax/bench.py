"""Benchmarks, printed as JSON lines (one per measurement).

Machines are noisy, so every figure comes with a baseline timed in the same process, interleaved
with the measurement, and the ratio between the two.

  python -m mim_jax.bench masks --mask green --grid 14,14 --batch-size 4096
      {"what": "masks", "mask": "green", "masks_per_s": ..., "batch_size": 4096,
       "grid": [14, 14], "baseline": "random", "baseline_masks_per_s": ...,
       "speed_vs_baseline": ..., ...}
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence

import jax

from mim_jax import masking


def time_interleaved(
    fns: dict[str, Callable[[int], object]], repeats: int, inner: int
) -> dict[str, float]:
    """Median seconds per call of each function, timing them in alternation.

    Each round calls every function ``inner`` times in a row (after ``block_until_ready``); the
    rounds alternate between functions so that drift in machine load hits all of them alike.
    """
    samples: dict[str, list[float]] = {name: [] for name in fns}
    call = 0
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            for _ in range(inner):
                out = fn(call)
                call += 1
            jax.block_until_ready(out)
            samples[name].append((time.perf_counter() - start) / inner)
    return {name: statistics.median(times) for name, times in samples.items()}


def mask_step(name: str, batch_size: int, grid: tuple[int, ...], mask_ratio: float):
    """A jitted ``i -> Masks`` for the strategy ``name`` and its compile time in seconds."""
    gen = masking.get(name)
    base_key = jax.random.key(0)

    @jax.jit
    def step(i):
        return gen(
            jax.random.fold_in(base_key, i), batch_size=batch_size, grid=grid, mask_ratio=mask_ratio
        )

    start = time.perf_counter()
    jax.block_until_ready(step(0))
    return step, time.perf_counter() - start


def bench_masks(args: argparse.Namespace) -> dict:
    grid = tuple(int(g) for g in args.grid.split(","))
    step, compile_s = mask_step(args.mask, args.batch_size, grid, args.mask_ratio)
    fns = {"target": step}
    baseline = None if args.baseline == "none" else args.baseline
    if baseline:
        fns["baseline"], _ = mask_step(baseline, args.batch_size, grid, args.mask_ratio)
    seconds = time_interleaved(fns, args.repeats, args.inner)
    result = {
        "what": "masks",
        "mask": args.mask,
        "masks_per_s": args.batch_size / seconds["target"],
        "ms_per_batch": 1e3 * seconds["target"],
        "batch_size": args.batch_size,
        "grid": list(grid),
        "mask_ratio": args.mask_ratio,
        "compile_s": compile_s,
        "devices": jax.device_count(),
        "backend": jax.default_backend(),
    }
    if baseline:
        result.update(
            baseline=baseline,
            baseline_masks_per_s=args.batch_size / seconds["baseline"],
            speed_vs_baseline=seconds["baseline"] / seconds["target"],
        )
    return result


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mim_jax.bench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    masks = sub.add_parser("masks", help="mask generation throughput, jit warm, on device")
    masks.add_argument("--mask", default="random", help="registry name or colour name")
    masks.add_argument(
        "--grid", default="14,14", help="comma-separated grid, e.g. 14,14 or 8,14,14"
    )
    masks.add_argument("--batch-size", type=int, default=4096)
    masks.add_argument("--mask-ratio", type=float, default=0.75)
    masks.add_argument("--baseline", default="random", help="strategy timed alongside, or none")
    masks.add_argument("--repeats", type=int, default=15, help="timed rounds (median reported)")
    masks.add_argument("--inner", type=int, default=3, help="calls per timed round")
    args = parser.parse_args(argv)
    try:
        result = bench_masks(args)
    except ValueError as err:
        parser.exit(2, f"error: {err}\n")
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
