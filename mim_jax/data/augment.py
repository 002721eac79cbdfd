"""MAE augmentation as pure NumPy/Pillow functions driven by an explicit ``np.random.Generator``.

The training transform matches the MAE reference (``RandomResizedCrop(scale=(0.2, 1.0),
interpolation=BICUBIC)`` + ``RandomHorizontalFlip()`` + ``Normalize(IMAGENET_MEAN, IMAGENET_STD)``).
All randomness comes from the generator argument, so a grain ``RandomMap`` (whose per-record
generator is a function of the seed and the record's position) makes augmentation reproducible and
resumable.

Images in are ``uint8[H, W, C]`` with ``C`` in {1, 3}; images out are ``float32[S, S, C]``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from PIL import Image

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

_RESAMPLE = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
}


def random_resized_crop_params(
    rng: np.random.Generator,
    height: int,
    width: int,
    scale: tuple[float, float] = (0.2, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    attempts: int = 10,
) -> tuple[int, int, int, int]:
    """Sample a crop box ``(top, left, h, w)`` with torchvision's RandomResizedCrop algorithm.

    Up to ``attempts`` tries draw an area fraction uniformly from ``scale`` and a log-uniform aspect
    ratio (w / h) from ``ratio``; the first box that fits is placed uniformly at random. If none
    fits, the fallback is a centre crop of the whole image, clamped to the ratio range.
    """
    area = height * width
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(attempts):
        target_area = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(log_lo, log_hi))
        w = round(math.sqrt(target_area * aspect))
        h = round(math.sqrt(target_area / aspect))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return top, left, h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w = width
        h = round(w / min(ratio))
    elif in_ratio > max(ratio):
        h = height
        w = round(h * max(ratio))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def resize(
    image: np.ndarray,
    size: int | tuple[int, int],
    box: tuple[int, int, int, int] | None = None,
    interpolation: str = "bicubic",
) -> np.ndarray:
    """Resize ``uint8[H, W, C]`` (optionally the crop ``box=(top, left, h, w)``) with Pillow.

    Returns ``uint8[size_h, size_w, C]``. ``size`` is an int (square) or ``(height, width)``.
    """
    out_h, out_w = (size, size) if isinstance(size, int) else size
    if box is not None:  # crop first (as torchvision): the filter must not see outside the box
        top, left, h, w = box
        image = image[top : top + h, left : left + w]
    channels = image.shape[-1]
    pil = Image.fromarray(np.ascontiguousarray(image[..., 0] if channels == 1 else image))
    out = np.asarray(pil.resize((out_w, out_h), _RESAMPLE[interpolation]))
    return out[..., None] if channels == 1 else out


def normalize(
    image: np.ndarray,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> np.ndarray:
    """Map ``uint8[H, W, C]`` to ``float32[H, W, C]``: ``(x / 255 - mean) / std`` per channel.

    For one-channel images the first ``C`` entries of ``mean``/``std`` are used.
    """
    c = image.shape[-1]
    mean_a = np.asarray(mean, np.float32)[:c]
    std_a = np.asarray(std, np.float32)[:c]
    return (image.astype(np.float32) / np.float32(255.0) - mean_a) / std_a


def mae_train_transform(
    image: np.ndarray,
    rng: np.random.Generator,
    size: int,
    scale: tuple[float, float] = (0.2, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    flip_prob: float = 0.5,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    interpolation: str = "bicubic",
) -> np.ndarray:
    """MAE pretraining augmentation: ``uint8[H, W, C]`` -> ``float32[size, size, C]``.

    RandomResizedCrop (``scale``, ``ratio``, bicubic) to ``size``, horizontal flip with probability
    ``flip_prob``, then per-channel normalisation. Deterministic given the generator state.
    """
    height, width = image.shape[:2]
    box = random_resized_crop_params(rng, height, width, scale, ratio)
    out = resize(image, size, box=box, interpolation=interpolation)
    if rng.random() < flip_prob:
        out = out[:, ::-1]
    return normalize(out, mean, std)


def eval_transform(
    image: np.ndarray,
    size: int,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    interpolation: str = "bicubic",
) -> np.ndarray:
    """Deterministic transform: resize the whole image to ``size`` and normalise.

    ``uint8[H, W, C]`` -> ``float32[size, size, C]``.
    """
    return normalize(resize(image, size, interpolation=interpolation), mean, std)
