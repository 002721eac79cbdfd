"""The whole training loop, and then the evaluation CLI, on a gs:// workdir, offline: a local
Cloud Storage emulator.

``gcp-storage-emulator`` serves the Cloud Storage JSON API from this process; gcsfs (config,
metrics, TensorBoard events, pictures, via :mod:`mim_jax.core.paths`) and TensorStore (Orbax's
array writes) are pointed at it with their documented variables. Nothing touches a local
``gs:`` folder, and a second invocation resumes from the bucket. (The emulator cannot do the
conditional writes of Orbax's OCDBT manifest, so the state is written as plain zarr arrays here.)
"""

from __future__ import annotations

import json
import os
import pathlib
import socket
import subprocess
import sys

import pytest
from conftest import one_device_xla_flags

emulator = pytest.importorskip("gcp_storage_emulator.server")
gcsfs = pytest.importorskip("gcsfs")

ROOT = pathlib.Path(__file__).resolve().parents[2]
TINY = [
    "--config.mask=random", "--config.model.patch_size=8",
    "--config.model.encoder_overrides.depth=1", "--config.model.decoder_depth=1",
    "--config.batch_size=16", "--config.log_every=1", "--config.checkpoint_every=2",
    "--config.recon_every=2",
]  # fmt: skip


@pytest.fixture()
def bucket():
    """A running emulator with bucket ``bkt``; yields the environment that points at it."""
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    server = emulator.create_server("localhost", port, in_memory=True, default_bucket="bkt")
    server.start()
    url = f"http://localhost:{port}"
    env = {
        **os.environ,
        "STORAGE_EMULATOR_HOST": url,  # gcsfs
        "TENSORSTORE_GCS_HTTP_URL": url,  # TensorStore, under Orbax
        "GOOGLE_AUTH_TOKEN_FOR_TESTING": "offline",  # TensorStore: no credential lookup
        "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",  # no gRPC bucket-type probe
        # The emulator lacks the conditional writes (generation match) OCDBT's manifest needs;
        # real Cloud Storage has them. Plain zarr arrays still go through TensorStore's gcs driver.
        "MIM_JAX_CHECKPOINT_OCDBT": "0",
        "PYTHONPATH": str(ROOT),
        # One device, not the suite's 8 virtual ones: the emulator serves one request at a time,
        # and 8 devices' shard writes made this test take 2.5 min alone and 5+ min in the suite.
        "XLA_FLAGS": one_device_xla_flags(),
    }
    yield env
    server.stop()


def train(env, cwd, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mim_jax.train", "--config", str(ROOT / "configs" / "demo.py"),
         "--workdir", "gs://bkt/run", *TINY, *extra],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip


@pytest.mark.slow
@pytest.mark.timeout(900)  # three subprocesses: ~1 min on 2 idle cores, more under load
def test_the_loop_writes_and_resumes_a_gs_workdir(bucket, tmp_path):
    first = train(bucket, tmp_path, "--config.total_steps=2")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    second = train(bucket, tmp_path, "--config.total_steps=4")
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "resumed from gs://bkt/run/checkpoints at step 2" in second.stdout

    # The evaluation CLI reads the run from the bucket and writes its results beside it.
    evaluated = subprocess.run(
        [sys.executable, "-m", "mim_jax.evaluate", "reconstruct", "--checkpoint", "gs://bkt/run",
         "--mask", "random", "--num-images", "4"],
        cwd=tmp_path, env=bucket, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stdout[-3000:] + evaluated.stderr[-3000:]
    assert json.loads(evaluated.stdout.splitlines()[-1])["step"] == 4
    assert not any(tmp_path.iterdir())  # no local ./gs:/bkt/run folder

    # The plain filesystem class, as the subprocesses use (GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT off):
    # gcsfs chose its default class at import, and that one probes the bucket over gRPC, which
    # the emulator does not serve, and retried for ~160 s.
    fs = gcsfs.core.GCSFileSystem(token="anon", endpoint_url=bucket["STORAGE_EMULATOR_HOST"])
    files = set(fs.find("bkt/run"))
    assert json.loads(fs.cat("bkt/run/config.json"))["total_steps"] == 4
    metrics = [json.loads(line) for line in fs.cat("bkt/run/metrics.jsonl").splitlines()]
    assert [m["step"] for m in metrics] == [1, 2, 3, 4]
    assert any(f.startswith("bkt/run/tensorboard/") and "tfevents" in f for f in files)
    assert {
        "bkt/run/reconstructions/step_000002.png",
        "bkt/run/reconstructions/step_000004.png",
    } <= files
    assert any(f.startswith("bkt/run/checkpoints/4/") for f in files)
    assert {"bkt/run/eval/reconstruct.json", "bkt/run/eval/recon_random_r0.75.png"} <= files
