"""MAE augmentation as pure NumPy/Pillow functions driven by an explicit ``np.random.Generator``.

The pretraining transform matches the MAE reference (``RandomResizedCrop(scale=(0.2, 1.0),
interpolation=BICUBIC)`` + ``RandomHorizontalFlip()`` + ``Normalize(IMAGENET_MEAN, IMAGENET_STD)``).
The evaluation protocols' transforms follow ``facebookresearch/mae`` too (``util/datasets.py``,
``main_linprobe.py``, ``main_finetune.py``, which builds its train transform with timm 0.3.2's
``create_transform``):

- evaluation (kNN, probe, fine-tune): shorter side resized (bicubic) to ``int(size /
  crop_fraction)``, centre crop ``size`` (:func:`eval_transform`; :func:`mae_crop_fraction` is
  MAE's rule: 224/256 = 0.875 up to 224 pixels, 1.0 above);
- linear-probe training: MAE's one-draw RandomResizedCrop (``util/crop.py``, scale 0.08-1) + flip
  (:func:`linprobe_train_transform`);
- fine-tuning training: timm's RandomResizedCrop (scale 0.08-1, ratio 3/4-4/3, bicubic) + flip +
  RandAugment (:mod:`mim_jax.data.randaugment`) + normalise + RandomErasing
  (:mod:`mim_jax.data.random_erasing`) (:func:`finetune_train_transform`).

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

from mim_jax.data.randaugment import RandAugment, fill_colour
from mim_jax.data.random_erasing import RandomErasing

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

#: MAE's evaluation crop fraction for inputs up to 224 pixels (``util/datasets.py``: 224 / 256).
DEFAULT_CROP_FRACTION: float = 224 / 256

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


def mae_crop_fraction(size: int) -> float:
    """MAE's evaluation crop fraction for an input side ``size`` (``util/datasets.py``):
    224/256 = 0.875 when ``size <= 224``, else 1.0 (the whole shorter side)."""
    return DEFAULT_CROP_FRACTION if size <= 224 else 1.0


def resize_shorter_side(image: np.ndarray, size: int, interpolation: str = "bicubic") -> np.ndarray:
    """torchvision's ``Resize(size)``: the shorter side becomes ``size``, the longer one
    ``int(size * long / short)`` (truncated, as torchvision). ``uint8[H, W, C]`` in and out."""
    if size < 1:
        raise ValueError(f"resize size must be positive, got {size}.")
    height, width = image.shape[:2]
    if height <= width:
        out = (size, int(size * width / height))
    else:
        out = (int(size * height / width), size)
    if out == (height, width):
        return image
    return resize(image, out, interpolation=interpolation)


def center_crop(image: np.ndarray, size: int) -> np.ndarray:
    """torchvision's ``CenterCrop(size)`` of ``[H, W, C]`` with ``H, W >= size``: offsets
    ``int(round((H - size) / 2))`` and ``int(round((W - size) / 2))`` (Python rounding)."""
    height, width = image.shape[:2]
    if height < size or width < size:
        raise ValueError(f"centre crop {size} of a {height}x{width} image: the image is smaller.")
    top = round((height - size) / 2.0)
    left = round((width - size) / 2.0)
    return image[top : top + size, left : left + size]


def eval_crop(
    image: np.ndarray,
    size: int,
    crop_fraction: float = DEFAULT_CROP_FRACTION,
    interpolation: str = "bicubic",
) -> np.ndarray:
    """The geometric part of :func:`eval_transform`: ``uint8[H, W, C]`` -> ``uint8[size, size,
    C]``, the shorter side resized to ``int(size / crop_fraction)``, then the centre crop."""
    if not 0.0 < crop_fraction <= 1.0:
        raise ValueError(f"crop_fraction must be in (0, 1], got {crop_fraction}.")
    resized = resize_shorter_side(image, int(size / crop_fraction), interpolation)
    return center_crop(resized, size)


def eval_transform(
    image: np.ndarray,
    size: int,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    interpolation: str = "bicubic",
    crop_fraction: float = DEFAULT_CROP_FRACTION,
) -> np.ndarray:
    """MAE's evaluation transform: ``uint8[H, W, C]`` -> ``float32[size, size, C]``.

    The shorter side is resized to ``int(size / crop_fraction)`` (bicubic; 256 for 224 at the
    default 0.875), the centre ``size x size`` is cropped and normalised. ``crop_fraction=1.0``
    keeps the whole shorter side (a square image is then resized whole).
    """
    return normalize(eval_crop(image, size, crop_fraction, interpolation), mean, std)


def linprobe_crop_params(
    rng: np.random.Generator,
    height: int,
    width: int,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> tuple[int, int, int, int]:
    """MAE's linear-probe crop box ``(top, left, h, w)`` (``util/crop.py``, after BYOL's TF code).

    One draw, no retries: an area fraction uniform in ``scale``, a log-uniform aspect ratio
    (w / h) in ``ratio``, ``w, h`` rounded and clamped to the image, the box placed uniformly.
    """
    area = height * width
    target_area = area * rng.uniform(scale[0], scale[1])
    aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
    w = min(max(round(math.sqrt(target_area * aspect)), 1), width)
    h = min(max(round(math.sqrt(target_area / aspect)), 1), height)
    top = int(rng.integers(0, height - h + 1))
    left = int(rng.integers(0, width - w + 1))
    return top, left, h, w


def linprobe_train_transform(
    image: np.ndarray,
    rng: np.random.Generator,
    size: int,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    scale: tuple[float, float] = (0.08, 1.0),
) -> np.ndarray:
    """MAE's linear-probe training transform (``main_linprobe.py``): ``uint8[H, W, C]`` ->
    ``float32[size, size, C]``: :func:`linprobe_crop_params` (scale 0.08-1), bicubic resize,
    horizontal flip with probability 0.5, normalise."""
    box = linprobe_crop_params(rng, *image.shape[:2], scale=scale)
    out = resize(image, size, box=box, interpolation="bicubic")
    if rng.random() < 0.5:
        out = out[:, ::-1]
    return normalize(out, mean, std)


def finetune_train_transform(
    image: np.ndarray,
    rng: np.random.Generator,
    size: int,
    rand_augment: RandAugment | None = None,
    erasing: RandomErasing | None = None,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> np.ndarray:
    """MAE's fine-tuning train transform (timm ``create_transform`` as ``util/datasets.py`` calls
    it): ``uint8[H, W, C]`` -> ``float32[size, size, C]``.

    timm's RandomResizedCrop (10 tries, then a centre crop; ``scale``, ``ratio``, bicubic),
    horizontal flip (p 0.5), ``rand_augment`` on the uint8 image (fill: the mean colour, bicubic
    geometry, as timm), normalisation, then ``erasing`` on the normalised image.
    """
    box = random_resized_crop_params(rng, *image.shape[:2], scale=scale, ratio=ratio)
    out = resize(image, size, box=box, interpolation="bicubic")
    if rng.random() < 0.5:
        out = out[:, ::-1]
    if rand_augment is not None:
        out = rand_augment(out, rng, fill=fill_colour(mean, out.shape[-1]))
    out = normalize(out, mean, std)
    if erasing is not None:
        out = erasing(out, rng)
    return out
