"""File listing with labels for the video and audio sources: class folders or a CSV list.

Layouts (``path`` is a folder or a list file):
  * a folder with class sub-folders ``path/<class_name>/**/<file>``: labels are the indices of the
    sorted class names (as torchvision's ``ImageFolder`` and the image ``FolderSource``);
  * a flat folder ``path/<file>``: unlabelled, every label is -1;
  * a list file (``.csv``, ``.txt``, ``.tsv``): one ``<file> <label>`` per line, separated by a
    comma, a tab or spaces, as VideoMAE's Kinetics-400 / Something-Something V2 annotation lists
    (``train.csv``: ``path label``) are laid out. File paths are relative to the list's folder
    (or absolute). Labels are integers (kept as given) or class names (mapped to the indices of the
    sorted distinct names). A first line whose label field is ``label`` is a header and skipped; a
    line with only a path is unlabelled (-1).
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Collection
from pathlib import Path

import numpy as np

LIST_SUFFIXES = frozenset({".csv", ".txt", ".tsv"})


@dataclasses.dataclass(frozen=True)
class MediaIndex:
    """``paths`` (list of str), ``labels`` (``int64[N]``, -1 = unlabelled) and ``class_names``
    (empty for integer labels or unlabelled data)."""

    paths: list[str]
    labels: np.ndarray
    class_names: list[str]


def _has_suffix(path: Path, extensions: Collection[str]) -> bool:
    return path.is_file() and path.suffix.lower() in extensions


def index_media(path: str | os.PathLike, extensions: Collection[str], what: str) -> MediaIndex:
    """Lists the files of ``path`` (see the module docstring) with their labels.

    Args:
      path: a folder or a list file.
      extensions: accepted lower-case suffixes with the dot (folder layouts only; a list names
        its files explicitly).
      what: "video" / "audio", for error messages.

    Raises:
      FileNotFoundError: ``path`` is missing, or holds no files with ``extensions``.
      ValueError: a malformed list line (says which).
    """
    root = Path(path)
    if root.is_file() and root.suffix.lower() in LIST_SUFFIXES:
        return _index_list(root, what)
    if not root.is_dir():
        raise FileNotFoundError(
            f"{what} data not found: {root} (give a folder, or a .csv/.txt list of "
            f"'<file> <label>' lines)"
        )
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir())
    paths: list[str] = []
    labels: list[int] = []
    names: list[str] = []
    if class_dirs:
        names = [p.name for p in class_dirs]
        for label, d in enumerate(class_dirs):
            files = sorted(p for p in d.rglob("*") if _has_suffix(p, extensions))
            paths += [str(p) for p in files]
            labels += [label] * len(files)
    else:
        files = sorted(p for p in root.iterdir() if _has_suffix(p, extensions))
        paths = [str(p) for p in files]
        labels = [-1] * len(files)
    if not paths:
        raise FileNotFoundError(f"no {what} files ({', '.join(sorted(extensions))}) under {root}")
    return MediaIndex(paths, np.asarray(labels, np.int64), names)


def _index_list(list_file: Path, what: str) -> MediaIndex:
    rows: list[tuple[str, str | None]] = []
    for number, line in enumerate(list_file.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = (
            [f.strip() for f in re.split(r"[,\t]", line)]
            if re.search(r"[,\t]", line)
            else (line.rsplit(None, 1))
        )
        if len(fields) > 2:
            raise ValueError(
                f"{list_file}:{number}: expected '<file>,<label>' (2 fields), got {len(fields)}"
            )
        if not rows and len(fields) == 2 and fields[1].lower() == "label":
            continue  # header
        rows.append((fields[0], fields[1] if len(fields) == 2 and fields[1] else None))
    if not rows:
        raise FileNotFoundError(f"the {what} list {list_file} names no files")
    base = list_file.parent
    paths = [p if os.path.isabs(p) else str(base / p) for p, _ in rows]
    raw = [label for _, label in rows]
    given = [x for x in raw if x is not None]
    if all(re.fullmatch(r"-?\d+", x) for x in given):
        return MediaIndex(paths, np.asarray([int(x) if x else -1 for x in raw], np.int64), [])
    names = sorted(set(given))
    lookup = {name: i for i, name in enumerate(names)}
    labels = np.asarray([-1 if x is None else lookup[x] for x in raw], np.int64)
    return MediaIndex(paths, labels, names)
