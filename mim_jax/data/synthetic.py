"""Deterministic random images for benchmarks and tests (nothing is stored)."""

from __future__ import annotations

import numpy as np


class SyntheticSource:
    """Random-access source of uniform-noise images; record ``i`` depends only on ``(seed, i)``.

    ``source[i]`` returns ``{"image": uint8[image_size, image_size, channels], "label": int}``
    with the label in ``0..num_classes-1``.
    """

    def __init__(
        self,
        num_records: int = 1024,
        image_size: int = 32,
        channels: int = 3,
        num_classes: int = 10,
        seed: int = 0,
    ) -> None:
        if num_records <= 0:
            raise ValueError(f"num_records must be positive: {num_records}")
        self.num_records = num_records
        self.image_size = image_size
        self.channels = channels
        self.num_classes = num_classes
        self.seed = seed

    def __len__(self) -> int:
        return self.num_records

    def __getitem__(self, index: int) -> dict[str, np.ndarray | int]:
        index = int(index)
        if not 0 <= index < self.num_records:
            raise IndexError(f"index {index} out of range for {self.num_records} records")
        rng = np.random.default_rng((self.seed, index))
        shape = (self.image_size, self.image_size, self.channels)
        image = rng.integers(0, 256, size=shape, dtype=np.uint8)
        return {"image": image, "label": int(rng.integers(0, self.num_classes))}

    def __repr__(self) -> str:
        return (
            f"SyntheticSource(n={self.num_records}, size={self.image_size}, "
            f"channels={self.channels}, seed={self.seed})"
        )
