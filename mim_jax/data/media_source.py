"""What the video and audio sources share: file index, skip policy and grain wiring.

Bad-file policy (the image ``FolderSource``'s): ``load(i, rng)`` reads file ``i``; if that fails it
records the path and error in ``skipped`` (one warning per bad file) and reads the next readable
file (``i+1``, ``i+2``, ... wrapping around), a deterministic replacement, so training stays
reproducible and resumable. ``validate=True`` reads every file once up front and drops the bad
ones, so the count is exact before training (recommended with grain workers, whose read-time skips
are recorded in the worker processes). No readable file at all raises ``RuntimeError``.

Grain wiring: decoding happens in the pipeline's transform (so in grain's worker processes when
``worker_count > 0``), with grain's per-record generator drawing the clip's random parts. The
loader reads ``{"index": i}`` records from :class:`IndexRecords`; :class:`LoadRecord` turns them
into ``{"image": float32[...], "label": int32[]}`` with ``source.load``. Indices and generators are
functions of the seed and the record's position, so the iterator state resumes exactly.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Collection
from typing import Any

import grain
import numpy as np

from mim_jax.data.media_index import index_media
from mim_jax.data.readable import first_readable

logger = logging.getLogger(__name__)


class MediaSource:
    """Base of ``VideoFolderSource`` and ``AudioFolderSource``: subclasses define ``what``,
    ``extensions`` and ``read(path, rng) -> float32 array``.

    ``source[i]`` is the deterministic (evaluation) view ``{"image": float32[...], "label": int}``;
    ``load(i, rng)`` the training view. Attributes: ``paths``, ``labels`` (``int64[N]``),
    ``class_names``, ``skipped`` (bad path -> error) and ``num_skipped``. With
    ``cache_decoded``, subclasses read files through :meth:`decoded`.
    """

    what = "media"
    extensions: Collection[str] = ()

    def __init__(
        self, path: str | os.PathLike, validate: bool = False, cache_decoded: bool = False
    ):
        index = index_media(path, self.extensions, self.what)
        self.root = str(path)
        self.cache_decoded = bool(cache_decoded)
        self._decoded: dict[str, np.ndarray] = {}
        self.paths = index.paths
        self.labels = index.labels
        self.class_names = index.class_names
        self.skipped: dict[str, str] = {}
        if validate:
            self.validate()

    def read(self, path: str, rng: np.random.Generator | None) -> np.ndarray:
        """Reads one file into the model's input; raises on an unreadable file."""
        raise NotImplementedError

    def decoded(self, path: str, decode: Callable[[str], np.ndarray]) -> np.ndarray:
        """``decode(path)``; with ``cache_decoded`` the array is kept and returned again on later
        calls (read-only: callers index or copy it, never write into it)."""
        if not self.cache_decoded:
            return decode(path)
        if path not in self._decoded:
            array = decode(path)
            array.setflags(write=False)
            self._decoded[path] = array
        return self._decoded[path]

    @property
    def num_classes(self) -> int | None:
        """Class count (folder names, or the largest integer label + 1); None if unlabelled."""
        if self.class_names:
            return len(self.class_names)
        top = int(self.labels.max(initial=-1))
        return top + 1 if top >= 0 else None

    @property
    def num_skipped(self) -> int:
        """How many distinct unreadable files this process has met (or ``validate()`` dropped)."""
        return len(self.skipped)

    def validate(self) -> list[str]:
        """Reads every file once; drops unreadable ones from the index. Returns the bad paths."""
        good, bad = [], []
        for i, path in enumerate(self.paths):
            try:
                self.read(path, None)
            except Exception as e:  # decoders raise many types
                self._record_bad(path, e)
                bad.append(path)
            else:
                good.append(i)
        if not good:
            raise RuntimeError(f"no readable {self.what} files in {self.root} ({len(bad)} bad)")
        self.paths = [self.paths[i] for i in good]
        self.labels = self.labels[good]
        return bad

    def _record_bad(self, path: str, error: BaseException) -> None:
        if path not in self.skipped:
            self.skipped[path] = f"{type(error).__name__}: {error}"
            logger.warning("skipping unreadable %s %s (%s)", self.what, path, self.skipped[path])

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, index: int, rng: np.random.Generator | None) -> dict[str, Any]:
        """``{"image": float32[...], "label": int}`` of file ``index`` (or the next readable)."""
        i, image = first_readable(
            self.paths,
            index,
            lambda path: self.read(path, rng),
            self.skipped,
            self._record_bad,
            f"{self.what} files in {self.root}",
        )
        return {"image": image, "label": int(self.labels[i])}

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.load(index, None)

    def grain_parts(self, augment: bool) -> tuple[IndexRecords, LoadRecord]:
        """The loader's data source and transform (see the module docstring)."""
        return IndexRecords(len(self)), LoadRecord(self, augment)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(root={self.root!r}, n={len(self)}, "
            f"classes={len(self.class_names)}, skipped={self.num_skipped})"
        )


@dataclasses.dataclass(frozen=True)
class IndexRecords:
    """Random-access records ``{"index": int64[]}`` for ``0..num_records-1``."""

    num_records: int

    def __len__(self) -> int:
        return self.num_records

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        return {"index": np.int64(index)}


@dataclasses.dataclass(frozen=True)
class LoadRecord(grain.transforms.RandomMap):
    """grain RandomMap ``{"index"} -> {"image": float32[...], "label": int32[]}`` via
    ``source.load`` (training view with the record's generator, or the evaluation view)."""

    source: MediaSource
    augment: bool = True

    def random_map(self, element: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        record = self.source.load(int(element["index"]), rng if self.augment else None)
        return {"image": record["image"], "label": np.int32(record["label"])}
