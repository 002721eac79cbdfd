"""Run files on a non-local filesystem URL (fsspec's in-memory filesystem, offline)."""

from __future__ import annotations

import json
import os

import fsspec
import numpy as np
import pytest

from mim_jax.core import paths
from mim_jax.core.metrics import MetricsWriter, read_metrics
from mim_jax.core.reconstruction import save_reconstructions


@pytest.fixture()
def memory_url():
    fs = fsspec.filesystem("memory")
    root = "memory://mim_jax_test_run"
    yield root
    if fs.exists("/mim_jax_test_run"):
        fs.rm("/mim_jax_test_run", recursive=True)


def test_urls_stay_urls_and_local_paths_work_alike(tmp_path, memory_url):
    assert paths.resolve("gs://bkt/run/") == "gs://bkt/run"
    assert paths.join("gs://bkt/run", "checkpoints") == "gs://bkt/run/checkpoints"
    assert paths.resolve("out/x") == os.path.abspath("out/x")
    for root in (str(tmp_path), memory_url):
        paths.write_text(paths.join(root, "a", "config.json"), '{"x": 1}')
        assert json.loads(paths.read_text(paths.join(root, "a", "config.json"))) == {"x": 1}
    assert not os.path.exists("memory:")  # nothing local was made for the URL


def test_a_run_folder_is_found_on_a_url_as_on_a_disk(tmp_path, memory_url):
    from mim_jax.core.workdir import checkpoint_directory

    for root in (str(tmp_path / "run"), memory_url):
        with pytest.raises(FileNotFoundError, match="does not exist"):
            checkpoint_directory(root)
        paths.write_text(paths.join(root, "checkpoints", "4", "config.json"), "{}")
        paths.write_text(paths.join(root, "checkpoints", "12", "config.json"), "{}")
        assert paths.isdir(root) and not paths.isdir(paths.join(root, "nothing"))
        assert paths.listdir(paths.join(root, "checkpoints")) == ["12", "4"]
        assert checkpoint_directory(root) == paths.join(root, "checkpoints")
        assert checkpoint_directory(paths.join(root, "checkpoints")) == paths.join(
            root, "checkpoints"
        )


def test_metrics_tensorboard_and_pictures_go_to_the_url(memory_url):
    writer = MetricsWriter(memory_url, total_steps=3, batch_size=4)
    writer.start(0)
    writer.write(1, {"loss": 2.0})
    writer.write(2, {"loss": 1.5})
    writer.close()
    again = MetricsWriter(memory_url, total_steps=3, batch_size=4)  # a resumed run appends
    again.write(3, {"loss": 1.0})
    again.close()
    assert [r["loss"] for r in read_metrics(memory_url)] == [2.0, 1.5, 1.0]
    fs = fsspec.filesystem("memory")
    events = fs.find("/mim_jax_test_run/tensorboard")
    assert events and all("tfevents" in e for e in events)
    images = np.zeros((2, 8, 8, 3), np.float32)
    png = save_reconstructions(paths.join(memory_url, "reconstructions", "s.png"), *[images] * 3)
    assert fs.cat(png.split("://", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"


def test_an_unknown_scheme_fails_clearly():
    with pytest.raises(ValueError, match="cannot open 'nosuchscheme://b/x'"):
        paths.write_text("nosuchscheme://b/x", "x")
