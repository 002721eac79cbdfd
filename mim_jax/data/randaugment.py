"""RandAugment as timm builds it for MAE fine-tuning (``--aa rand-m9-mstd0.5-inc1``).

Facts from timm's ``timm/data/auto_augment.py`` (v0.3.x, the version ``facebookresearch/mae``
pins; the same in current timm for this policy) and ``transforms_factory.py``:

- A policy string ``rand-<section>-...``: ``m<int>`` magnitude (default 10), ``n<int>`` ops per
  image (default 2), ``mstd<float>`` magnitude noise std (default 0), ``inc<0|1>`` the
  "increasing" op list (severity grows with magnitude).
- Each image draws ``n`` ops uniformly *with replacement* from the list; each op then applies with
  probability 0.5, at a magnitude drawn from ``N(m, mstd)`` and clipped to [0, 10].
- Magnitude ``level`` in [0, 10] maps to the op's argument as in :data:`LEVEL_RANGES`; signed
  arguments are negated with probability 0.5.
- Geometric ops (rotate, shear, translate) fill uncovered pixels with the dataset mean colour
  (``round(255 * mean)``: (124, 116, 104) for ImageNet) and resample bicubically when the
  transform's interpolation is bicubic (MAE's is).

All randomness comes from an explicit ``np.random.Generator`` (one per record in the input
pipeline's workers), so an augmented stream is a function of the seed and the record's position.
Images are ``uint8[H, W, C]`` with ``C`` in {1, 3}; ops run on Pillow images, as timm's do.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

#: timm's ``_MAX_LEVEL``: magnitudes are on a 0-10 scale.
MAX_LEVEL = 10.0

#: timm's ``_RAND_TRANSFORMS`` (``inc0``).
RAND_OPS: tuple[str, ...] = (
    "AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize", "SolarizeAdd",
    "Color", "Contrast", "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateXRel",
    "TranslateYRel",
)  # fmt: skip

#: timm's ``_RAND_INCREASING_TRANSFORMS`` (``inc1``, MAE's choice).
RAND_INCREASING_OPS: tuple[str, ...] = (
    "AutoContrast", "Equalize", "Invert", "Rotate", "PosterizeIncreasing", "SolarizeIncreasing",
    "SolarizeAdd", "ColorIncreasing", "ContrastIncreasing", "BrightnessIncreasing",
    "SharpnessIncreasing", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel",
)  # fmt: skip

#: MAE's fine-tuning policy (``main_finetune.py --aa``).
MAE_POLICY = "rand-m9-mstd0.5-inc1"


def _signed(scale: float) -> Callable[[float, np.random.Generator], float]:
    def arg(level: float, rng: np.random.Generator) -> float:
        value = level / MAX_LEVEL * scale
        return -value if rng.random() > 0.5 else value  # timm's _randomly_negate

    return arg


def _increasing_enhance(level: float, rng: np.random.Generator) -> float:
    value = level / MAX_LEVEL * 0.9
    return 1.0 + (-value if rng.random() > 0.5 else value)


#: level in [0, 10] -> the op's argument (``None``: the op takes none). The comment is the range.
LEVEL_TO_ARG: dict[str, Callable[[float, np.random.Generator], float] | None] = {
    "AutoContrast": None,
    "Equalize": None,
    "Invert": None,
    "Rotate": _signed(30.0),  # degrees, [-30, 30]
    "Posterize": lambda lv, _: int(lv / MAX_LEVEL * 4),  # bits kept, [0, 4]
    "PosterizeIncreasing": lambda lv, _: 4 - int(lv / MAX_LEVEL * 4),  # bits kept, [4, 0]
    "Solarize": lambda lv, _: int(lv / MAX_LEVEL * 256),  # threshold, [0, 256]
    "SolarizeIncreasing": lambda lv, _: 256 - int(lv / MAX_LEVEL * 256),  # threshold, [256, 0]
    "SolarizeAdd": lambda lv, _: int(lv / MAX_LEVEL * 110),  # added below 128, [0, 110]
    "Color": lambda lv, _: lv / MAX_LEVEL * 1.8 + 0.1,  # enhance factor, [0.1, 1.9]
    "ColorIncreasing": _increasing_enhance,  # 1 +- [0, 0.9]
    "Contrast": lambda lv, _: lv / MAX_LEVEL * 1.8 + 0.1,
    "ContrastIncreasing": _increasing_enhance,
    "Brightness": lambda lv, _: lv / MAX_LEVEL * 1.8 + 0.1,
    "BrightnessIncreasing": _increasing_enhance,
    "Sharpness": lambda lv, _: lv / MAX_LEVEL * 1.8 + 0.1,
    "SharpnessIncreasing": _increasing_enhance,
    "ShearX": _signed(0.3),  # shear factor, [-0.3, 0.3]
    "ShearY": _signed(0.3),
    "TranslateXRel": _signed(0.45),  # fraction of the width, [-0.45, 0.45]
    "TranslateYRel": _signed(0.45),  # fraction of the height
}

_RESAMPLE = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}


def fill_colour(mean: Sequence[float], channels: int = 3) -> tuple[int, ...]:
    """timm's ``img_mean`` fill: ``min(255, round(255 * m))`` per channel (first ``channels``)."""
    return tuple(min(255, round(255 * m)) for m in mean)[:channels]


