"""python -m mim_jax.bench train-step: one JSON line per mask timed, with FLOPs and MFU."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_train_step_bench_prints_the_contract_fields():
    args = [
        "train-step", "--model", "vit_tiny", "--image-size", "32", "--patch-size", "8",
        "--batch-size", "8", "--mask", "green", "--decoder-width", "32", "--decoder-depth", "1",
        "--decoder-heads", "2", "--repeats", "1", "--peak-tflops", "1.0",
    ]  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "mim_jax.bench", *args], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.strip().splitlines()]
    assert [r["mask"] for r in lines] == ["green", "random"]  # random is timed alongside
    green = lines[0]
    for field in ("what", "img_per_s", "step_ms", "compile_s", "devices", "peak_memory_bytes"):
        assert field in green
    assert green["what"] == "train_step" and green["img_per_s"] > 0
    assert green["model_flops_per_step"] > 0 and 0 < green["mfu"] < 1
    assert green["step_time_vs_baseline"] > 0 and lines[1]["baseline_for"] == "green"


@pytest.mark.slow
def test_a_measured_matmul_peak_bounds_the_step_and_float32_is_timed_beside_bfloat16():
    args = [
        "train-step", "--model", "vit_tiny", "--image-size", "32", "--patch-size", "8",
        "--batch-size", "8", "--mask", "random", "--baseline-mask", "none",
        "--decoder-width", "32", "--decoder-depth", "1", "--decoder-heads", "2",
        "--repeats", "1", "--peak-tflops", "measure", "--dtype", "bfloat16",
        "--baseline-dtype", "float32",
    ]  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "mim_jax.bench", *args], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    line, baseline = [json.loads(text) for text in done.stdout.strip().splitlines()]
    assert (line["dtype"], baseline["dtype"]) == ("bfloat16", "float32")
    assert line["matmul_peak_tflops"] > 0
    # No step can do its matmul FLOPs faster than the machine's matmul rate.
    assert 0 < line["matmul_bound_ms"] < line["step_ms"]
    assert line["mfu"] == pytest.approx(line["matmul_bound_ms"] / line["step_ms"], rel=1e-6)
    # The float32 step, timed in the same rounds, gives the ratio the README quotes.
    assert baseline["baseline_for"] == "random in bfloat16" and "mfu" not in baseline
    assert line["speed_vs_float32"] == pytest.approx(baseline["step_ms"] / line["step_ms"])
    # --repeats 1: the one round's ratio is the ratio itself.
    assert line["speed_vs_float32_per_round"] == pytest.approx([line["speed_vs_float32"]])
    assert line["model_flops_per_step"] == baseline["model_flops_per_step"]


@pytest.mark.slow
def test_the_torch_reference_is_timed_in_the_same_rounds_as_the_jax_step():
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    args = [
        "train-step", "--model", "vit_tiny", "--image-size", "32", "--patch-size", "8",
        "--batch-size", "8", "--mask", "random", "--baseline-mask", "none",
        "--decoder-width", "32", "--decoder-depth", "1", "--decoder-heads", "2",
        "--repeats", "2", "--peak-tflops", "measure", "--dtype", "bfloat16", "--vs-torch",
    ]  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "mim_jax.bench", *args], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    line, torch_line = [json.loads(text) for text in done.stdout.strip().splitlines()]
    # Each round times the JAX step and then torch's: a load that comes or goes hits both.
    assert "timing round 1/2 | random bfloat16, torch |" in done.stderr, done.stderr
    assert "timing round 2/2 | random bfloat16, torch |" in done.stderr, done.stderr
    assert torch_line["what"] == "torch_train_step" and torch_line["dtype"] == "bfloat16"
    assert torch_line["repeats"] == 2 and torch_line["batch_size"] == 8
    assert torch_line["params"] == line["params"]  # the same model on both sides
    assert line["speed_vs_torch"] == pytest.approx(torch_line["step_ms"] / line["step_ms"])
    # One ratio per round; with two rounds the ratio of the medians (means) lies between them.
    per_round = line["speed_vs_torch_per_round"]
    assert len(per_round) == 2 and min(per_round) > 0
    assert min(per_round) * (1 - 1e-9) <= line["speed_vs_torch"] <= max(per_round) * (1 + 1e-9)
    assert torch_line["matmul_peak_tflops"] > 0
    assert 0 < torch_line["matmul_bound_ms"] < torch_line["step_ms"]


def test_peak_tflops_must_be_positive_or_measure():
    done = subprocess.run(
        [sys.executable, "-m", "mim_jax.bench", "train-step", "--peak-tflops", "fast"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 2
    assert "positive number (TFLOP/s per device) or 'measure', got 'fast'" in done.stderr


def test_train_step_bench_rejects_a_batch_that_does_not_divide():
    done = subprocess.run(
        [sys.executable, "-m", "mim_jax.bench", "train-step", "--image-size", "32",
         "--patch-size", "8", "--batch-size", "12", "--data", "8", "--decoder-depth", "1"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 2
    assert "must divide over the 8 batch-sharded devices" in done.stderr
