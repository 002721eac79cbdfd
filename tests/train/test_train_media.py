"""Pretraining end to end on real (generated) video and audio files: runs, reconstructions, exact
resume and counted skips."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from flax import nnx

from mim_jax import configs
from mim_jax.core.metrics import read_metrics
from mim_jax.core.workdir import load_pretrained
from mim_jax.data import toy_media
from mim_jax.train.pretrain import run

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
    straight = run(tiny(kind, tmp_path), str(tmp_path / "straight"))
    assert straight.stopped == "finished" and straight.step == 6
    first = run(tiny(kind, tmp_path), str(tmp_path / "resumed"), max_steps=3)
    assert first.stopped == "paused" and first.step == 3
    second = run(tiny(kind, tmp_path), str(tmp_path / "resumed"))
    assert second.stopped == "finished" and second.step == 6
    a, b = read_metrics(str(tmp_path / "straight")), read_metrics(str(tmp_path / "resumed"))
    assert [r["step"] for r in a] == [r["step"] for r in b] == [1, 2, 3, 4, 5, 6]
    np.testing.assert_allclose([r["loss"] for r in b], [r["loss"] for r in a], rtol=1e-6)
    for x, y in zip(params(tmp_path / "straight"), params(tmp_path / "resumed"), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)
    assert "skipped 1 unreadable" in capsys.readouterr().out
    assert (tmp_path / "straight" / "reconstructions" / "step_000006.png").exists()
