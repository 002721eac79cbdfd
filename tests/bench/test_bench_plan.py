"""Compile-ahead plan: the train step compiled for a virtual mesh, its memory accounted per
device from the shardings and from XLA's memory analysis, and the fit decision."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

from mim_jax.bench import cli as bench
from mim_jax.bench.plan import decide, parse_mesh

ROOT = pathlib.Path(__file__).resolve().parents[2]
SMALL = ["--model", "vit_tiny", "--encoder", "depth=1,width=64,num_heads=2,mlp_dim=128",
         "--image-size", "32", "--patch-size", "8",
         "--decoder-depth", "1", "--decoder-width", "32", "--decoder-heads", "2"]  # fmt: skip


def plan_in_process(capsys, *args: str) -> dict:
    bench.main(["plan", *SMALL, *args])
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    assert len(lines) == 1
    return lines[0]


def check_accounting(result: dict) -> None:
    """XLA's argument bytes are the sharded state + batch worked out from the shapes."""
    from_shapes = (
        result["param_bytes_per_device"]
        + result["opt_state_bytes_per_device"]
        + result["constants_bytes_per_device"]
        + result["batch_bytes_per_device"]
    )
    # + the step counter, the AdamW count and the key: a few scalars
    assert 0 <= result["argument_bytes_per_device"] - from_shapes <= 64
    # AdamW keeps two moments per parameter, sharded like it (+ its int32 count).
    assert 0 <= result["opt_state_bytes_per_device"] - 2 * result["param_bytes_per_device"] <= 16
    assert result["temp_bytes_per_device"] > 0
    assert result["peak_bytes_per_device"] == (
        result["argument_bytes_per_device"]
        + result["output_bytes_per_device"]
        - result["alias_bytes_per_device"]
        + result["temp_bytes_per_device"]
    )


def test_mesh_spec_parses_and_rejects_bad_axes():
    assert parse_mesh("fsdp=64") == {"data": 1, "fsdp": 64, "tensor": 1}
    assert parse_mesh("data=2, fsdp=4,tensor=2") == {"data": 2, "fsdp": 4, "tensor": 2}
    for bad in ("fsdp", "pipeline=2", "fsdp=0", "fsdp=x"):
        with pytest.raises(ValueError, match="AXIS=SIZE"):
            parse_mesh(bad)


@pytest.mark.slow
def test_plan_on_a_mesh_of_this_process_accounts_memory_and_decides_fit(capsys):
    small = plan_in_process(capsys, "--mesh", "data=2,fsdp=4", "--batch-size", "16")
    assert small["devices"] == 8 and small["mesh"] == {"data": 2, "fsdp": 4, "tensor": 1}
    check_accounting(small)
    # fsdp=4 splits the big kernels four ways: a device holds a quarter-ish of the parameters.
    total = 4 * small["params"]
    assert total / 4 <= small["param_bytes_per_device"] < total / 2
    # A 4x larger batch needs more activation memory; a budget between the two peaks decides.
    big = plan_in_process(capsys, "--mesh", "data=2,fsdp=4", "--batch-size", "64")
    assert big["temp_bytes_per_device"] > small["temp_bytes_per_device"]
    assert big["param_bytes_per_device"] == small["param_bytes_per_device"]
    middle = (small["peak_bytes_per_device"] + big["peak_bytes_per_device"]) / 2 / 2**30
    assert decide(small, middle, headroom=1.0)["fits"] is True
    assert decide(big, middle, headroom=1.0)["fits"] is False
    assert decide(big, 2 * middle, headroom=0.5)["fits"] is False  # headroom counts
    with pytest.raises(ValueError, match="headroom"):
        decide(big, middle, headroom=1.5)


@pytest.mark.slow
def test_cli_reexecs_with_the_mesh_device_count():
    """From a fresh shell the command runs itself again with 4 virtual CPU devices."""
    done = subprocess.run(
        [sys.executable, "-m", "mim_jax.bench", "plan", *SMALL, "--mesh", "fsdp=4",
         "--batch-size", "8", "--device-memory-gb", "16"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["what"] == "plan" and result["devices"] == 4
    assert result["mesh"] == {"data": 1, "fsdp": 4, "tensor": 1}
    check_accounting(result)
    assert result["fits"] is True and result["compile_s"] > 0


def test_plan_rejects_a_batch_the_mesh_cannot_split(capsys):
    with pytest.raises(SystemExit) as err:
        bench.main(["plan", *SMALL, "--mesh", "fsdp=8", "--batch-size", "12"])
    assert err.value.code == 2
    assert "divide over data x fsdp = 8" in capsys.readouterr().err
