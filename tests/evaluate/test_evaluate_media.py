"""``python -m mim_jax.evaluate knn`` on video and audio runs: clips and spectrograms from the
run's ``video_folder`` / ``audio_folder`` splits, frozen-encoder features, kNN accuracy."""

from __future__ import annotations

import json

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
WRITE = {"video": toy_media.write_motion_videos, "audio": toy_media.write_pitch_audio}
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
