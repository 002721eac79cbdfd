"""Clip sampling and clip augmentation as VideoMAE does them, as pure NumPy/Pillow functions.

Temporal sampling (``MCG-NJU/VideoMAE``, ``kinetics.py``: ``_sample_train_indices`` and
``_video_TSN_decord_batch_loader`` with one segment and no temporal jitter): a clip of
``num_frames`` frames ``stride`` apart spans ``num_frames * stride`` source frames; its first frame
is drawn uniformly from ``[0, n - num_frames * stride]``. A video shorter than that span is padded
the way VideoMAE does it: the read position stops advancing once the next step would pass the end,
so the clip repeats its last reachable frame (it never loops back to the start). VideoMAE's
pretraining recipes use 16 frames with stride 4 on Kinetics-400 and stride 2 on
Something-Something V2 (its ``scripts/*/pretrain.sh``).

Spatial augmentation (VideoMAE ``transforms.py``: ``GroupMultiScaleCrop(input_size,
[1, .875, .75, .66])``, bilinear resize): one crop box per clip, whose sides are drawn from
``scales`` x the shorter side (width and height scale indices at most ``max_distort`` apart, a side
within 3 pixels of the output size snapped to it) at one of 13 fixed positions (corners, centre,
edge centres, quarter points), then every frame is resized to ``size x size``. VideoMAE's
pretraining does not flip; ``flip_prob`` adds a horizontal flip shared by all frames (leave it 0
for data whose labels depend on left/right, as Something-Something's do).

Clips in are ``uint8[T, H, W, 3]``; clips out are ``float32[T, S, S, 3]`` normalised with the
ImageNet mean and std (VideoMAE's ``GroupNormalize``).
"""

from __future__ import annotations

from collections.abc import Sequence

import chex
import numpy as np
from PIL import Image

from mim_jax.data.augment import IMAGENET_MEAN, IMAGENET_STD, normalize

VIDEOMAE_SCALES: tuple[float, ...] = (1.0, 0.875, 0.75, 0.66)


def clip_indices(
    num_video_frames: int, num_frames: int, stride: int, rng: np.random.Generator | None
) -> np.ndarray:
    """Source frame indices ``int64[num_frames]`` of one clip (see the module docstring).

    ``rng=None`` takes the centred clip (the deterministic evaluation view); otherwise the first
    frame is uniform over every position at which the whole span fits (0 when it never fits).

    Raises:
      ValueError: a video with no frames, or non-positive ``num_frames`` / ``stride``.
    """
    if num_video_frames < 1:
        raise ValueError(f"a video with {num_video_frames} frames has no clip")
    if num_frames < 1 or stride < 1:
        raise ValueError(f"num_frames and stride must be positive: {num_frames}, {stride}")
    span = num_frames * stride
    room = num_video_frames - span  # first-frame positions beyond 0
    if room < 0:
        start = 0
    elif rng is None:
        start = room // 2
    else:
        start = int(rng.integers(0, room + 1))
    out = np.empty(num_frames, np.int64)
    position = start
    for i in range(num_frames):
        out[i] = position
        if position + stride < num_video_frames:  # VideoMAE: stop advancing at the end
            position += stride
    return out


def multi_scale_crop_box(
    rng: np.random.Generator,
    height: int,
    width: int,
    size: int,
    scales: Sequence[float] = VIDEOMAE_SCALES,
    max_distort: int = 1,
) -> tuple[int, int, int, int]:
    """One VideoMAE multi-scale crop box ``(top, left, h, w)`` for frames of ``height x width``."""
    base = min(height, width)
    sides = [int(base * s) for s in scales]
    sides = [size if abs(s - size) < 3 else s for s in sides]
    pairs = [
        (w, h)
        for i, h in enumerate(sides)
        for j, w in enumerate(sides)
        if abs(i - j) <= max_distort
    ]
    w, h = pairs[int(rng.integers(len(pairs)))]
    w, h = min(max(w, 1), width), min(max(h, 1), height)
    ws, hs = (width - w) // 4, (height - h) // 4
    grid = ((0, 0), (4, 0), (0, 4), (4, 4), (2, 2), (0, 2), (4, 2), (2, 4), (2, 0),
            (1, 1), (3, 1), (1, 3), (3, 3))  # fmt: skip
    gx, gy = grid[int(rng.integers(len(grid)))]
    return gy * hs, gx * ws, h, w


def centre_crop_box(height: int, width: int) -> tuple[int, int, int, int]:
    """The centred square of side ``min(height, width)``: the evaluation view's box."""
    side = min(height, width)
    return (height - side) // 2, (width - side) // 2, side, side


def crop_resize_clip(
    frames: np.ndarray, box: tuple[int, int, int, int], size: int, flip: bool = False
) -> np.ndarray:
    """``uint8[T, H, W, 3]`` -> ``uint8[T, size, size, 3]``: the same box (bilinear) and flip for
    every frame."""
    chex.assert_rank(frames, 4)
    top, left, h, w = box
    out = np.empty((len(frames), size, size, frames.shape[-1]), np.uint8)
    for t, frame in enumerate(frames):
        crop = np.ascontiguousarray(frame[top : top + h, left : left + w])
        out[t] = np.asarray(Image.fromarray(crop).resize((size, size), Image.Resampling.BILINEAR))
    return out[:, :, ::-1] if flip else out


def clip_transform(
    frames: np.ndarray,
    size: int,
    rng: np.random.Generator | None,
    scales: Sequence[float] = VIDEOMAE_SCALES,
    flip_prob: float = 0.0,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> np.ndarray:
    """``uint8[T, H, W, 3]`` -> ``float32[T, size, size, 3]``: multi-scale crop + optional flip
    (``rng``), or the centre square resized (``rng=None``); then ImageNet normalisation."""
    chex.assert_rank(frames, 4)
    height, width = frames.shape[1:3]
    if rng is None:
        out = crop_resize_clip(frames, centre_crop_box(height, width), size)
    else:
        box = multi_scale_crop_box(rng, height, width, size, scales)
        out = crop_resize_clip(frames, box, size, flip=bool(rng.random() < flip_prob))
    clip = normalize(out, mean, std)
    chex.assert_shape(clip, (len(frames), size, size, frames.shape[-1]))
    return clip
