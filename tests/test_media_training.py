"""Pretraining end to end on real (generated) video and audio files: runs, reconstructions, exact
resume, counted skips, and kNN features from the frozen encoder on clips and spectrograms."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from flax import nnx

from mim_jax import configs, data
from mim_jax.data import toy_media
from mim_jax.evaluate.data import FeatureExtractor
from mim_jax.evaluate.knn import knn_classify
from mim_jax.evaluate.pretrained import load_pretrained
from mim_jax.train.loop import run
from mim_jax.train.metrics import read_metrics

pytest.importorskip("av")
pytest.importorskip("soundfile")

TINY = [
    "model.encoder_overrides.depth=1",
    "model.decoder_depth=1",
    "batch_size=8",
    "log_every=1",
    "checkpoint_every=3",
]


def tiny(kind: str, path, *extra: str):
    return configs.load(f"configs/{kind}_demo.py:path={path},steps=6", [*TINY, *extra])


def params(workdir) -> list[np.ndarray]:
    model = load_pretrained(workdir).model
    return [np.asarray(x) for x in jax.tree.leaves(nnx.state(model, nnx.Param))]


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["video", "audio"])
def test_media_pretraining_resumes_exactly_and_reports_skips(tmp_path, kind, capsys):
    write = toy_media.write_motion_videos if kind == "video" else toy_media.write_pitch_audio
    write(tmp_path / "train", 3, seed=0)
    bad = tmp_path / "train" / ("up/broken.mp4" if kind == "video" else "0220hz/broken.wav")
    bad.write_bytes(b"\x00\x01 not media" * 40)
    straight = run(tiny(kind, tmp_path / "train"), str(tmp_path / "straight"))
    assert straight.stopped == "finished" and straight.step == 6
    first = run(tiny(kind, tmp_path / "train"), str(tmp_path / "resumed"), max_steps=3)
    assert first.stopped == "paused" and first.step == 3
    second = run(tiny(kind, tmp_path / "train"), str(tmp_path / "resumed"))
    assert second.stopped == "finished" and second.step == 6
    a, b = read_metrics(str(tmp_path / "straight")), read_metrics(str(tmp_path / "resumed"))
    assert [r["step"] for r in a] == [r["step"] for r in b] == [1, 2, 3, 4, 5, 6]
    np.testing.assert_allclose([r["loss"] for r in b], [r["loss"] for r in a], rtol=1e-6)
    for x, y in zip(params(tmp_path / "straight"), params(tmp_path / "resumed"), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)
    assert "skipped 1 unreadable" in capsys.readouterr().out
    assert (tmp_path / "straight" / "reconstructions" / "step_000006.png").exists()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["video", "audio"])
def test_knn_on_frozen_media_features(tmp_path, kind):
    write = toy_media.write_motion_videos if kind == "video" else toy_media.write_pitch_audio
    write(tmp_path / "train", 4, seed=0)
    write(tmp_path / "val", 2, seed=1)
    config = tiny(kind, tmp_path / "train")
    run(config, str(tmp_path / "run"))
    encoder = load_pretrained(tmp_path / "run").model.encoder
    extract = FeatureExtractor(encoder, pool="mean", batch_size=16)

    def features(split):
        source = data.media_source(config, path=str(tmp_path / split))
        images = np.stack([source[i]["image"] for i in range(len(source))])
        return extract(images), source.labels

    (xt, yt), (xv, yv) = features("train"), features("val")
    assert xt.shape == (16, 64) and xv.shape == (8, 64) and np.isfinite(xt).all()
    result = knn_classify(xt, yt, xv, yv, num_classes=4, ks=(3,))
    assert 0.0 <= result["knn_top1"] <= 1.0
