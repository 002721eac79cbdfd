"""Runs that survive real data and preemptible machines (issue 13): each test reproduces one
failure a user met (its number in the issue is in the test's name) on tiny demo-config runs."""

from __future__ import annotations

import weakref

import numpy as np
import pytest
from PIL import Image

from mim_jax import configs, data
from mim_jax.data.folder import FolderSource, read_plan
from mim_jax.train.loop import run

TINY = [
    "mask=random",
    "model.patch_size=8",
    "model.encoder_overrides.depth=1",
    "model.decoder_depth=1",
    "batch_size=16",
    "total_steps=4",
    "log_every=1",
    "checkpoint_every=2",
    "recon_every=0",
]


def tiny_config(*extra: str):
    return configs.load("configs/demo.py", [*TINY, *extra])


def write_images(folder, count: int, size: tuple[int, int] = (32, 32), seed: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        pixels = rng.integers(0, 255, (*size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:03d}.png")


# 1. -----------------------------------------------------------------------------------------


def test_1_a_folder_with_unreadable_images_resumes(tmp_path, capsys):
    images = tmp_path / "images"
    write_images(images, 20)
    for i in range(5):
        (images / f"bad_{i}.jpg").write_bytes(b"not an image")
    config = tiny_config("data.source=folder", f"data.path={images}", "data.num_examples=25")
    first = run(config, str(tmp_path / "run"), max_steps=2)
    assert first.stopped == "paused" and first.step == 2
    second = run(config, str(tmp_path / "run"))  # was: "DataSource in checkpoint does not match"
    assert second.stopped == "finished" and second.step == 4
    assert "resumed from" in capsys.readouterr().out


# 6. -----------------------------------------------------------------------------------------


def test_6_an_image_too_large_for_the_budget_is_skipped_and_reported(tmp_path):
    write_images(tmp_path / "flat", 3)
    Image.new("RGB", (1200, 1000), (10, 20, 30)).save(tmp_path / "flat" / "huge.png")
    plan = read_plan(40 * 2**20)  # 40 MiB over 32 images in flight: 1.25 MiB per image
    source = FolderSource(tmp_path / "flat", max_image_bytes=plan.max_image_bytes)
    records = [source[i] for i in range(len(source))]
    assert all(r["image"].shape == (32, 32, 3) for r in records)  # huge.png replaced
    (path, why), *_ = source.skipped.items()
    assert path.endswith("huge.png") and "1200 x 1000" in why and "memory_mb" in why
    assert FolderSource(tmp_path / "flat")[3]["image"].shape == (1000, 1200, 3)  # no cap: read


def test_6_decoded_images_in_flight_stay_within_the_read_plan(tmp_path):
    write_images(tmp_path / "flat", 64, size=(40, 40))

    class Counting(FolderSource):
        """Counts decoded images still alive (in grain's threads, its buffer or a batch)."""

        alive = 0
        most = 0

        def __getitem__(self, index):
            record = super().__getitem__(index)
            Counting.alive += 1
            Counting.most = max(Counting.most, Counting.alive)
            weakref.finalize(record["image"], self._release)
            return record

        @staticmethod
        def _release():
            Counting.alive -= 1

    source = Counting(tmp_path / "flat")
    iterator = data.make_pipeline(
        source, batch_size=4, image_size=16, seed=0, read_threads=2, read_buffer=3
    )
    for _ in range(12):
        next(iterator)
    # grain's defaults (16 threads, 500 ahead) held every image of the folder at once.
    assert 0 < Counting.most <= 2 + 3 + 4 + 1, Counting.most


# 7. -----------------------------------------------------------------------------------------


def test_7_a_root_with_train_and_val_reads_the_train_split_only(tmp_path):
    for split, classes in (("train", ("cat", "dog")), ("val", ("cat", "dog"))):
        for c in classes:
            write_images(tmp_path / split / c, 2)
    source = FolderSource(tmp_path)
    assert source.class_names == ["cat", "dog"] and len(source) == 4
    assert all("/train/" in p for p in source.paths)
    assert all("/val/" in p for p in FolderSource(tmp_path, split="val").paths)
    with pytest.raises(FileNotFoundError, match="'test'"):
        FolderSource(tmp_path, split="test")


def test_7_hidden_folders_and_files_are_ignored(tmp_path):
    write_images(tmp_path, 3)
    write_images(tmp_path / ".cache", 2)
    (tmp_path / ".DS_Store.png").write_bytes(b"junk")
    source = FolderSource(tmp_path)  # was: ".cache" taken as a class, "no images found"
    assert source.class_names == [] and len(source) == 3


def test_7_sixteen_bit_png_keeps_its_range(tmp_path):
    ramp = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "deep.png")
    image = FolderSource(tmp_path)[0]["image"]
    assert image.dtype == np.uint8 and image.shape == (64, 64, 3)
    assert abs(float(image.mean()) - 127.5) < 1.0  # was 254.8: values clipped at 255
    assert image.min() == 0 and image.max() == 255


# 9. -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "override, field",
    [
        ("log_every=0", "config.log_every"),
        ("checkpoint_every=0", "config.checkpoint_every"),
        ("total_steps=-5", "config.total_steps"),
        ("lr=-0.1", "config.lr"),
        ("clip_norm=-1.0", "config.clip_norm"),
        ("eval_every=-1", "config.eval_every"),
        ("seed=-1", "config.seed"),
        ("data.memory_mb=0", "config.data.memory_mb"),
    ],
)
def test_9_out_of_range_fields_are_named_before_anything_runs(override, field):
    with pytest.raises(ValueError, match=f"{field}=.* must be"):
        configs.validate(tiny_config(override), num_devices=1)


def test_9_a_config_file_with_a_syntax_error_is_one_line(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def get_config(arg=None):\n    return (\n")
    with pytest.raises(ValueError, match=r"bad.py' line \d+: ") as err:
        configs.load(str(bad))
    assert "\n" not in str(err.value)
