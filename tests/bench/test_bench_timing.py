"""The benchmarks' interleaved timing: rounds alternate between the functions timed."""

from __future__ import annotations

import time

import pytest

from mim_jax.bench.timing import per_round_ratios, time_interleaved, time_interleaved_rounds


def test_rounds_alternate_between_the_functions_and_time_each_call():
    calls = []

    def sleeper(name: str, seconds: float):
        def call(i: int) -> None:
            calls.append(name)
            time.sleep(seconds)

        return call

    fns = {"fast": sleeper("fast", 0.01), "slow": sleeper("slow", 0.03)}
    rounds = time_interleaved_rounds(fns, repeats=3, inner=2)
    # One untimed warm-up round of the same alternation, then round by round, not all of one
    # function first.
    assert calls == ["fast", "slow"] + ["fast", "fast", "slow", "slow"] * 3
    assert {name: len(times) for name, times in rounds.items()} == {"fast": 3, "slow": 3}
    assert all(0.01 <= t < 0.5 for t in rounds["fast"])  # seconds per call, not per round
    ratios = per_round_ratios(rounds["slow"], rounds["fast"])
    assert len(ratios) == 3 and all(1.2 < r < 10 for r in ratios)


def test_the_warm_up_rounds_are_not_timed():
    durations = iter([0.5, 0.5, 0.01, 0.01])  # two slow first calls: the warm-up rounds

    def call(i: int) -> None:
        time.sleep(next(durations))

    rounds = time_interleaved_rounds({"f": call}, repeats=2, inner=1, warmup_rounds=2)
    assert len(rounds["f"]) == 2 and all(t < 0.25 for t in rounds["f"])


def test_time_interleaved_is_the_median_of_the_rounds():
    durations = iter([0.0, 0.01, 0.03, 0.02])  # warm-up, then the middle round is the slowest

    def call(i: int) -> None:
        time.sleep(next(durations))

    medians = time_interleaved({"f": call}, repeats=3, inner=1)
    assert 0.02 <= medians["f"] < 0.03


def test_per_round_ratios_need_one_time_per_round_on_each_side():
    assert per_round_ratios([2.0, 3.0], [1.0, 2.0]) == [2.0, 1.5]
    with pytest.raises(ValueError):
        per_round_ratios([2.0, 3.0], [1.0])
