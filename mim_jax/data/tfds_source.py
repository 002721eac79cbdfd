"""Random-access wrapper over a prepared TFDS dataset (``tfds.data_source``).

The dataset must already be prepared in a random-access format (``array_record`` or ``parquet``)
under ``data_dir``, e.g. once, on a machine with network access::

    tfds.builder("imagenet2012", data_dir=...).download_and_prepare(file_format="array_record")

This module never downloads. ``tensorflow_datasets`` is imported lazily, at construction.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np


class TfdsSource:
    """``source[i]`` -> ``{"image": uint8[H, W, C], "label": int}`` from a prepared TFDS split.

    Args:
        name: TFDS name, optionally with config/version (``"imagenet2012"``, ``"mnist:3.0.1"``).
        split: TFDS split string (``"train"``, ``"validation[:10%]"``, ...).
        data_dir: TFDS data directory (default: TFDS's own, ``$TFDS_DATA_DIR`` or
            ``~/tensorflow_datasets``).
        image_key / label_key: feature names; a missing label feature gives label -1.

    Raises:
        FileNotFoundError: the dataset/split is not prepared under ``data_dir`` in a random-access
            format (the TFDS error is chained as the cause).
    """

    def __init__(
        self,
        name: str,
        split: str = "train",
        data_dir: str | os.PathLike | None = None,
        image_key: str = "image",
        label_key: str = "label",
    ) -> None:
        try:
            import tensorflow_datasets as tfds
        except ImportError as e:  # pragma: no cover - tfds is an install requirement
            raise ImportError("TfdsSource needs `pip install tensorflow-datasets`") from e
        self.name, self.split, self.data_dir = name, split, data_dir
        self.image_key, self.label_key = image_key, label_key
        try:
            self._source = tfds.data_source(name, split=split, data_dir=data_dir, download=False)
        except Exception as e:  # tfds raises several types (DatasetNotFound, NotImplemented, ...)
            raise FileNotFoundError(
                f"TFDS dataset {name!r} split {split!r} is not prepared for random access under "
                f"data_dir={data_dir or '<tfds default>'}. Prepare it where there is network "
                f"access with tfds.builder({name!r}, data_dir=...).download_and_prepare("
                f"file_format='array_record') and copy it here. ({type(e).__name__}: {e})"
            ) from e

    def __len__(self) -> int:
        return len(self._source)

    def __getitem__(self, index: int) -> dict[str, Any]:
        record = self._source[int(index)]
        image = np.asarray(record[self.image_key], dtype=np.uint8)
        if image.ndim == 2:
            image = image[..., None]
        label = int(record[self.label_key]) if self.label_key in record else -1
        return {"image": image, "label": label}

    def __repr__(self) -> str:
        return f"TfdsSource(name={self.name!r}, split={self.split!r}, n={len(self)})"
