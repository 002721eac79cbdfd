"""Launch scripts (dry runs: the exact commands they would run) and multi-process start-up."""

from __future__ import annotations

import argparse
import os
import pathlib
import re
import shlex
import subprocess
import sys
import tarfile

import pytest

from mim_jax.core import distributed

ROOT = pathlib.Path(__file__).resolve().parents[2]


# Stand-ins for the cloud tools: they record their arguments (one line each) and succeed, so
# no test ever reaches a real gcloud or sbatch, and a real (non-dry) run can be compared with
# what its dry run printed.
STUB = """#!/usr/bin/env bash
printf '%q ' "$(basename "$0")" "$@" >> "$STUB_LOG"; echo >> "$STUB_LOG"
"""


@pytest.fixture()
def stubs(tmp_path):
    """A bin folder with recording gcloud / sbatch stand-ins; yields their log file."""
    bin_dir = tmp_path / "stub_bin"
    bin_dir.mkdir()
    for tool in ("gcloud", "sbatch"):
        (bin_dir / tool).write_text(STUB)
        (bin_dir / tool).chmod(0o755)
    log = tmp_path / "stub_calls.txt"
    log.touch()
    yield {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "STUB_LOG": str(log)}, log


def sh(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Runs a launch script with bash from the repo root."""
    return subprocess.run(
        ["bash", *args], cwd=ROOT, env={**os.environ, **(env or {})}, capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip


def command_lines(stdout: str) -> list[list[str]]:
    """The printed commands, split into words (comments and blank lines dropped)."""
    return [shlex.split(line) for line in stdout.splitlines() if line and line[0] != "#"]


# --------------------------------------------------------------------------------------------
# launch/local.sh
# --------------------------------------------------------------------------------------------


def test_local_dry_run_prints_the_train_command(tmp_path):
    done = sh("launch/local.sh", "--dry-run", "configs/demo.py:mask=red",
              "--config.total_steps=5", "--max-steps", "2",
              env={"WORKDIR": str(tmp_path)})  # fmt: skip
    assert done.returncode == 0, done.stderr
    [words] = command_lines(done.stdout)
    assert words[0].endswith("python") or words[0].endswith("python3")
    assert words[1:] == [
        "-m", "mim_jax.train", "--config", "configs/demo.py:mask=red", "--workdir",
        str(tmp_path), "--config.total_steps=5", "--max-steps", "2",
    ]  # fmt: skip
    # --workdir beats $WORKDIR; without either the run goes to runs/<config name>.
    done = sh("launch/local.sh", "--dry-run", "--workdir", "/data/r", "configs/demo.py")
    assert command_lines(done.stdout)[0][-2:] == ["--workdir", "/data/r"]
    env = {k: v for k, v in os.environ.items() if k != "WORKDIR"}
    done = subprocess.run(["bash", "launch/local.sh", "--dry-run", "configs/mae_in1k.py:x=1"],
                          cwd=ROOT, env=env, capture_output=True, text=True)  # fmt: skip
    assert command_lines(done.stdout)[0][-2:] == ["--workdir", "runs/mae_in1k"]
    assert sh("launch/local.sh").returncode == 2


def test_local_runs_the_cli_for_real(tmp_path):
    """Not a dry run: the CLI starts, reads the config and rejects the bad field (exit 2)."""
    done = sh("launch/local.sh", "--python", sys.executable, "--workdir", str(tmp_path / "r"),
              "configs/demo.py", "--config.no_such_field=1")  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert "unknown config field config.no_such_field" in done.stderr
    assert "[local.sh]" in done.stderr and (tmp_path / "r").is_dir()


# --------------------------------------------------------------------------------------------
# launch/tpu_pod.sh
# --------------------------------------------------------------------------------------------

TPU = ["launch/tpu_pod.sh", "--dry-run", "--name", "mae-pod", "--zone", "us-central2-b",
       "--accelerator-type", "v4-32", "--runtime-version", "tpu-ubuntu2204-base"]  # fmt: skip


TPU_RUN = ["--spot", "--mount-bucket", "gs://my-bucket", "--workdir", "~/gcs/runs/b",
           "configs/mae_in1k.py:model=vit_large", "--config.batch_size=1024"]  # fmt: skip


def test_tpu_dry_run_prints_create_copy_install_and_train_on_all_workers(stubs):
    env, calls = stubs
    done = sh(*TPU, *TPU_RUN, env=env)
    assert done.returncode == 0, done.stderr
    assert calls.read_text() == "", "a dry run must not call gcloud"
    out = done.stdout
    assert subprocess.run(["bash", "-n"], input=out, text=True).returncode == 0  # valid bash
    lines = command_lines(out)
    gcloud = [w for w in lines if w[:4] == ["gcloud", "compute", "tpus", "tpu-vm"]]
    creates = [w for w in gcloud if w[4] == "create"]
    assert creates == [[
        "gcloud", "compute", "tpus", "tpu-vm", "create", "mae-pod", "--zone", "us-central2-b",
        "--accelerator-type", "v4-32", "--version", "tpu-ubuntu2204-base", "--spot",
    ]]  # fmt: skip
    assert "describe mae-pod --zone us-central2-b" in out and "delete mae-pod" in out
    [scp] = [w for w in gcloud if w[4] == "scp"]
    assert scp[-1] == "--worker=all" and scp[6] == "mae-pod:~/mim_jax.tar.gz"
    ssh = [w for w in gcloud if w[4] == "ssh"]
    assert [w[5] for w in ssh] == ["mae-pod", "mae-pod"]
    assert all("--worker=all" in w for w in ssh)
    install, train = (w[w.index("--command") + 1] for w in ssh)
    assert "gcsfuse --implicit-dirs --rename-dir-limit=1000000 my-bucket ~/gcs" in install
    assert "pip install -U 'jax[tpu]' -e ~/mim_jax" in install
    remote = shlex.split(train.split("&&", 1)[1].split("2>&1")[0])
    assert remote == [
        "python3", "-m", "mim_jax.train", "--config", "configs/mae_in1k.py:model=vit_large",
        "--workdir", "$HOME/gcs/runs/b", "--distributed", "jax", "--config.batch_size=1024",
    ]  # fmt: skip
    assert '"$HOME/gcs/runs/b"' in train  # expanded on the worker, not here
    assert train.endswith("| tee -a ~/mim_mae_in1k.log")


def test_tpu_dry_run_with_pip_install_and_detach():
    done = sh(*TPU, "--install", "git+https://example.com/mim_jax.git", "--detach",
              "--job-name", "run7", "--workdir", "/mnt/shared/run7", "configs/demo.py")  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = command_lines(done.stdout)
    assert not [w for w in lines if "scp" in w or w[0] == "tar"]
    commands = [w[w.index("--command") + 1] for w in lines if "--command" in w]
    assert "pip install -U 'jax[tpu]' git+https://example.com/mim_jax.git" in commands[0]
    assert commands[1].startswith("nohup bash -c") and ">> ~/run7.log" in commands[1]
    assert commands[2] == "tail -f ~/run7.log" and "--worker=0" in lines[-1]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--workdir", "/x"], "no CONFIG"),
        (["configs/demo.py"], "--workdir DIR is required"),
    ],
)
def test_tpu_refuses_bad_arguments(args, message):
    done = sh(*TPU, *args)
    assert done.returncode == 2 and message in done.stderr


def test_tpu_real_run_calls_gcloud_as_its_dry_run_printed(stubs, tmp_path):
    """With a recording gcloud, the script runs the very commands its dry run printed (a slice
    not found: describe, create, then copy, install and train)."""
    env, calls = stubs
    env = {**env, "TMPDIR": str(tmp_path)}
    printed = [w for w in command_lines(sh(*TPU, *TPU_RUN, env=env).stdout) if w[0] == "gcloud"]
    done = sh(*[a for a in TPU if a != "--dry-run"], *TPU_RUN, env=env)
    assert done.returncode == 0, done.stderr
    ran = [shlex.split(line) for line in calls.read_text().splitlines()]
    assert ran[0][:6] == ["gcloud", "compute", "tpus", "tpu-vm", "describe", "mae-pod"]
    assert ran[1:] == [w for w in printed if w[4] != "delete"]
    assert ran[2][5] == str(tmp_path / "mim_jax.tar.gz")
    with tarfile.open(tmp_path / "mim_jax.tar.gz") as tar:  # the checkout, without the venv
        names = tar.getnames()
    assert "./mim_jax/train/pretrain.py" in names and not any(".venv" in n for n in names)


# --------------------------------------------------------------------------------------------
# launch/gpu_slurm.sh
# --------------------------------------------------------------------------------------------


def sbatch_options(script: str) -> dict[str, str]:
    return dict(re.findall(r"^#SBATCH --([\w-]+)(?:=(\S+))?$", script, re.M))


def test_slurm_dry_run_prints_the_job_script_and_sbatch(tmp_path):
    done = sh("launch/gpu_slurm.sh", "--dry-run", "--nodes", "4", "--gpus-per-node", "8",
              "--time", "12:00:00", "--partition", "a100", "--account", "proj",
              "--setup", "source /opt/venv/bin/activate", "--workdir", "/shared/runs/b",
              "configs/mae_in1k.py:model=vit_base", "--config.batch_size=4096")  # fmt: skip
    assert done.returncode == 0, done.stderr
    script, submit = done.stdout.split("# submit:\n")
    assert sbatch_options(script) == {
        "job-name": "mim_mae_in1k", "nodes": "4", "ntasks-per-node": "1",
        "gpus-per-node": "8", "cpus-per-task": "64", "time": "12:00:00", "partition": "a100",
        "account": "proj", "output": "/shared/runs/b/slurm/%x-%j.out", "signal": "TERM@300",
        "requeue": "", "open-mode": "append",
    }  # fmt: skip
    assert "source /opt/venv/bin/activate" in script
    [srun] = [shlex.split(x) for x in script.splitlines() if x.startswith("srun ")]
    assert srun == [
        "srun", "--kill-on-bad-exit=1", "--cpus-per-task=64", "python3", "-m", "mim_jax.train",
        "--config", "configs/mae_in1k.py:model=vit_base", "--workdir", "/shared/runs/b",
        "--distributed", "slurm", "--config.batch_size=4096",
    ]  # fmt: skip
    assert submit.strip() == (
        "mkdir -p /shared/runs/b/slurm && sbatch /shared/runs/b/slurm/mim_mae_in1k.sbatch"
    )
    body = script.split("\n", 1)[1]  # after the "# sbatch script (...)" line
    assert subprocess.run(["bash", "-n"], input=body, text=True).returncode == 0
    assert not (tmp_path / "slurm").exists()


def test_slurm_submits_the_script_it_writes(stubs, tmp_path):
    env, calls = stubs
    done = sh("launch/gpu_slurm.sh", "--workdir", str(tmp_path / "w"), "configs/demo.py", env=env)
    assert done.returncode == 0, done.stderr
    script = tmp_path / "w" / "slurm" / "mim_demo.sbatch"
    assert calls.read_text().split() == ["sbatch", str(script)]
    assert "--distributed slurm" in script.read_text()


def test_slurm_per_gpu_layout_and_written_script(tmp_path):
    script = tmp_path / "job.sbatch"
    done = sh("launch/gpu_slurm.sh", "--no-submit", "--per-gpu", "--nodes", "2",
              "--gpus-per-node", "4", "--script", str(script), "--workdir", str(tmp_path / "w"),
              "configs/demo.py")  # fmt: skip
    assert done.returncode == 0, done.stderr
    options = sbatch_options(script.read_text())
    assert options["ntasks-per-node"] == "4" and options["cpus-per-task"] == "8"
    assert (tmp_path / "w" / "slurm").is_dir()
    assert sh("launch/gpu_slurm.sh", "configs/demo.py").returncode == 2  # no workdir


# --------------------------------------------------------------------------------------------
# mim_jax.core.distributed: who is this process?
# --------------------------------------------------------------------------------------------

SLURM = {"SLURM_JOB_ID": "123457", "SLURM_NTASKS": "8", "SLURM_PROCID": "5",
         "SLURM_LOCALID": "1", "SLURM_STEP_NODELIST": "gpu[007-010]",
         "SLURM_STEP_NUM_NODES": "4"}  # fmt: skip


def test_resolve_from_flags_slurm_or_nothing():
    assert distributed.resolve(env={}) is None
    group = distributed.resolve("10.0.0.2:1234", 2, 1, env=SLURM)  # flags beat SLURM
    assert group == distributed.ProcessGroup("10.0.0.2:1234", 2, 1, None, "flags")
    # 8 tasks on 4 nodes: one process per GPU, this one keeps local GPU 1.
    port = 61440 + 123457 % 4096
    assert distributed.resolve(env=SLURM) == distributed.ProcessGroup(
        f"gpu007:{port}", 8, 5, (1,), "slurm"
    )
    one_per_node = {**SLURM, "SLURM_NTASKS": "4", "SLURM_PROCID": "3", "JAX_COORDINATOR_PORT": "9"}
    group = distributed.resolve(mode="slurm", env=one_per_node)
    assert (group.coordinator, group.local_device_ids) == ("gpu007:9", None)
    assert distributed.resolve(env={**SLURM, "SLURM_NTASKS": "1", "SLURM_PROCID": "0"}) is None
    assert distributed.resolve(mode="none", env=SLURM) is None
    assert distributed.resolve(mode="jax", env={}).source == "jax"


@pytest.mark.parametrize(
    "nodelist, host",
    [("node001", "node001"), ("a1,b2", "a1"), ("gpu[003-010,012],cpu1", "gpu003"),
     ("gpu[12,15]", "gpu12"), ("10.1.2.3", "10.1.2.3")],
)  # fmt: skip
def test_first_host_of_a_slurm_node_list(nodelist, host):
    assert distributed.first_host(nodelist) == host


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(coordinator="h:1", num_processes=2), "--process-id missing"),
        (dict(coordinator="h:1", num_processes=2, process_id=2), "process id < process count"),
        (dict(coordinator="nohostport", num_processes=2, process_id=0), "HOST:PORT"),
        (dict(mode="slurm"), "not a SLURM job step"),
        (dict(mode="mpi"), "valid: auto, slurm, jax, none"),
        (dict(mode="none", process_id=0), "--distributed=none"),
    ],
)
def test_resolve_rejects_inconsistent_settings(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        distributed.resolve(env={}, **kwargs)


def test_cli_flags_parse_into_a_group():
    parser = argparse.ArgumentParser()
    distributed.add_arguments(parser)
    args = parser.parse_args(["--coordinator", "127.0.0.1:5", "--num-processes", "2",
                              "--process-id", "0", "--local-device-ids", "0,1"])  # fmt: skip
    assert distributed.from_args(args, env={}) == distributed.ProcessGroup(
        "127.0.0.1:5", 2, 0, (0, 1), "flags"
    )
    args = parser.parse_args(["--local-device-ids", "a"])
    with pytest.raises(ValueError, match="comma-separated ints"):
        distributed.from_args(args, env={})


@pytest.mark.parametrize("script", ["local.sh", "tpu_pod.sh", "gpu_slurm.sh"])
def test_launcher_help_is_the_comment_block_only(script):
    done = subprocess.run(
        ["bash", str(ROOT / "launch" / script), "--help"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert f"launch/{script}" in text  # the usage line
    assert "set -euo" not in text and "#" not in text.splitlines()[0]
    lines = (ROOT / "launch" / script).read_text().splitlines()[1:]
    block = lines[: next(i for i, line in enumerate(lines) if not line.startswith("#"))]
    assert text.splitlines() == [re.sub(r"^# ?", "", line) for line in block]


def test_tpu_takes_a_bucket_url_workdir_and_installs_gcsfs():
    done = sh(*TPU, "--workdir", "gs://b/run", "configs/demo.py")
    assert done.returncode == 0, done.stderr
    commands = [w[w.index("--command") + 1] for w in command_lines(done.stdout) if "--command" in w]
    assert "pip install -U 'jax[tpu]' gcsfs -e ~/mim_jax" in commands[0]
    assert "--workdir gs://b/run " in commands[1]
