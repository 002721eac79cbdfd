"""Image-folder source for users' own data, decoded with Pillow.

Layouts:
  * labelled: ``root/<class_name>/**/<image>``; labels are the indices of the sorted class-folder
    names (as torchvision's ``ImageFolder``). Loose image files directly in ``root`` are ignored.
  * unlabelled: ``root/<image>`` (a flat folder with no class subfolders); every label is -1.

Hidden files and folders (a name starting with ``.``, e.g. ``.cache/``, ``.DS_Store``) are ignored
at every level. Images are decoded to 8 bits per channel; 16-bit and 32-bit greyscale images
(``I;16``, ``I``) are scaled from their full range (65535), float images (``F``) from [0, 1],
not clipped.

Memory: ``max_image_bytes`` caps what decoding one image may take (width x height x bytes per
pixel, read from the header before decoding). An image over the cap is skipped and reported like
an unreadable file; :func:`read_plan` derives the cap from a memory budget and the number of
images the loader keeps in flight.

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

import dataclasses
import logging
import os
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from mim_jax.data.readable import first_readable

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})

# Images grain decodes at once (reader threads) and keeps read ahead: with its defaults (16, 500)
# 500 full-size decoded photos could be in memory. See read_plan.
READ_THREADS = 16
READ_BUFFER = 16


@dataclasses.dataclass(frozen=True)
class ReadPlan:
    """How many images the loader decodes at once and keeps ahead, and the cap per image."""

    threads: int
    buffer: int
    max_image_bytes: int


def read_plan(
    memory_bytes: int, threads: int = READ_THREADS, buffer: int = READ_BUFFER
) -> ReadPlan:
    """Splits a memory budget for decoded images over the images the loader has in flight.

    At most ``threads + buffer`` decoded images exist at once (grain's reader threads and its
    read-ahead buffer), so each may take ``memory_bytes / (threads + buffer)`` to decode (its
    own mode plus the 8-bit copy, see ``_decoded_bytes``): whatever the image sizes, decoded
    images then stay within ``memory_bytes``. An image over its share is skipped.
    """
    if memory_bytes <= 0 or threads < 1 or buffer < 1:
        raise ValueError(f"read_plan({memory_bytes}, {threads}, {buffer}): all must be positive.")
    per_image = memory_bytes // (threads + buffer)
    return ReadPlan(threads=threads, buffer=buffer, max_image_bytes=int(per_image))


class ImageTooLarge(ValueError):
    """An image whose decoded size is over the source's ``max_image_bytes``."""


def _visible(path: Path) -> bool:
    return not path.name.startswith(".")


def _is_image(path: Path, root: Path) -> bool:
    hidden = any(part.startswith(".") for part in path.relative_to(root).parts)
    return not hidden and path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS


def _decoded_bytes(im: Image.Image, channels: int) -> int:
    """Bytes of ``im`` decoded in its own mode plus its 8-bit ``channels`` copy (header only)."""
    width, height = im.size
    bits = {"1": 1, "I;16": 16, "I;16B": 16, "I;16L": 16, "I": 32, "F": 32}.get(im.mode, 8)
    own = width * height * max(1, len(im.getbands()) * bits // 8)
    return own + width * height * channels


def _to_uint8(im: Image.Image) -> Image.Image:
    """Greyscale deeper than 8 bits scaled (not clipped) to 8 bits; other modes unchanged."""
    if im.mode.startswith("I;16") or im.mode == "I":
        arr = np.asarray(im).astype(np.float64) / 65535.0
    elif im.mode == "F":
        arr = np.asarray(im, dtype=np.float64)
    else:
        return im
    return Image.fromarray(np.round(np.clip(arr, 0.0, 1.0) * 255.0).astype(np.uint8), "L")


def _decode(path: str, channels: int, max_bytes: int | None = None) -> np.ndarray:
    """Decode ``path`` to ``uint8[H, W, channels]`` (raises on unreadable or corrupt files, and
    :class:`ImageTooLarge` before decoding when it would take more than ``max_bytes``)."""
    with Image.open(path) as im:
        if max_bytes is not None:
            need = _decoded_bytes(im, channels)
            if need > max_bytes:
                raise ImageTooLarge(
                    f"{im.size[0]} x {im.size[1]} {im.mode} needs {need / 2**20:.0f} MiB to "
                    f"decode, over the {max_bytes / 2**20:.0f} MiB per image of the memory "
                    "budget (config.data.memory_mb)"
                )
        im = _to_uint8(im).convert("RGB" if channels == 3 else "L")
        arr = np.asarray(im, dtype=np.uint8)
    return arr if channels == 3 else arr[..., None]


class FolderSource:
    """Random-access source over an image folder.

    Args:
        root: the folder (see the module docstring for layouts).
        channels: 3 (RGB) or 1 (grey); every image is converted.
        validate: decode every file at construction and drop unreadable ones (see policy above).
        max_image_bytes: skip (and report) images that would take more to decode; None: no cap.

    ``source[i]`` returns ``{"image": uint8[H, W, channels], "label": int}``; ``H, W`` vary per
    image (the pipeline's crop/resize makes them uniform). Attributes: ``paths`` (list of str),
    ``labels`` (``int64[N]``), ``class_names`` (empty when unlabelled), ``skipped`` (dict of bad
    path -> error message) and ``num_skipped``.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        channels: Literal[1, 3] = 3,
        validate: bool = False,
        *,
        max_image_bytes: int | None = None,
    ):
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3: {channels}")
        root_path = Path(root)
        if not root_path.is_dir():
            raise FileNotFoundError(f"image folder not found: {root_path}")
        self.root = root_path
        self.channels = channels
        self.max_image_bytes = max_image_bytes
        class_dirs = sorted(p for p in root_path.iterdir() if p.is_dir() and _visible(p))
        paths: list[str] = []
        labels: list[int] = []
        if class_dirs:
            self.class_names: list[str] = [p.name for p in class_dirs]
            for label, d in enumerate(class_dirs):
                files = sorted(p for p in d.rglob("*") if _is_image(p, root_path))
                paths += [str(p) for p in files]
                labels += [label] * len(files)
        else:
            self.class_names = []
            files = sorted(p for p in root_path.iterdir() if _is_image(p, root_path))
            paths = [str(p) for p in files]
            labels = [-1] * len(files)
        if not paths:
            raise FileNotFoundError(
                f"no images ({', '.join(sorted(IMAGE_EXTENSIONS))}) found under {root_path}"
                + (f" (class folders: {', '.join(self.class_names[:5])})" if class_dirs else "")
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
                _decode(path, self.channels, self.max_image_bytes)
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
        i, image = first_readable(
            self.paths,
            index,
            lambda path: _decode(path, self.channels, self.max_image_bytes),
            self.skipped,
            self._record_bad,
            f"images under {self.root}",
        )
        return {"image": image, "label": int(self.labels[i])}

    def __repr__(self) -> str:
        # What identifies the data, nothing that changes while reading: grain stores this repr
        # with the iterator state and refuses a resume where it differs (a skip count here made
        # every folder with an unreadable image unresumable).
        return (
            f"FolderSource(root={str(self.root)!r}, n={len(self)}, classes={len(self.class_names)})"
        )
