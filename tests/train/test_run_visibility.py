"""What a run shows: the resolved config (printed and in the workdir), compilation, progress."""

from __future__ import annotations

import io
import json
import subprocess
import sys

from mim_jax import configs
from mim_jax.core.metrics import Eta, MetricsWriter, read_metrics
from mim_jax.train import run

TINY = [
    "mask=random", "model.patch_size=8", "model.encoder_overrides.depth=1",
    "model.decoder_depth=1", "batch_size=16", "total_steps=2", "log_every=1",
    "checkpoint_every=2", "recon_every=0",
]  # fmt: skip


def test_print_config_prints_the_resolved_config_and_exits():
    done = subprocess.run(
        [sys.executable, "-m", "mim_jax.train", "--config", "configs/demo.py:steps=7",
         "--config.lr=0.002", "--config.model.decoder_depth=1", "--print-config"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    assert printed["total_steps"] == 7 and printed["lr"] == 0.002
    assert printed["model"]["decoder_depth"] == 1 and printed["mask"] == "green"
    bad = subprocess.run(
        [sys.executable, "-m", "mim_jax.train", "--config", "configs/demo.py",
         "--config.no_such_field=1", "--print-config"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert bad.returncode == 2 and "no_such_field" in bad.stderr


def test_a_run_writes_its_config_and_says_it_compiles(tmp_path, capsys):
    config = configs.load("configs/demo.py", TINY)
    result = run(config, str(tmp_path))
    assert result.stopped == "finished"
    written = (tmp_path / "config.json").read_text()
    assert written == configs.to_json(config)
    assert json.loads(written)["total_steps"] == 2
    out = capsys.readouterr().out
    lines = out.splitlines()
    compiling = lines.index("compiling the train step ...")
    assert lines[compiling + 1].startswith("compiled the train step and ran step 1 in ")
    assert lines[compiling + 2].startswith("step 1/2 |")


def test_progress_lines_only_where_asked(tmp_path):
    stream = io.StringIO()
    quiet = MetricsWriter(str(tmp_path), total_steps=4, batch_size=8, stream=stream, progress=False)
    quiet.start(0)
    quiet.write(1, {"loss": 1.5})
    quiet.message("compiling the train step ...", progress=True)
    quiet.message("process 1/2 reads data shard 1 of 2")
    quiet.close()
    assert stream.getvalue() == "process 1/2 reads data shard 1 of 2\n"
    assert read_metrics(str(tmp_path))[0]["loss"] == 1.5  # recorded all the same
    loud = MetricsWriter(str(tmp_path / "p0"), total_steps=4, batch_size=8, stream=stream)
    loud.start(0)
    loud.write(2, {"loss": 1.0})
    loud.close()
    assert "step 2/4 | loss 1 |" in stream.getvalue() and "ETA" in stream.getvalue()


def test_eta_lines_count_up_and_estimate_the_rest():
    eta = Eta(4, "fine-tune epoch")
    assert eta.line(0).startswith("fine-tune epoch 0/4 |") and eta.line(0).endswith("ETA ?")
    line = eta.line(2, "loss 0.5")
    assert line.startswith("fine-tune epoch 2/4 | loss 0.5 | ") and " elapsed | ETA " in line
    assert eta.line(4).endswith("ETA 0s")
