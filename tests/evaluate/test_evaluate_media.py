"""``python -m mim_jax.evaluate knn`` on video and audio runs: clips and spectrograms from the
run's ``video_folder`` / ``audio_folder`` splits, frozen-encoder features, kNN accuracy."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from mim_jax import configs, data
from mim_jax.data import toy_media
from mim_jax.evaluate.cli import main
from mim_jax.evaluate.data import eval_sources, load_arrays
from mim_jax.train.pretrain import run

pytest.importorskip("av")
pytest.importorskip("soundfile")

TINY = [
    "model.encoder_overrides.depth=1",
    "model.decoder_depth=1",
    "batch_size=8",
    "checkpoint_every=100",
]
REPO = pathlib.Path(__file__).resolve().parents[2]
WRITE = {"video": toy_media.write_motion_videos, "audio": toy_media.write_pitch_audio}
DEMO_DATA = {"video": toy_media.write_motion_videos, "audio": toy_media.write_timbre_audio}
# kNN top-1 margins (k 5, mean pool) of the demo configs over their random init, measured with 3
# seeds (README, "Video and audio data"): video +0.19 / +0.37 / +0.22, audio +0.14 / +0.12 /
# +0.13; the first are this test's. The bounds sit well below them.
DEMO_MARGIN = {"video": 0.1, "audio": 0.05}
SHAPES = {"video": (8, 32, 32, 3), "audio": (64, 64, 1)}


def knn_json(args: list[str], capsys) -> dict:
    assert main(args) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    return json.loads(lines[-1])


@pytest.mark.parametrize("kind", ["video", "audio"])
def test_eval_sources_give_model_inputs_of_both_splits(tmp_path, kind):
    WRITE[kind](tmp_path / "train", 2, seed=0)
    WRITE[kind](tmp_path / "val", 1, seed=1)
    config = configs.load(f"configs/{kind}_demo.py:path={tmp_path}")
    splits = eval_sources(config)
    assert splits.image_size is None and splits.num_classes == 4
    assert (len(splits.train), len(splits.val)) == (8, 4)
    images, labels = load_arrays(splits.val, splits.image_size, batch_size=3)
    assert images.shape == (4, *SHAPES[kind]) and images.dtype == np.float32
    assert labels.tolist() == [0, 1, 2, 3] and np.isfinite(images).all()
    again, _ = load_arrays(splits.val, splits.image_size)
    np.testing.assert_array_equal(images, again)  # the deterministic evaluation view


def test_media_split_path_finds_sibling_lists_and_says_what_it_tried(tmp_path):
    (tmp_path / "train.csv").write_text("a.mp4 0\n")
    (tmp_path / "val.csv").write_text("b.mp4 1\n")
    assert data.media_split_path(str(tmp_path / "train.csv"), "val") == str(tmp_path / "val.csv")
    assert data.media_split_path(str(tmp_path), "val") == str(tmp_path / "val.csv")
    assert data.media_split_path(str(tmp_path), "train") == str(tmp_path)
    with pytest.raises(ValueError, match=r"no test split.*test\.csv"):
        data.media_split_path(str(tmp_path / "train.csv"), "test")


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["video", "audio"])
def test_cli_knn_on_a_media_run_and_its_random_init(tmp_path, kind, capsys):
    WRITE[kind](tmp_path / "data" / "train", 4, seed=0)
    WRITE[kind](tmp_path / "data" / "val", 2, seed=1)
    config = configs.load(f"configs/{kind}_demo.py:path={tmp_path / 'data'},steps=4", TINY)
    run(config, str(tmp_path / "run"))
    common = ["--out", str(tmp_path / "eval"), "--k", "3", "--pool", "mean"]
    trained = knn_json(["knn", "--checkpoint", str(tmp_path / "run"), *common], capsys)
    baseline = knn_json(
        ["knn", "--checkpoint", str(tmp_path / "run"), "--random-init", *common], capsys
    )
    unit = "clips" if kind == "video" else "files"
    for result in (trained, baseline):
        assert result["data"].endswith(f"(16/8 {unit}, eval crop 1)")
        assert 0.0 <= result["knn_top1_k3"] <= 1.0
    assert trained["step"] == 4 and "random init" in baseline["model"]


@pytest.mark.slow
@pytest.mark.timeout(1200)  # the whole demo: ~1.5-3 min each on 2 cores, more under load
@pytest.mark.parametrize("kind", ["video", "audio"])
def test_demo_pretraining_beats_its_random_init_in_knn(tmp_path, kind, capsys):
    # The demo as documented (its config's steps, 4 x 40 generated training files, seed 0), then
    # a kNN on 4 x 25 held-out files: the frozen pretrained encoder against the same encoder at
    # its initialisation (motion direction for video, timbre at a random pitch for audio).
    DEMO_DATA[kind](tmp_path / "data" / "train", 40, seed=0)
    DEMO_DATA[kind](tmp_path / "data" / "val", 25, seed=1)
    workdir = str(tmp_path / "run")
    env = dict(os.environ, XLA_FLAGS="")  # one optimised CPU device: not the suite's 8 at -O0
    spec = f"configs/{kind}_demo.py:path={tmp_path / 'data'}"
    cmd = [sys.executable, "-m", "mim_jax.train", "--workdir", workdir, "--config", spec]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=1100)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    common = ["--checkpoint", workdir, "--k", "5", "--pool", "mean"]
    trained = knn_json(["knn", *common, "--out", str(tmp_path / "eval")], capsys)
    baseline = knn_json(["knn", *common, "--random-init", "--out", str(tmp_path / "rnd")], capsys)
    margin = trained["knn_top1_k5"] - baseline["knn_top1_k5"]
    assert margin >= DEMO_MARGIN[kind], (trained["knn_top1_k5"], baseline["knn_top1_k5"])
