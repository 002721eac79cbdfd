"""video_folder source: VideoMAE clip sampling, seeking PyAV decode, labels, skips, grain state."""

from __future__ import annotations

import gc
import logging

import numpy as np
import pytest
from ml_collections import ConfigDict

pytest.importorskip("av")

from mim_jax import data
from mim_jax.data import clips, video_folder
from mim_jax.data.toy_media import write_motion_videos, write_video
from mim_jax.data.video_folder import VideoFolderSource, read_clip

FORMATS = (".mp4", ".webm", ".avi", ".mkv")


def sliding_square(num_frames: int = 40, height: int = 32, width: int = 48) -> np.ndarray:
    """Frame t: a white 8x8 square whose left column is t (so a frame's content names its index)."""
    out = np.zeros((num_frames, height, width, 3), np.uint8)
    for t in range(num_frames):
        out[t, 12:20, t : t + 8] = 255
    return out


def square_column(frame: np.ndarray) -> int:
    """Left column of the bright square in a decoded frame (robust to compression)."""
    bright = frame.mean(axis=(0, 2)) > 60
    return int(np.argmax(bright))


def test_clip_indices_follow_videomae():
    # Long enough: first frame uniform over [0, n - T*stride], then every stride-th frame.
    starts = set()
    for seed in range(200):
        idx = clips.clip_indices(100, 16, 4, np.random.default_rng(seed))
        np.testing.assert_array_equal(np.diff(idx), 4)
        assert 0 <= idx[0] <= 100 - 64
        starts.add(int(idx[0]))
    assert min(starts) <= 2 and max(starts) >= 34 and len(starts) > 25
    # Evaluation view: the centred clip.
    np.testing.assert_array_equal(clips.clip_indices(100, 4, 2, None), [46, 48, 50, 52])
    # Too short: the read position stops advancing, so the last reachable frame repeats.
    np.testing.assert_array_equal(clips.clip_indices(10, 4, 4, None), [0, 4, 8, 8])
    np.testing.assert_array_equal(clips.clip_indices(3, 5, 2, None), [0, 2, 2, 2, 2])
    np.testing.assert_array_equal(clips.clip_indices(1, 3, 4, None), [0, 0, 0])
    with pytest.raises(ValueError, match="no clip"):
        clips.clip_indices(0, 4, 2, None)


