"""The scikit-learn digits as an offline, random-access image source (no download).

1797 grey 8x8 images with values 0..16 (``sklearn.datasets.load_digits``), upsampled to
``image_size`` and scaled to uint8 once, at construction (1797 x 32 x 32 x 3 bytes is ~5.5 MB).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from PIL import Image

_RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "nearest": Image.Resampling.NEAREST}
#: Records ``[0, TRAIN_SIZE)`` form the "train" split, the rest the "test" split (about 80/20).
TRAIN_SIZE = 1437


class DigitsSource:
    """Random-access source over the bundled scikit-learn digits.

    Args:
        image_size: output side length ``S``; the 8x8 images are upsampled to ``S x S``.
        interpolation: ``"bilinear"`` or ``"nearest"``.
        channels: 1 (grey) or 3 (the grey channel replicated).
        split: ``"all"`` (1797), ``"train"`` (first 1437) or ``"test"`` (last 360).

    ``source[i]`` returns ``{"image": uint8[S, S, channels], "label": int}`` (label in 0..9).
    """

    def __init__(
        self,
        image_size: int = 32,
        interpolation: Literal["bilinear", "nearest"] = "bilinear",
        channels: Literal[1, 3] = 3,
        split: Literal["all", "train", "test"] = "all",
    ) -> None:
        from sklearn.datasets import load_digits  # lazy: sklearn import is slow-ish

        if interpolation not in _RESAMPLE:
            raise ValueError(f"interpolation must be one of {sorted(_RESAMPLE)}: {interpolation!r}")
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3: {channels}")
        data = load_digits()
        images = data.images.astype(np.float32) * np.float32(255.0 / 16.0)  # [N, 8, 8] in 0..255
        labels = data.target.astype(np.int64)
        sl = {"all": slice(None), "train": slice(0, TRAIN_SIZE), "test": slice(TRAIN_SIZE, None)}
        if split not in sl:
            raise ValueError(f"split must be one of {sorted(sl)}: {split!r}")
        images, labels = images[sl[split]], labels[sl[split]]
        resample = _RESAMPLE[interpolation]
        up = np.stack(
            [
                np.asarray(Image.fromarray(im).resize((image_size, image_size), resample))
                for im in images
            ]
        )
        up = np.clip(np.rint(up), 0, 255).astype(np.uint8)[..., None]  # [N, S, S, 1]
        self.images: np.ndarray = np.repeat(up, channels, axis=-1) if channels == 3 else up
        self.labels: np.ndarray = labels
        self.num_classes = 10

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, np.ndarray | int]:
        index = int(index)
        return {"image": self.images[index], "label": int(self.labels[index])}

    def __repr__(self) -> str:
        return f"DigitsSource(n={len(self)}, image_shape={self.images.shape[1:]})"
