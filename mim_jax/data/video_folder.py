"""Video-folder source: VideoMAE clips decoded with PyAV from mp4, webm, avi, mkv, ... files.

``VideoFolderSource(path, image_size=224, num_frames=16, stride=4)`` lists the files (class
folders or a ``<file> <label>`` list, see :mod:`mim_jax.data.media_index`), and reads clips as
VideoMAE does (:mod:`mim_jax.data.clips`: temporal sampling with last-frame padding for short
videos, one multi-scale crop box and flip per clip, ImageNet normalisation).

Decoding seeks: the clip's frame indices are computed from the stream's frame count (or its
duration x frame rate when the container does not store a count), the demuxer seeks to the key
frame before the clip's first frame, and decoding stops after its last frame; frames are matched
to indices by their timestamps. When a stream has neither a count nor a duration, or the seek
lands after the wanted frame, the file is decoded from its start. Frames missing at the end (a
count that overstated the stream) repeat the last decoded frame, as VideoMAE's padding does.

With ``cache_decoded=True`` every frame of a file is decoded once (:func:`read_frames`) and kept;
clips are then drawn from the decoded frame count rather than the container's (the same clip when
the two agree, as they do for files PyAV wrote).

Unreadable, empty (no video stream or no frames) and corrupt files are skipped, counted and
reported (:class:`mim_jax.data.media_source.MediaSource`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import chex
import numpy as np

from mim_jax.data.augment import IMAGENET_MEAN, IMAGENET_STD
from mim_jax.data.clips import VIDEOMAE_SCALES, clip_indices, clip_transform
from mim_jax.data.media_source import MediaSource

if TYPE_CHECKING:  # PyAV is the optional extra ``mim_jax[video]``, imported when a clip is read
    import av

VIDEO_EXTENSIONS = frozenset({".mp4", ".webm", ".avi", ".mkv", ".mov", ".m4v", ".mpg", ".mpeg"})


def _frame_count(container: Any, stream: av.VideoStream) -> int | None:
    """Frames in ``stream``: the stored count, else duration x rate; None if neither is known."""
    if stream.frames and stream.frames > 0:
        return int(stream.frames)
    rate = stream.average_rate or stream.guessed_rate
    if not rate:
        return None
    if stream.duration and stream.time_base:
        return max(1, round(float(stream.duration * stream.time_base * rate)))
    if container.duration:  # in microseconds (FFmpeg's AV_TIME_BASE)
        return max(1, round(container.duration / 1_000_000 * float(rate)))
    return None


def _index_of(frame: av.VideoFrame, start: int, time_base, rate: float) -> int | None:
    if frame.pts is None:
        return None
    return round(float((frame.pts - start) * time_base) * rate)


def _collect(frames, wanted: list[int]) -> dict[int, av.VideoFrame] | None:
    """Matches decoded ``frames`` to the sorted ``wanted`` indices (a skipped-over index takes the
    previous frame; indices past the end the last). None if the first frame came after
    ``wanted[0]`` (a seek that overshot)."""
    out: dict[int, av.VideoFrame] = {}
    w, prev, first = 0, None, True
    for idx, frame in frames:
        if first and idx > wanted[0] and idx > 0:
            return None
        first = False
        while w < len(wanted) and wanted[w] < idx:
            out[wanted[w]] = prev if prev is not None else frame
            w += 1
        if w < len(wanted) and wanted[w] == idx:
            out[idx] = frame
            w += 1
        prev = frame
        if w == len(wanted):
            break
    if prev is None:
        raise ValueError("no frames could be decoded")
    for j in wanted[w:]:
        out[j] = prev
    return out


def read_clip(
    path: str,
    num_frames: int,
    stride: int,
    rng: np.random.Generator | None,
    seek: bool = True,
) -> np.ndarray:
    """Decodes one clip of ``path``: ``uint8[num_frames, H, W, 3]`` (RGB, the file's size).

    Args:
      path: a video file PyAV (FFmpeg) can read.
      num_frames / stride: clip length and frame step (see :func:`clips.clip_indices`).
      rng: draws the clip's start; None takes the centred clip.
      seek: seek to the clip (default); False decodes from the file's start (for tests).

    Raises:
      ValueError: no video stream or no decodable frame; PyAV's errors for corrupt files.
    """
    import av

    with av.open(path) as container:
        stream = _video_stream(container)
        rate = float(stream.average_rate or stream.guessed_rate or 0)
        start = stream.start_time or 0
        count = _frame_count(container, stream) if rate else None

        def decoded():
            for i, frame in enumerate(container.decode(stream)):
                idx = _index_of(frame, start, stream.time_base, rate) if rate else i
                yield (i if idx is None else idx), frame

        if count is None:  # no count, no rate: decode everything once
            frames = [f for _, f in decoded()]
            if not frames:
                raise ValueError("no frames could be decoded")
            indices = clip_indices(len(frames), num_frames, stride, rng)
            picked = {int(j): frames[j] for j in set(indices.tolist())}
        else:
            indices = clip_indices(count, num_frames, stride, rng)
            wanted = sorted(set(indices.tolist()))
            picked = None
            if seek and wanted[0] > 0:
                target = start + int(wanted[0] / rate / stream.time_base)
                container.seek(target, stream=stream, backward=True, any_frame=False)
                picked = _collect(decoded(), wanted)
                if picked is None:  # overshot: decode from the start
                    container.seek(start, stream=stream, backward=True, any_frame=False)
            if picked is None:
                picked = _collect(decoded(), wanted)
            if picked is None:
                raise ValueError(f"the stream starts after frame {wanted[0]}")
        arrays: dict[int, np.ndarray] = {}
        clip = []
        for j in indices.tolist():
            frame = picked[j]
            if id(frame) not in arrays:
                arrays[id(frame)] = frame.to_ndarray(format="rgb24")
            clip.append(arrays[id(frame)])
    out = np.stack(clip)
    chex.assert_rank(out, 4)
    return out


def _video_stream(container):
    """The container's first video stream; ValueError when it has none."""
    if not container.streams.video:
        raise ValueError("no video stream")
    return container.streams.video[0]


def read_frames(path: str) -> np.ndarray:
    """Every frame of ``path``'s first video stream, decoded from its start: ``uint8[N, H, W, 3]``.

    Raises:
      ValueError: no video stream or no decodable frame; PyAV's errors for corrupt files.
    """
    import av

    with av.open(path) as container:
        stream = _video_stream(container)
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
    if not frames:
        raise ValueError("no frames could be decoded")
    return np.stack(frames)


class VideoFolderSource(MediaSource):
    """Random-access VideoMAE clips from a video folder or list.

    Args:
      path: folder (class sub-folders = labels, or flat = unlabelled) or a ``<file> <label>``
        list (:mod:`mim_jax.data.media_index`).
      image_size: output side ``S``.
      num_frames: frames per clip ``T`` (VideoMAE: 16).
      stride: source frames between clip frames (VideoMAE: 4 Kinetics-style, 2 SSv2-style).
      scales: multi-scale crop side fractions of the shorter side (VideoMAE's by default).
      flip_prob: probability of a horizontal flip of the whole clip (training view).
      mean / std: normalisation per channel in [0, 1] units.
      validate: decode every file at construction and drop unreadable ones.
      cache_decoded: keep every file's decoded frames in memory after its first read (small sets).

    ``source[i]`` is the evaluation view (centred clip, centre square) and ``load(i, rng)`` the
    training view, both ``{"image": float32[T, S, S, 3], "label": int}``.
    """

    what = "video"
    extensions = VIDEO_EXTENSIONS

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        image_size: int = 224,
        num_frames: int = 16,
        stride: int = 4,
        scales: Sequence[float] = VIDEOMAE_SCALES,
        flip_prob: float = 0.5,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        validate: bool = False,
        cache_decoded: bool = False,
    ):
        if image_size < 1 or num_frames < 1 or stride < 1:
            raise ValueError(
                f"image_size, num_frames and stride must be positive: {image_size}, "
                f"{num_frames}, {stride}"
            )
        if not 0.0 <= flip_prob <= 1.0:
            raise ValueError(f"flip_prob must be in [0, 1]: {flip_prob}")
        self.image_size = int(image_size)
        self.num_frames = int(num_frames)
        self.stride = int(stride)
        self.scales = tuple(float(s) for s in scales)
        self.flip_prob = float(flip_prob)
        self.mean = tuple(mean)
        self.std = tuple(std)
        super().__init__(path, validate=validate, cache_decoded=cache_decoded)

    def read(self, path: str, rng: np.random.Generator | None) -> np.ndarray:
        """One clip of ``path`` as ``float32[T, S, S, 3]`` (training view with ``rng``)."""
        if self.cache_decoded:
            video = self.decoded(path, read_frames)
            frames = video[clip_indices(len(video), self.num_frames, self.stride, rng)]
        else:
            frames = read_clip(path, self.num_frames, self.stride, rng)
        return clip_transform(
            frames, self.image_size, rng, self.scales, self.flip_prob, self.mean, self.std
        )