def _affine(img: Image.Image, matrix: tuple[float, ...], fill, resample) -> Image.Image:
    return img.transform(img.size, Image.Transform.AFFINE, matrix, resample, fillcolor=fill)


def _posterize(img: Image.Image, bits: int) -> Image.Image:
    """Keeps the ``bits`` most significant bits (0 keeps none: black, as Pillow < 10 did for
    timm's magnitude-10 PosterizeIncreasing; current Pillow rejects 0)."""
    if bits >= 8:
        return img
    mask = 0xFF & ~(2 ** (8 - bits) - 1)
    return img.point([i & mask for i in range(256)] * len(img.getbands()))


def _solarize_add(img: Image.Image, add: int, thresh: int = 128) -> Image.Image:
    lut = [min(255, i + add) if i < thresh else i for i in range(256)]
    return img.point(lut * len(img.getbands()))


def apply_op(
    image: np.ndarray,
    name: str,
    arg: float | None = None,
    *,
    fill: Sequence[int] = (128, 128, 128),
    interpolation: str = "bicubic",
) -> np.ndarray:
    """One RandAugment op with its argument (see :data:`LEVEL_TO_ARG`) on ``uint8[H, W, C]``.

    ``fill`` is the colour of pixels a geometric op uncovers; ``interpolation`` its resampling.
    Returns ``uint8[H, W, C]``.
    """
    if name not in LEVEL_TO_ARG:
        raise ValueError(f"unknown RandAugment op {name!r}; valid: {', '.join(LEVEL_TO_ARG)}.")
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] not in (1, 3):
        raise ValueError(f"expected uint8[H, W, 1 or 3], got {image.dtype}{list(image.shape)}.")
    gray = image.shape[-1] == 1
    img = Image.fromarray(np.ascontiguousarray(image[..., 0] if gray else image))
    fill_value = int(fill[0]) if gray else tuple(int(f) for f in fill[:3])
    resample = _RESAMPLE[interpolation]
    width, height = img.size
    base = name.removesuffix("Increasing")
    if base == "AutoContrast":
        out = ImageOps.autocontrast(img)
    elif base == "Equalize":
        out = ImageOps.equalize(img)
    elif base == "Invert":
        out = ImageOps.invert(img)
    elif base == "Rotate":
        out = img.rotate(arg, resample=resample, fillcolor=fill_value)
    elif base == "Posterize":
        out = _posterize(img, int(arg))
    elif base == "Solarize":
        out = ImageOps.solarize(img, int(arg))
    elif base == "SolarizeAdd":
        out = _solarize_add(img, int(arg))
    elif base in ("Color", "Contrast", "Brightness", "Sharpness"):
        out = getattr(ImageEnhance, base)(img).enhance(arg)
    elif base == "ShearX":
        out = _affine(img, (1, arg, 0, 0, 1, 0), fill_value, resample)
    elif base == "ShearY":
        out = _affine(img, (1, 0, 0, arg, 1, 0), fill_value, resample)
    elif base == "TranslateXRel":
        out = _affine(img, (1, 0, arg * width, 0, 1, 0), fill_value, resample)
    else:  # TranslateYRel
        out = _affine(img, (1, 0, 0, 0, 1, arg * height), fill_value, resample)
    array = np.asarray(out)
    return array[..., None] if gray else array


@dataclasses.dataclass(frozen=True)
class OpDraw:
    """One of the ``num_ops`` draws for an image: the op, whether it applies, its magnitude
    (after noise and clipping) and argument (``None`` when skipped or argument-free)."""

    name: str
    applied: bool
    magnitude: float | None = None
    arg: float | None = None


