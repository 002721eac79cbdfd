"""Image-folder source for users' own data, decoded with Pillow.

Layouts:
  * labelled: ``root/<class_name>/**/<image>``; labels are the indices of the sorted class-folder
    names (as torchvision's ``ImageFolder``). Loose image files directly in ``root`` are ignored.
  * unlabelled: ``root/<image>`` (a flat folder with no class subfolders); every label is -1.

Corrupt-image policy (no crash, no silent hole):
  * ``source[i]`` tries to decode file ``i``; if that fails it records the path and the error in
    ``source.skipped``, logs one warning per bad file, and returns the next readable record
    (``i+1``, ``i+2``, ... wrapping around). The replacement is a deterministic function of the
    file list, so training stays reproducible and resumable; the cost is that a neighbour is seen
    twice in that epoch. If no file is readable, ``RuntimeError``.
  * ``validate=True`` (or calling ``source.validate()``) decodes every file once up front and drops
    the bad ones from the index, so nothing is duplicated and the skip count is exact before
    training starts; this is the recommended mode with ``worker_count > 0``, because read-time
    skips happen in grain's worker processes and are recorded (and logged) there, not in the
    parent's ``source.skipped``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS


def _decode(path: str, channels: int) -> np.ndarray:
    """Decode ``path`` to ``uint8[H, W, channels]`` (raises on unreadable or corrupt files)."""
    with Image.open(path) as im:
        im = im.convert("RGB" if channels == 3 else "L")
        arr = np.asarray(im, dtype=np.uint8)
    return arr if channels == 3 else arr[..., None]


class FolderSource:
    """Random-access source over an image folder.

    Args:
        root: the folder (see the module docstring for layouts).
        channels: 3 (RGB) or 1 (grey); every image is converted.
        validate: decode every file at construction and drop unreadable ones (see policy above).

    ``source[i]`` returns ``{"image": uint8[H, W, channels], "label": int}``; ``H, W`` vary per
    image (the pipeline's crop/resize makes them uniform). Attributes: ``paths`` (list of str),
    ``labels`` (``int64[N]``), ``class_names`` (empty when unlabelled), ``skipped`` (dict of bad
    path -> error message) and ``num_skipped``.
    """

    def __init__(
        self, root: str | os.PathLike, channels: Literal[1, 3] = 3, validate: bool = False
    ):
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3: {channels}")
        root_path = Path(root)
        if not root_path.is_dir():
            raise FileNotFoundError(f"image folder not found: {root_path}")
        self.root = root_path
        self.channels = channels
        class_dirs = sorted(p for p in root_path.iterdir() if p.is_dir())
        paths: list[str] = []
        labels: list[int] = []
        if class_dirs:
            self.class_names: list[str] = [p.name for p in class_dirs]
            for label, d in enumerate(class_dirs):
                files = sorted(p for p in d.rglob("*") if _is_image(p))
                paths += [str(p) for p in files]
                labels += [label] * len(files)
        else:
            self.class_names = []
            files = sorted(p for p in root_path.iterdir() if _is_image(p))
            paths = [str(p) for p in files]
            labels = [-1] * len(files)
        if not paths:
            raise FileNotFoundError(
                f"no images ({', '.join(sorted(IMAGE_EXTENSIONS))}) found under {root_path}"
            )
        self.paths = paths
        self.labels = np.asarray(labels, dtype=np.int64)
        self.skipped: dict[str, str] = {}
        if validate:
            self.validate()

    @property
    def num_skipped(self) -> int:
        """How many distinct unreadable files this process has met (or ``validate()`` dropped)."""
        return len(self.skipped)

    def validate(self) -> list[str]:
        """Decode every file; drop unreadable ones from the index. Returns the newly bad paths."""
        good_paths, good_labels, bad = [], [], []
        for path, label in zip(self.paths, self.labels, strict=True):
            try:
                _decode(path, self.channels)
            except Exception as e:  # any decode failure: PIL raises many types
                self._record_bad(path, e)
                bad.append(path)
            else:
                good_paths.append(path)
                good_labels.append(label)
        if not good_paths:
            raise RuntimeError(f"no readable images under {self.root} ({len(bad)} unreadable)")
        self.paths = good_paths
        self.labels = np.asarray(good_labels, dtype=np.int64)
        return bad

    def _record_bad(self, path: str, error: BaseException) -> None:
        if path not in self.skipped:
            self.skipped[path] = f"{type(error).__name__}: {error}"
            logger.warning("skipping unreadable image %s (%s)", path, self.skipped[path])

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict[str, np.ndarray | int]:
        n = len(self.paths)
        index = int(index)
        if not 0 <= index < n:
            raise IndexError(f"index {index} out of range for {n} images")
        for k in range(n):
            i = (index + k) % n
            path = self.paths[i]
            if path in self.skipped:
                continue
            try:
                image = _decode(path, self.channels)
            except Exception as e:  # any decode failure: PIL raises many types
                self._record_bad(path, e)
                continue
            return {"image": image, "label": int(self.labels[i])}
        raise RuntimeError(f"no readable images under {self.root} ({n} unreadable)")

    def __repr__(self) -> str:
        return (
            f"FolderSource(root={str(self.root)!r}, n={len(self)}, "
            f"classes={len(self.class_names)}, skipped={self.num_skipped})"
        )
