"""Timing helpers of the benchmarks: interleaved medians, best-of-N and the matmul peak.

They depend on nothing else in :mod:`mim_jax.bench` (JAX and the standard library only).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable

import jax

from mim_jax.core.metrics import Eta


def time_interleaved_rounds(
    fns: dict[str, Callable[[int], object]], repeats: int, inner: int, warmup_rounds: int = 1
) -> dict[str, list[float]]:
    """Seconds per call of each function in each of ``repeats`` rounds, timed in alternation.

    Each round calls every function ``inner`` times in a row (after ``block_until_ready``); the
    rounds alternate between functions so that drift in machine load hits all of them alike,
    and two functions' times in the same round were taken seconds apart.

    ``warmup_rounds`` untimed rounds of the same alternation come first. A function warmed up on
    its own is not warm once the others have run: with the malloc settings of
    :mod:`mim_jax.runtime`, torch's reference step, built after the JAX steps' own first call,
    took heap that the JAX step then faulted in again inside the first timed round (650 k page
    faults, about 1 s of system time for the ViT-Tiny step on a 2-core EPYC), so the first
    round's ratio came out 0.76-0.79x against about 0.95x in the others.
    """
    if warmup_rounds:
        print(f"timing: {warmup_rounds} untimed warm-up round(s)", file=sys.stderr, flush=True)
    call = 0
    for _ in range(warmup_rounds):
        for fn in fns.values():
            jax.block_until_ready(fn(call))
            call += 1
    samples: dict[str, list[float]] = {name: [] for name in fns}
    eta = Eta(repeats, "timing round")
    for r in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            for _ in range(inner):
                out = fn(call)
                call += 1
            jax.block_until_ready(out)
            samples[name].append((time.perf_counter() - start) / inner)
        print(eta.line(r + 1, ", ".join(fns)), file=sys.stderr, flush=True)  # stdout: JSON
    return samples


def time_interleaved(
    fns: dict[str, Callable[[int], object]], repeats: int, inner: int
) -> dict[str, float]:
    """Median seconds per call of each function, timed in alternation (see
    :func:`time_interleaved_rounds`)."""
    return medians(time_interleaved_rounds(fns, repeats, inner))


def medians(rounds: dict[str, list[float]]) -> dict[str, float]:
    """The median of each function's per-round seconds."""
    return {name: statistics.median(times) for name, times in rounds.items()}


def per_round_ratios(slower: list[float], faster: list[float]) -> list[float]:
    """``slower[i] / faster[i]`` for each round: a speed-up measured within one round each, so
    its spread shows how far the machine's noise moves one comparison."""
    return [s / f for s, f in zip(slower, faster, strict=True)]


MATMUL_SIZE = 2048


def best_seconds(call: Callable[[], object], repeats: int) -> float:
    """Fastest of ``repeats`` timed calls of ``call`` (which must block), after one untimed."""
    call()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - start)
    return best


def matmul_peak_tflops(dtype: str = "float32", size: int = MATMUL_SIZE, repeats: int = 5) -> float:
    """Best TFLOP/s of a jitted ``[size, size] @ [size, size]`` on the default device.

    The operands are ``dtype``; the product accumulates in float32. A machine's practical dense
    matmul rate, used as the peak for MFU when no spec-sheet figure applies (a CPU) and to bound
    the step time from below (``matmul_bound_ms``).
    """
    operand = jax.numpy.ones((size, size), dtype)
    matmul = jax.jit(lambda a, b: jax.numpy.matmul(a, b, preferred_element_type=jax.numpy.float32))
    seconds = best_seconds(lambda: jax.block_until_ready(matmul(operand, operand)), repeats)
    return 2 * size**3 / seconds / 1e12


def peak_tflops_arg(text: str) -> float | str:
    """``--peak-tflops``: a positive per-device TFLOP/s figure, or ``measure``."""
    if text == "measure":
        return text
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if value <= 0:
        raise argparse.ArgumentTypeError(
            f"--peak-tflops takes a positive number (TFLOP/s per device) or 'measure', got {text!r}"
        )
    return value