@dataclasses.dataclass(frozen=True)
class RandAugment:
    """timm's RandAugment: ``num_ops`` ops from ``ops`` (uniform, with replacement), each applied
    with probability ``prob`` at magnitude ``N(magnitude, magnitude_std)`` clipped to [0, 10].

    ``policy(image uint8[H,W,C], rng, fill=...) -> uint8[H,W,C]``; build MAE's with
    ``RandAugment.from_spec("rand-m9-mstd0.5-inc1")``.
    """

    ops: tuple[str, ...] = RAND_INCREASING_OPS
    num_ops: int = 2
    magnitude: float = 9.0
    magnitude_std: float = 0.5
    prob: float = 0.5
    interpolation: str = "bicubic"

    def __post_init__(self):
        unknown = [op for op in self.ops if op not in LEVEL_TO_ARG]
        if unknown or not self.ops:
            valid = ", ".join(LEVEL_TO_ARG)
            raise ValueError(f"RandAugment ops {unknown or '()'}; valid: {valid}.")
        if self.num_ops < 0 or not 0.0 <= self.prob <= 1.0 or self.magnitude_std < 0:
            raise ValueError(
                f"RandAugment needs num_ops >= 0, prob in [0, 1] and magnitude_std >= 0; got "
                f"{self.num_ops}, {self.prob}, {self.magnitude_std}."
            )
        if self.interpolation not in _RESAMPLE:
            valid = ", ".join(_RESAMPLE)
            raise ValueError(f"interpolation {self.interpolation!r}; valid: {valid}.")

    @classmethod
    def from_spec(cls, spec: str, **overrides) -> RandAugment:
        """Parses timm's policy string (``rand-m9-mstd0.5-inc1``; sections ``m``, ``n``,
        ``mstd``, ``inc``). Raises ``ValueError`` on anything else (timm's weighted ``w`` choice
        is not implemented)."""
        sections = spec.split("-")
        if sections[0] != "rand":
            raise ValueError(f"a RandAugment policy starts with 'rand-', got {spec!r}.")
        values: dict = dict(ops=RAND_OPS, num_ops=2, magnitude=MAX_LEVEL, magnitude_std=0.0)
        for section in sections[1:]:
            match = re.fullmatch(r"([a-z]+)(\d.*)", section)
            if match is None:
                raise ValueError(f"RandAugment policy {spec!r}: cannot read section {section!r}.")
            key, val = match.groups()
            try:
                if key == "m":
                    values["magnitude"] = float(int(val))
                elif key == "n":
                    values["num_ops"] = int(val)
                elif key == "mstd":
                    values["magnitude_std"] = float(val)
                elif key == "inc":
                    values["ops"] = RAND_INCREASING_OPS if int(val) else RAND_OPS
                else:
                    raise ValueError(f"unknown section {section!r} (valid: m, n, mstd, inc)")
            except ValueError as err:
                raise ValueError(f"RandAugment policy {spec!r}: {err}.") from None
        values.update(overrides)
        return cls(**values)

    def sample(self, rng: np.random.Generator) -> list[OpDraw]:
        """The ``num_ops`` draws for one image (consumes ``rng`` exactly as :meth:`__call__`)."""
        draws = []
        for index in rng.integers(0, len(self.ops), size=self.num_ops):
            name = self.ops[int(index)]
            if self.prob < 1.0 and rng.random() > self.prob:
                draws.append(OpDraw(name, False))
                continue
            magnitude = self.magnitude
            if self.magnitude_std > 0:
                magnitude = rng.normal(magnitude, self.magnitude_std)
            magnitude = float(min(MAX_LEVEL, max(0.0, magnitude)))
            level_fn = LEVEL_TO_ARG[name]
            arg = None if level_fn is None else level_fn(magnitude, rng)
            draws.append(OpDraw(name, True, magnitude, arg))
        return draws

    def __call__(
        self,
        image: np.ndarray,
        rng: np.random.Generator,
        *,
        fill: Sequence[int] = (128, 128, 128),
    ) -> np.ndarray:
        """Augments ``uint8[H, W, C]`` -> ``uint8[H, W, C]`` (``fill``: see :func:`apply_op`)."""
        for draw in self.sample(rng):
            if draw.applied:
                image = apply_op(
                    image, draw.name, draw.arg, fill=fill, interpolation=self.interpolation
                )
        return image