def test_multi_scale_crop_boxes_are_videomaes():
    rng = np.random.default_rng(0)
    base = 240  # 320 x 240 frames; output 224 (a 0.875 * 240 = 210 side is not snapped)
    sides = {240, 210, 180, 158}
    seen_pairs, positions = set(), set()
    for _ in range(600):
        top, left, h, w = clips.multi_scale_crop_box(rng, base, 320, 224)
        assert h in sides and w in sides
        scale_index = {240: 0, 210: 1, 180: 2, 158: 3}
        assert abs(scale_index[h] - scale_index[w]) <= 1  # max_distort 1
        ws, hs = (320 - w) // 4, (240 - h) // 4
        assert top in {k * hs for k in range(5)} and left in {k * ws for k in range(5)}
        seen_pairs.add((h, w))
        if (h, w) == (180, 180):
            positions.add((top // hs, left // ws))
    assert len(seen_pairs) == 10  # 4 equal pairs + 6 one scale apart
    fixed = {(0, 0), (0, 4), (4, 0), (4, 4), (2, 2), (2, 0), (2, 4), (4, 2), (0, 2)}
    assert positions == fixed | {(1, 1), (1, 3), (3, 1), (3, 3)}  # VideoMAE's 13 offsets
    # A side within 3 pixels of the output size snaps to it (VideoMAE's rule).
    assert {clips.multi_scale_crop_box(rng, 226, 226, 224)[2] for _ in range(50)} >= {224}


@pytest.mark.parametrize("ext", FORMATS)
def test_decoded_clip_frames_are_the_sampled_ones(tmp_path, ext):
    path = write_video(tmp_path / f"slide{ext}", sliding_square())
    for seed in range(4):
        rng_a, rng_b = np.random.default_rng(seed), np.random.default_rng(seed)
        clip = read_clip(path, 8, 4, rng_a)
        expected = clips.clip_indices(40, 8, 4, rng_b)
        assert clip.shape == (8, 32, 48, 3) and clip.dtype == np.uint8
        assert [square_column(f) for f in clip] == expected.tolist()
        # The seeking decoder returns exactly what decoding from the start returns.
        np.testing.assert_array_equal(
            clip, read_clip(path, 8, 4, np.random.default_rng(seed), seek=False)
        )
    short = read_clip(path, 16, 4, None)  # 64-frame span of a 40-frame video: padded
    assert [square_column(f) for f in short] == clips.clip_indices(40, 16, 4, None).tolist()
    assert [square_column(f) for f in short[-7:]] == [36] * 7


def test_source_folder_labels_views_and_normalisation(tmp_path):
    write_motion_videos(tmp_path / "train", per_class=2, num_frames=20, size=32)
    source = VideoFolderSource(tmp_path / "train", image_size=16, num_frames=4, stride=2)
    assert len(source) == 8 and source.class_names == ["down", "left", "right", "up"]
    np.testing.assert_array_equal(source.labels, [0, 0, 1, 1, 2, 2, 3, 3])
    record = source[5]
    assert record["label"] == 2
    assert record["image"].shape == (4, 16, 16, 3) and record["image"].dtype == np.float32
    np.testing.assert_array_equal(record["image"], source[5]["image"])  # deterministic view
    # Normalised with ImageNet's statistics: the dark noise background sits near (0.02 - mean)/std.
    background = np.median(record["image"].reshape(-1, 3), axis=0)
    expected = (np.array([0.02, 0.02, 0.02]) - data.IMAGENET_MEAN) / data.IMAGENET_STD
    np.testing.assert_allclose(background, expected, atol=0.35)
    # Training view: random clips and crops that change with the generator.
    a = source.load(5, np.random.default_rng(1))["image"]
    b = source.load(5, np.random.default_rng(2))["image"]
    assert a.shape == (4, 16, 16, 3) and not np.array_equal(a, b)


def test_flip_is_shared_by_every_frame(tmp_path):
    path = write_video(tmp_path / "slide.mp4", sliding_square(24, 32, 32))
    frames = read_clip(path, 4, 2, None)
    rng = np.random.default_rng(0)
    box = clips.multi_scale_crop_box(rng, 32, 32, 32)
    plain = clips.crop_resize_clip(frames, box, 32)
    flipped = clips.crop_resize_clip(frames, box, 32, flip=True)
    np.testing.assert_array_equal(flipped, plain[:, :, ::-1])
    always = clips.clip_transform(frames, 32, np.random.default_rng(3), flip_prob=1.0)
    never = clips.clip_transform(frames, 32, np.random.default_rng(3), flip_prob=0.0)
    np.testing.assert_array_equal(always, never[:, :, ::-1])


def test_csv_lists_like_kinetics_and_ssv2(tmp_path):
    paths = write_motion_videos(tmp_path / "videos", per_class=1, num_frames=12)
    rel = [p.replace(str(tmp_path) + "/", "") for p in paths]
    (tmp_path / "train.csv").write_text("".join(f"{p} {i % 2}\n" for i, p in enumerate(rel)))
    source = VideoFolderSource(tmp_path / "train.csv", image_size=16, num_frames=2, stride=2)
    assert source.paths == paths and source.labels.tolist() == [0, 1, 0, 1]
    assert source.num_classes == 2 and source.class_names == []
    names = ["walk", "run", "walk", "jump"]
    text = "path,label\n" + "".join(f"{p},{n}\n" for p, n in zip(rel, names, strict=True))
    (tmp_path / "named.csv").write_text(text)
    named = VideoFolderSource(tmp_path / "named.csv", image_size=16, num_frames=2, stride=2)
    assert named.class_names == ["jump", "run", "walk"]
    assert named.labels.tolist() == [2, 1, 2, 0]
    (tmp_path / "bad.csv").write_text(f"{rel[0]},1,extra\n")
    with pytest.raises(ValueError, match=r"bad\.csv:1"):
        VideoFolderSource(tmp_path / "bad.csv")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no video files"):
        VideoFolderSource(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="video data not found"):
        VideoFolderSource(tmp_path / "missing")


def test_bad_files_are_skipped_counted_and_reported(tmp_path, caplog):
    write_motion_videos(tmp_path, per_class=1, num_frames=12)
    (tmp_path / "left" / "empty.mp4").write_bytes(b"")
    (tmp_path / "right" / "garbage.webm").write_bytes(b"this is not a video" * 50)
    good = (tmp_path / "up" / "000.mp4").read_bytes()
    (tmp_path / "up" / "truncated.mp4").write_bytes(good[: len(good) // 3])
    source = VideoFolderSource(tmp_path, image_size=16, num_frames=4, stride=2)
    assert len(source) == 7
    with caplog.at_level(logging.WARNING):
        records = [source[i] for i in range(len(source))]
    assert all(r["image"].shape == (4, 16, 16, 3) for r in records)
    bad = {str(tmp_path / "left" / "empty.mp4"), str(tmp_path / "right" / "garbage.webm"),
           str(tmp_path / "up" / "truncated.mp4")}  # fmt: skip
    assert set(source.skipped) == bad and source.num_skipped == 3
    assert sum("skipping unreadable video" in r.message for r in caplog.records) == 3
    # A bad file is replaced by the next readable one (deterministically).
    i = source.paths.index(str(tmp_path / "left" / "empty.mp4"))
    np.testing.assert_array_equal(records[i]["image"], source[i + 1]["image"])
    assert "skipped=3" in repr(source)
    checked = VideoFolderSource(tmp_path, image_size=16, num_frames=4, stride=2, validate=True)
    assert len(checked) == 4 and set(checked.skipped) == bad


def test_pipeline_batches_and_exact_resume(tmp_path):
    write_motion_videos(tmp_path, per_class=3, num_frames=16)
    source = VideoFolderSource(tmp_path, image_size=16, num_frames=4, stride=2)

    def pipeline():
        return data.make_pipeline(source, batch_size=4, image_size=16, seed=3)

    it = pipeline()
    first = next(it)
    assert first["image"].shape == (4, 4, 16, 16, 3) and first["image"].dtype == np.float32
    assert first["label"].shape == (4,) and first["label"].dtype == np.int32
    state = it.get_state()
    rest = [next(it) for _ in range(4)]  # crosses the 3-batch epoch boundary
    resumed = pipeline()
    resumed.set_state(state)
    for a in rest:
        b = next(resumed)
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_array_equal(a["label"], b["label"])
    # Epochs differ (fresh order and fresh clips/crops); the eval view does not augment.
    assert not np.array_equal(first["image"], rest[2]["image"])
    plain = next(data.make_pipeline(source, batch_size=4, image_size=16, seed=3, augment=False))
    for image, label in zip(plain["image"], plain["label"], strict=True):
        assert any(np.array_equal(image, source[i]["image"]) for i in range(len(source)))
        assert label in source.labels


@pytest.mark.slow
def test_decoding_in_grain_workers_matches_in_process(tmp_path):
    write_motion_videos(tmp_path, per_class=2, num_frames=16)
    source = VideoFolderSource(tmp_path, image_size=16, num_frames=4, stride=2)
    kw = dict(batch_size=4, image_size=16, seed=1)
    it = data.make_pipeline(source, **kw)
    local = [next(it), next(it)]
    it = data.make_pipeline(source, worker_count=1, **kw)  # decodes in a worker process
    np.testing.assert_array_equal(local[0]["image"], next(it)["image"])
    state = it.get_state()
    del it
    resumed = data.make_pipeline(source, worker_count=1, **kw)
    resumed.set_state(state)
    np.testing.assert_array_equal(local[1]["image"], next(resumed)["image"])
    del resumed
    gc.collect()  # stop grain's worker processes now


def test_cached_source_decodes_each_file_once_and_draws_the_same_clips(tmp_path, monkeypatch):
    write_motion_videos(tmp_path, per_class=1, num_frames=16)
    kw = dict(image_size=16, num_frames=4, stride=2)
    plain = VideoFolderSource(tmp_path, **kw)
    cached = VideoFolderSource(tmp_path, cache_decoded=True, **kw)
    decoded, read_frames = [], video_folder.read_frames
    monkeypatch.setattr(video_folder, "read_frames", lambda p: decoded.append(p) or read_frames(p))
    for epoch in range(2):  # fresh clips and crops each epoch, from the cached frames
        for i in range(len(plain)):
            a = plain.load(i, np.random.default_rng([epoch, i]))["image"]
            b = cached.load(i, np.random.default_rng([epoch, i]))["image"]
            np.testing.assert_array_equal(a, b)
            np.testing.assert_array_equal(plain[i]["image"], cached[i]["image"])
    assert sorted(decoded) == sorted(plain.paths)
    assert data.build_source(
        ConfigDict(dict(source="video_folder", path=str(tmp_path), cache_decoded=True)),
        image_size=16,
        channels=3,
        num_frames=4,
    ).cache_decoded
