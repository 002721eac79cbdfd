"""Sweeps: the grid, names and commands; a mask-only sweep compiles its train step once, each
run draws its own strategy's masks, finished runs are skipped, and the summary is written."""

from __future__ import annotations

import contextlib
import csv
import json
import shlex

import jax
import numpy as np
import pytest
from conftest import TINY_MAE

from mim_jax import configs, models, sweep
from mim_jax.core.optimizer import OptimizerConfig, make_optimizer
from mim_jax.core.sharding import make_mesh
from mim_jax.masking import MaskSpec
from mim_jax.train import pretrain
from mim_jax.train.step import compile_train_step

TINY = [
    "--config.model.encoder_overrides.depth=1",
    "--config.model.decoder_depth=1",
    "--config.batch_size=16",
    "--config.total_steps=2",
    "--config.log_every=1",
    "--config.recon_every=0",
]
MASKS = ("random", "green", "grid")


@contextlib.contextmanager
def count_compiles():
    """Counts XLA compilations per jitted function name while the block runs."""
    names: list[str] = []

    def listener(event, duration, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            names.append(str(kwargs.get("fun_name", "")))

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield names
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)


def test_grid_expands_to_named_runs_and_commands(tmp_path):
    axes = sweep.parse_grid(["mask=random,red", "config.mask_ratio=0.75,0.9"])
    runs = sweep.expand(axes, str(tmp_path))
    assert [r.name for r in runs] == [
        "mask=random__mask_ratio=0.75",
        "mask=random__mask_ratio=0.9",
        "mask=red__mask_ratio=0.75",
        "mask=red__mask_ratio=0.9",
    ]
    assert sweep.run_name([("model.image_size", "(32, 32)")]) == "model.image_size=-32--32-"
    words = shlex.split(sweep.command(runs[3], "configs/demo.py", ["total_steps=5"]))
    assert words == [
        "python", "-m", "mim_jax.train", "--config", "configs/demo.py",
        "--workdir", str(tmp_path / "mask=red__mask_ratio=0.9"),
        "--config.total_steps=5", "--config.mask=red", "--config.mask_ratio=0.9",
    ]  # fmt: skip
    slurm = shlex.split(sweep.command(runs[0], "configs/demo.py", [], "slurm", "--nodes 2"))
    assert slurm[:5] == ["launch/gpu_slurm.sh", "--job-name", runs[0].name, "--nodes", "2"]
    assert slurm[5:8] == ["--workdir", runs[0].workdir, "configs/demo.py"]
    for bad in (["mask"], ["mask="], ["mask=a", "mask=b"]):
        with pytest.raises(ValueError, match="grid"):
            sweep.parse_grid(bad)


def test_print_commands_validates_and_prints_one_line_per_run(tmp_path, capsys):
    args = ["--config", "configs/demo.py", "--grid", "mask=random,purple", "--workdir"]
    assert sweep.main([*args, str(tmp_path / "s"), "--print-commands", "--launcher", "local"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("launch/local.sh --workdir") for line in lines)
    assert lines[1].endswith("configs/demo.py --config.mask=purple")
    with pytest.raises(SystemExit) as err:  # a bad value fails before anything runs
        sweep.main(
            [*args[:3], "mask=random,nosuchmask", "--workdir", str(tmp_path), "--print-commands"]
        )
    assert err.value.code == 2
    assert "nosuchmask" in capsys.readouterr().err


def test_multi_mask_step_draws_each_specs_masks():
    """One step compiled for two strategies: index 1 gives exactly the single-mask step of its
    strategy (same loss, same updated parameters), index 0 something else."""
    mesh = make_mesh(1, devices=jax.devices()[:1])
    tx, schedule = make_optimizer(OptimizerConfig(learning_rate=1e-3, total_steps=10))
    images = np.random.default_rng(0).random((8, 32, 32, 3), np.float32)
    specs = [MaskSpec("random"), MaskSpec("green")]

    def model():
        return models.mae_model("vit_tiny", rngs=0, **{**TINY_MAE, "patch_size": 4})

    shared = compile_train_step(model(), tx, schedule, mesh, specs, len(images))
    single = compile_train_step(model(), tx, schedule, mesh, specs[1], len(images))
    batch = {"image": jax.device_put(images, shared.batch_sharding)}
    key = jax.random.key(3)
    results = {}
    for spec in specs:
        bound = shared.for_mask(spec)
        results[spec.name] = bound.step(bound.init_state(model()), batch, key)
    state_b, want = single.step(single.state, batch, key)
    state_a, got = results["green"]
    np.testing.assert_allclose(float(got["loss"]), float(want["loss"]), rtol=1e-5)
    for a, b in zip(jax.tree.leaves(state_a.params), jax.tree.leaves(state_b.params), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    assert float(results["random"][1]["loss"]) != pytest.approx(float(got["loss"]), rel=1e-4)
    assert shared.jitted._cache_size() == 1  # both strategies ran on one executable
    with pytest.raises(ValueError, match="not compiled into this step"):
        shared.for_mask(MaskSpec("blue"))
    with pytest.raises(ValueError, match="share mask_ratio"):
        compile_train_step(model(), tx, schedule, mesh, [MaskSpec(), MaskSpec(ratio=0.5)], 8)


@pytest.mark.slow
def test_mask_only_sweep_compiles_once_matches_plain_runs_and_resumes(tmp_path, capsys):
    workdir = tmp_path / "sweep"
    argv = ["--config", "configs/demo.py", "--grid", f"mask={','.join(MASKS)}", "--workdir",
            str(workdir), *TINY]  # fmt: skip
    with count_compiles() as compiles:
        assert sweep.main(argv) == 0
    steps = [name for name in compiles if "train_step" in name]
    assert len(steps) == 1, compiles
    out = capsys.readouterr().out
    assert f"compiled one train step for 3 run(s) with masks {', '.join(MASKS)}" in out

    # The shared step's run of a non-first mask equals a plain run of that config.
    green = configs.load("configs/demo.py", ["mask=green", *(t[2:] for t in TINY)])
    plain = pretrain.run(green, str(tmp_path / "plain_green"))
    shared = [json.loads(x) for x in (workdir / "mask=green" / "metrics.jsonl").open()]
    assert [r["step"] for r in shared] == [1, 2]
    assert shared[-1]["loss"] == pytest.approx(plain.loss, rel=1e-5)

    rows = json.loads((workdir / "summary.json").read_text())
    assert [r["mask"] for r in rows] == list(MASKS)
    assert all(r["status"] == "finished" and r["step"] == 2 for r in rows)
    assert len({r["final_loss"] for r in rows}) == 3
    with (workdir / "summary.csv").open() as f:
        assert [r["run"] for r in csv.DictReader(f)] == [f"mask={m}" for m in MASKS]
    assert (workdir / "summary.md").read_text().startswith("| run | mask | status |")

    with count_compiles() as compiles:  # rerun: everything finished, nothing compiles
        assert sweep.main(argv) == 0
    assert not [name for name in compiles if "train_step" in name]
    out = capsys.readouterr().out
    assert out.count("finished before, skipped") == 3 and "0 run(s)" in out
