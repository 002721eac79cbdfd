"""Orbax checkpoints: retention, a real process killed mid-save, damaged steps, other meshes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import TINY_MAE

from mim_jax import models
from mim_jax.core.checkpoint import CheckpointStore
from mim_jax.core.optimizer import OptimizerConfig, make_optimizer
from mim_jax.core.sharding import make_mesh
from mim_jax.masking import MaskSpec
from mim_jax.train.step import compile_train_step


def small_state(value: float) -> dict:
    return {"w": jnp.full((4, 3), value), "step": jnp.int32(value)}


def test_keeps_the_latest_and_the_best(tmp_path):
    store = CheckpointStore(tmp_path, keep=2, best_metric="loss", best_mode="min")
    for step, loss in enumerate([5.0, 1.0, 3.0, 4.0, 6.0]):
        store.save(step, small_state(step), metrics={"loss": loss})
    store.wait()
    assert store.all_steps() == [1, 3, 4]  # the latest two and the lowest loss


def test_the_best_step_survives_a_restart(tmp_path):
    first = CheckpointStore(tmp_path, keep=1, best_metric="acc", best_mode="max")
    first.save(1, small_state(1), metrics={"loss": 2.0})  # saved before evaluation was on
    for step, acc in [(2, 0.9), (3, 0.5)]:
        first.save(step, small_state(step), metrics={"acc": acc})
    first.close()
    assert first.all_steps() == [2, 3]  # step 1 has no "acc": it ranks last, not a KeyError
    second = CheckpointStore(tmp_path, keep=1, best_metric="acc", best_mode="max")
    for step, acc in [(4, 0.6), (5, 0.7)]:
        second.save(step, small_state(step), metrics={"acc": acc})
    second.close()
    assert second.all_steps() == [2, 5]  # step 2's metric was read back from disk


def test_round_trip_of_state_iterator_state_and_config(tmp_path):
    store = CheckpointStore(tmp_path)
    store.save(7, small_state(7.0), data_state=b'{"next_index": 42}', config={"mask": "green"})
    store.close()
    restored = CheckpointStore(tmp_path).restore(small_state(0.0))
    assert restored.step == 7
    np.testing.assert_array_equal(restored.state["w"], np.full((4, 3), 7.0))
    assert restored.data_state == b'{"next_index": 42}'
    assert restored.config == {"mask": "green"}


def test_missing_checkpoints_are_reported_clearly(tmp_path):
    store = CheckpointStore(tmp_path / "empty")
    with pytest.raises(ValueError, match="no complete checkpoint"):
        store.restore(small_state(0.0))
    store.save(3, small_state(3.0))
    store.wait()
    with pytest.raises(ValueError, match=r"step 5 is not in .*complete steps: \[3\]"):
        store.restore(small_state(0.0), step=5)


def test_a_damaged_latest_step_falls_back_to_the_one_before(tmp_path):
    store = CheckpointStore(tmp_path, keep=5)
    for step in (1, 2):
        store.save(step, small_state(float(step)))
    store.wait()
    for root, _, files in os.walk(tmp_path / "2" / "state"):
        for name in files:  # damage every data file of step 2
            with open(os.path.join(root, name), "wb") as f:
                f.write(b"\x00garbage")
    restored = CheckpointStore(tmp_path, keep=5).restore(small_state(0.0))
    assert restored.step == 1
    np.testing.assert_array_equal(restored.state["w"], np.full((4, 3), 1.0))


CHILD = textwrap.dedent(
    """
    import sys, numpy as np, jax.numpy as jnp
    from mim_jax.core.checkpoint import CheckpointStore
    store = CheckpointStore(sys.argv[1], keep=5)
    def state(v):  # ~256 MB, so writing it takes far longer than the parent needs to kill us
        return {"w": [jnp.full((8, 1024, 1024), v, jnp.float32) for _ in range(8)]}
    store.save(1, state(1.0))
    store.wait()
    store.save(2, state(2.0))  # asynchronous: returns while the files are being written
    print("SAVING 2", flush=True)
    store.wait()
    print("DONE", flush=True)
    """
)


def _step_2_started(folder) -> bool:
    return any(name != "1" for name in os.listdir(folder))


def test_a_process_killed_mid_save_leaves_the_last_complete_step(tmp_path):
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        for line in child.stdout:
            if line.startswith("SAVING 2"):
                # Kill once step 2's writing has begun on disk: on a loaded machine the
                # background writer may not have created anything yet when save() returns.
                deadline = time.monotonic() + 60
                while not _step_2_started(tmp_path) and time.monotonic() < deadline:
                    time.sleep(0.005)
                child.send_signal(signal.SIGKILL)
                break
    finally:
        child.wait(timeout=120)
    assert child.returncode == -signal.SIGKILL
    leftovers = [name for name in os.listdir(tmp_path) if name not in ("1",)]
    assert leftovers, "step 2 never appeared on disk before the kill; the test proves nothing"
    assert not (tmp_path / "2" / "commit_success.txt").exists()
    store = CheckpointStore(tmp_path, keep=5)
    assert store.all_steps() == [1]
    template = {"w": [jnp.zeros((8, 1024, 1024), jnp.float32) for _ in range(8)]}
    restored = store.restore(template)
    assert restored.step == 1 and float(restored.state["w"][7][0, 0, 0]) == 1.0


def test_saved_on_eight_devices_restored_on_one(tmp_path):
    tiny = {**TINY_MAE, "encoder_overrides": dict(TINY_MAE["encoder_overrides"], depth=1)}
    tx, schedule = make_optimizer(OptimizerConfig(learning_rate=1e-3, total_steps=10))
    big = compile_train_step(
        models.mae_model("vit_tiny", rngs=0, **tiny), tx, schedule, make_mesh(2, 4, 1),
        MaskSpec("random"), 8,
    )  # fmt: skip
    images = {"image": jnp.asarray(np.random.default_rng(0).random((8, 32, 32, 3)), jnp.float32)}
    state, _ = big.step(big.state, images, jax.random.key(0))
    saved = jax.device_get(state)
    store = CheckpointStore(tmp_path)
    store.save(1, state)
    store.wait()

    one = compile_train_step(
        models.mae_model("vit_tiny", rngs=1, **tiny), tx, schedule,
        make_mesh(devices=jax.devices()[:1]), MaskSpec("random"), 8,
    )  # fmt: skip
    restored = store.restore(one.state)
    leaves = jax.tree.leaves(restored.state)
    assert all(len(x.sharding.device_set) == 1 for x in leaves)
    for got, want in zip(leaves, jax.tree.leaves(saved), strict=True):
        np.testing.assert_array_equal(np.asarray(got), want)
    state_one, metrics = one.step(restored.state, images, jax.random.key(1))  # it trains on
    assert int(state_one.step) == 2 and np.isfinite(float(metrics["loss"]))
