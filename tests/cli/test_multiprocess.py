"""Two real processes train together (jax.distributed over 127.0.0.1, gloo CPU collectives),
pause with a checkpoint, and a second launch resumes: same loss in both, own data shard each.

The first launch passes --coordinator/--num-processes/--process-id; the second runs the sbatch
script that launch/gpu_slurm.sh writes, with a stand-in ``srun`` that starts the tasks locally
with SLURM's variables, so the processes find each other through mim_jax.core.distributed's SLURM
path as on a cluster."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
PROCESSES = 2
LOCAL_DEVICES = 2
BATCH = 16  # global; each process reads BATCH // PROCESSES per step from its own shard
OVERRIDES = [
    "mask=random",
    "model.patch_size=8",
    "model.encoder_overrides.depth=1",
    "model.decoder_depth=1",
    f"batch_size={BATCH}",
    "total_steps=4",
    "log_every=1",
    "checkpoint_every=2",
    "recon_every=0",
]
TIMEOUT_S = 240


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


FAKE_SRUN = """#!/usr/bin/env bash
# Stand-in for srun on one machine: SLURM_NTASKS tasks of the command, SLURM variables set.
while [[ "$1" == --* ]]; do shift; done
pids=()
for ((i = 0; i < SLURM_NTASKS; i++)); do
  SLURM_PROCID=$i SLURM_LOCALID=0 SLURM_NODEID=$i "$@" > "$SRUN_LOGS/process_$i.log" 2>&1 &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
exit $status
"""


def base_env() -> dict[str, str]:
    env = dict(os.environ)
    env["XLA_FLAGS"] = (
        f"--xla_force_host_platform_device_count={LOCAL_DEVICES} --xla_backend_optimization_level=0"
    )
    env["JAX_PLATFORMS"] = "cpu"
    return env


def wait_all(children: list[subprocess.Popen]) -> list[int] | None:
    """Exit codes, or None on timeout; kills every child's process group either way."""
    try:
        deadline = time.monotonic() + TIMEOUT_S
        return [child.wait(timeout=max(1.0, deadline - time.monotonic())) for child in children]
    except subprocess.TimeoutExpired:
        return None
    finally:
        for child in children:  # never leave a process behind (one dead peer hangs the other)
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()


def launch_with_flags(workdir: pathlib.Path, logs: pathlib.Path, *extra: str) -> list[str]:
    """Runs the train CLI in PROCESSES processes given explicit multi-process flags."""
    port = free_port()
    children = []
    for i in range(PROCESSES):
        with open(logs / f"process_{i}.log", "w") as out:
            command = [
                sys.executable, "-m", "mim_jax.train", "--config", "configs/demo.py",
                "--workdir", str(workdir), *(f"--config.{o}" for o in OVERRIDES),
                "--coordinator", f"127.0.0.1:{port}", "--num-processes", str(PROCESSES),
                "--process-id", str(i), *extra,
            ]  # fmt: skip
            children.append(
                subprocess.Popen(
                    command, cwd=ROOT, env=base_env(), stdout=out, stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )  # fmt: skip
    return collect(wait_all(children), logs)


def launch_with_slurm_script(workdir: pathlib.Path, logs: pathlib.Path) -> list[str]:
    """Writes the job with launch/gpu_slurm.sh and runs it as SLURM would on 2 nodes."""
    script = logs / "job.sbatch"
    written = subprocess.run(
        ["bash", "launch/gpu_slurm.sh", "--no-submit", "--script", str(script),
         "--nodes", str(PROCESSES), "--gpus-per-node", "0", "--python", sys.executable,
         "--workdir", str(workdir), "configs/demo.py", *(f"--config.{o}" for o in OVERRIDES)],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert written.returncode == 0, written.stderr
    assert "--distributed slurm" in script.read_text()
    bin_dir = logs / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "srun").write_text(FAKE_SRUN)
    (bin_dir / "srun").chmod(0o755)
    env = base_env()
    env.update(
        PATH=f"{bin_dir}:{env['PATH']}",
        SRUN_LOGS=str(logs),
        SLURM_JOB_ID="4242",
        SLURM_NTASKS=str(PROCESSES),
        SLURM_JOB_NUM_NODES=str(PROCESSES),
        SLURM_STEP_NUM_NODES=str(PROCESSES),
        SLURM_STEP_NODELIST="127.0.0.1",
        JAX_COORDINATOR_PORT=str(free_port()),
    )
    child = subprocess.Popen(
        ["bash", str(script)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    return collect(wait_all([child]), logs)


def collect(codes: list[int] | None, logs: pathlib.Path) -> list[str]:
    """Each process's output; fails with the logs' tails on a timeout or an error."""
    outputs = [(logs / f"process_{i}.log").read_text() for i in range(PROCESSES)]
    report = "\n".join(f"--- process {i}:\n{o[-3000:]}" for i, o in enumerate(outputs))
    assert codes is not None, f"timed out after {TIMEOUT_S}s\n{report}"
    assert set(codes) == {0}, f"exit codes {codes}\n{report}"
    return outputs


def metrics(path: pathlib.Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def data_states(workdir: pathlib.Path, step: int) -> list[dict]:
    """The per-process grain iterator states saved with checkpoint ``step`` (Orbax JSON item)."""
    stored = json.loads((workdir / "checkpoints" / str(step) / "data" / "metadata").read_text())
    assert stored["kind"] == "dict", stored
    return [json.loads(s) for s in stored["value"]["per_process"]]


def assert_own_shards(workdir: pathlib.Path, step: int) -> None:
    """After ``step`` steps, process i has read records i, i + P, i + 2P, ... of the sampler's
    order only: its last index is (step * per-process batch - 1) * P + i."""
    states = data_states(workdir, step)
    assert len(states) == PROCESSES
    per_process = BATCH // PROCESSES
    for i, state in enumerate(states):
        assert f"shard_index={i}, shard_count={PROCESSES}" in state["sampler"]
        last = state["last_seen_indices"]["0"]
        assert last % PROCESSES == i
        assert last == (step * per_process - 1) * PROCESSES + i


@pytest.mark.slow
def test_two_processes_train_checkpoint_and_resume(tmp_path):
    workdir = tmp_path / "run"
    logs = tmp_path / "logs"
    logs.mkdir()
    first = launch_with_flags(workdir, logs, "--max-steps", "2")
    for i, out in enumerate(first):
        assert f"process {i}/{PROCESSES}: {LOCAL_DEVICES} local of 4 cpu devices" in out, out
        assert f"process {i}/{PROCESSES} reads data shard {i} of {PROCESSES}" in out, out
        assert "paused after 2 steps at step 2" in out, out
    assert_own_shards(workdir, 2)

    second = launch_with_slurm_script(workdir, logs)
    for i, out in enumerate(second):
        assert f"process {i}/{PROCESSES}: {LOCAL_DEVICES} local of 4 cpu devices" in out, out
        assert "at step 2" in out and "resumed from" in out, out
        assert "done: step 4" in out, out
    assert_own_shards(workdir, 4)

    # Process 0 writes the run's metrics once per step; process 1 its own copy; they agree.
    main = metrics(workdir / "metrics.jsonl")
    other = metrics(workdir / "process_1" / "metrics.jsonl")
    assert [r["step"] for r in main] == [r["step"] for r in other] == [1, 2, 3, 4]
    assert [r["loss"] for r in main] == [r["loss"] for r in other]
    assert all(r["loss"] > 0 for r in main)
