"""The training loop: exact resume, SIGTERM in a real process, NaN stop, outputs on disk."""

from __future__ import annotations

import os
import sys

import jax
import numpy as np
import pytest
from conftest import TINY_DEMO, sigterm_after

from mim_jax import configs, masking
from mim_jax.core.checkpoint import CheckpointStore
from mim_jax.core.metrics import read_metrics
from mim_jax.core.optimizer import optimizer_config
from mim_jax.train.pretrain import run

TINY = [*TINY_DEMO, "total_steps=6", "checkpoint_every=3"]


def tiny_config(*extra: str):
    return configs.load("configs/demo.py", [*TINY, *extra])


def final_params(workdir: str):
    store = CheckpointStore(os.path.join(workdir, "checkpoints"))
    step = store.latest_step()
    path = os.path.join(workdir, "checkpoints", str(step), "state")
    return step, path


@pytest.mark.slow
def test_interrupted_and_resumed_run_equals_a_straight_run(tmp_path):
    straight = run(tiny_config(), str(tmp_path / "straight"))
    assert straight.stopped == "finished" and straight.step == 6
    first = run(tiny_config(), str(tmp_path / "resumed"), max_steps=3)
    assert first.stopped == "paused" and first.step == 3
    second = run(tiny_config(), str(tmp_path / "resumed"))
    assert second.stopped == "finished" and second.step == 6
    assert second.loss == pytest.approx(straight.loss, rel=1e-6)
    a = read_metrics(str(tmp_path / "straight"))
    b = read_metrics(str(tmp_path / "resumed"))
    assert [r["step"] for r in a] == [r["step"] for r in b] == [1, 2, 3, 4, 5, 6]
    np.testing.assert_allclose([r["loss"] for r in b], [r["loss"] for r in a], rtol=1e-6)
    # Same parameters at the end: same data order, same masks, same optimizer state.
    template = jax.tree.map(np.zeros_like, _load_any(tmp_path / "straight"))
    s = CheckpointStore(tmp_path / "straight" / "checkpoints").restore(template).state
    r = CheckpointStore(tmp_path / "resumed" / "checkpoints").restore(template).state
    for x, y in zip(jax.tree.leaves(s), jax.tree.leaves(r), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-6, atol=1e-7)
    assert os.listdir(tmp_path / "straight" / "tensorboard")
    assert os.path.exists(tmp_path / "straight" / "reconstructions" / "step_000006.png")


def _load_any(workdir):
    """The final TrainState of a run, rebuilt through the loop's own compile path."""
    from mim_jax import models
    from mim_jax.core.optimizer import make_optimizer
    from mim_jax.core.sharding import make_mesh
    from mim_jax.train.step import compile_train_step

    config = tiny_config()
    model = models.mae_model(rngs=0, **models.mae_kwargs(config))
    tx, schedule = make_optimizer(optimizer_config(config, 100))
    compiled = compile_train_step(
        model, tx, schedule, make_mesh(1, devices=jax.devices()[:1]),
        masking.mask_spec_from_config(config), config.batch_size,
    )  # fmt: skip
    return compiled.state


@pytest.mark.slow
def test_sigterm_saves_and_exits_cleanly_then_resumes(tmp_path):
    workdir = str(tmp_path / "run")
    args = ["--config", "configs/demo.py", "--workdir", workdir]
    args += [f"--config.{o}" for o in TINY if not o.startswith("total_steps")]
    args += ["--config.total_steps=400"]
    sigterm_after([sys.executable, "-m", "mim_jax.train", *args], "step 2/")
    stopped_at = CheckpointStore(os.path.join(workdir, "checkpoints")).latest_step()
    assert 2 <= stopped_at < 400
    result = run(tiny_config("total_steps=400"), workdir, max_steps=1)
    assert result.step == stopped_at + 1


def test_nan_loss_stops_without_saving_the_bad_state(tmp_path):
    config = tiny_config("lr=1e30", "clip_norm=None", "checkpoint_every=1", "total_steps=20")
    result = run(config, str(tmp_path))
    assert result.stopped == "nan"
    last = CheckpointStore(tmp_path / "checkpoints").latest_step()
    assert last is None or last < result.step


def test_a_corrupt_image_is_skipped_and_reported(tmp_path, capsys):
    from PIL import Image

    folder = tmp_path / "images" / "class_a"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(20):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    (folder / "broken.jpg").write_bytes(b"not a jpeg at all")
    config = tiny_config(
        "data.source=folder", f"data.path={tmp_path / 'images'}", "total_steps=2",
        "data.num_examples=21",
    )  # fmt: skip
    result = run(config, str(tmp_path / "run"))
    assert result.stopped == "finished"
    out = capsys.readouterr().out
    assert "skipped 1 unreadable image(s)" in out and "broken.jpg" in out
