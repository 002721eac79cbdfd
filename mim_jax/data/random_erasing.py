"""Random Erasing as timm applies it in MAE fine-tuning (``--reprob 0.25 --remode pixel
--recount 1``).

Facts from timm's ``timm/data/random_erasing.py`` (v0.3.x, pinned by ``facebookresearch/mae``;
unchanged in current timm for these settings) and ``transforms_factory.py`` (it runs after
``ToTensor`` + ``Normalize``, on the normalised image):

- with probability ``probability`` an image is erased, else left untouched;
- ``count`` boxes (``min_count``; a uniform integer in [min_count, max_count] when they differ),
  each with up to 10 tries: area fraction uniform in [``min_area``, ``max_area``] divided by
  ``count``, aspect ratio h/w log-uniform in [``min_aspect``, ``max_aspect``] (default
  1/min_aspect), ``h = round(sqrt(area * aspect))``, ``w = round(sqrt(area / aspect))``; a box is
  kept only when ``h < H`` and ``w < W`` (strictly), placed uniformly;
- fill: ``pixel`` a fresh standard normal per pixel and channel, ``rand`` one normal per channel,
  ``const`` zeros (in normalised units, i.e. noise around the dataset mean).

Randomness comes from an explicit ``np.random.Generator`` (per record in the input pipeline).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

MODES = ("pixel", "rand", "const")


@dataclasses.dataclass(frozen=True)
class RandomErasing:
    """timm's RandomErasing; ``erasing(image float32[H, W, C], rng) -> float32[H, W, C]``.

    Defaults are MAE's fine-tuning settings (probability 0.25, pixel mode, one box).
    """

    probability: float = 0.25
    mode: str = "pixel"
    min_area: float = 0.02
    max_area: float = 1 / 3
    min_aspect: float = 0.3
    max_aspect: float | None = None
    min_count: int = 1
    max_count: int | None = None
    attempts: int = 10

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"RandomErasing mode {self.mode!r}; valid: {', '.join(MODES)}.")
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError(f"RandomErasing probability must be in [0, 1]: {self.probability}.")
        if not 0.0 < self.min_area <= self.max_area <= 1.0:
            raise ValueError(
                f"need 0 < min_area <= max_area <= 1: {self.min_area}, {self.max_area}."
            )
        if self.min_aspect <= 0 or self.min_count < 1 or self.counts[1] < self.min_count:
            raise ValueError("RandomErasing needs min_aspect > 0 and 1 <= min_count <= max_count.")

    @property
    def counts(self) -> tuple[int, int]:
        return self.min_count, self.max_count or self.min_count

    @property
    def log_aspect(self) -> tuple[float, float]:
        high = self.max_aspect or 1 / self.min_aspect
        return math.log(self.min_aspect), math.log(high)

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A copy of ``image`` (float ``[H, W, C]``) with the erased boxes filled (or ``image``
        itself when not erased)."""
        if image.ndim != 3:
            raise ValueError(f"RandomErasing expects [H, W, C], got shape {image.shape}.")
        if rng.random() > self.probability:
            return image
        height, width, channels = image.shape
        out = np.array(image, copy=True)
        low, high = self.counts
        count = low if low == high else int(rng.integers(low, high + 1))
        for _ in range(count):
            for _ in range(self.attempts):
                area = rng.uniform(self.min_area, self.max_area) * height * width / count
                aspect = math.exp(rng.uniform(*self.log_aspect))
                h = round(math.sqrt(area * aspect))
                w = round(math.sqrt(area / aspect))
                if w < width and h < height:
                    top = int(rng.integers(0, height - h + 1))
                    left = int(rng.integers(0, width - w + 1))
                    out[top : top + h, left : left + w] = self._fill(rng, h, w, channels, out.dtype)
                    break
        return out

    def _fill(self, rng: np.random.Generator, h: int, w: int, c: int, dtype) -> np.ndarray:
        if self.mode == "pixel":
            return rng.standard_normal((h, w, c)).astype(dtype)
        if self.mode == "rand":
            return np.broadcast_to(rng.standard_normal((1, 1, c)).astype(dtype), (h, w, c))
        return np.zeros((h, w, c), dtype)
