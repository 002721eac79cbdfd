"""One place that turns a run config's ``config.data`` into a random-access source.

Training, evaluation, the periodic kNN evaluator and fine-tuning all call :func:`build_source`,
so a data source is added (or changed) here once:

- ``digits``: the bundled scikit-learn digits; splits ``train`` (1437), ``test`` (360), ``all``.
- ``folder``: ``config.data.path``. Split ``train`` reads ``<path>/train`` when that folder
  exists, else ``<path>`` itself; ``val`` / ``validation`` / ``test`` read ``<path>/<split>``
  (``val`` also accepts ``<path>/validation``). Class subfolders are the labels.
- ``tfds``: ``config.data.name`` with the split string as given (``val`` means ``validation``);
  prepared data only, never downloaded.
- ``synthetic``: deterministic noise (benchmarks, smoke tests): ``train`` has
  ``config.data.num_examples`` records (1024 when unset), any other split a quarter of that
  drawn with another seed; labels are random.
- ``video_folder`` / ``audio_folder``: VideoMAE clips and AudioMAE fbanks decoded from the files
  under ``config.data.path`` (a folder of class folders, or a ``<file> <label>`` list); the
  splits are found as for ``folder``, or as sibling list files (``train.csv`` / ``val.csv``), see
  :mod:`mim_jax.data.media_config`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from mim_jax.data.digits import DigitsSource
from mim_jax.data.folder import FolderSource, read_plan
from mim_jax.data.media_config import audio_folder, video_folder
from mim_jax.data.pipeline import RandomAccessSource
from mim_jax.data.synthetic import SyntheticSource
from mim_jax.data.tfds_source import TfdsSource

VAL_SPLITS = ("val", "validation", "test")


def square_side(image_size: Any) -> int:
    """The side ``S`` of a square input size (an int, or an (S, S) pair).

    Raises:
      ValueError: a non-square size (the image pipeline makes square crops).
    """
    if isinstance(image_size, int):
        return image_size
    sizes = tuple(int(s) for s in image_size)
    if len(set(sizes)) != 1:
        raise ValueError(
            f"the image pipeline makes square images; config.model.image_size={image_size} is "
            "not square (use a source that yields that shape, or a square size)."
        )
    return sizes[0]


def _digits(data: Any, split: str, image_size: int, channels: int, **_) -> RandomAccessSource:
    split = "test" if split in ("val", "validation") else split
    return DigitsSource(image_size=image_size, channels=channels, split=split)


def _synthetic(data: Any, split: str, image_size: int, channels: int, **_) -> RandomAccessSource:
    n = int(data.get("num_examples") or 1024)
    if split == "train":
        return SyntheticSource(n, image_size=image_size, channels=channels, seed=0)
    return SyntheticSource(max(n // 4, 1), image_size=image_size, channels=channels, seed=1)


def folder_split_path(root: str, split: str) -> str:
    """The folder a split of an image-folder dataset is read from (see the module docstring).

    Raises:
      ValueError: a validation split with no such folder under ``root``.
    """
    if split == "train":
        nested = os.path.join(root, "train")
        return nested if os.path.isdir(nested) else root
    names = ("val", "validation") if split in ("val", "validation") else (split,)
    for name in names:
        candidate = os.path.join(root, name)
        if os.path.isdir(candidate):
            return candidate
    raise ValueError(
        f"no {split} folder under {root}: put the images in {root}/train and {root}/val "
        "(class subfolders in each), or name the folder explicitly."
    )


def _folder(data: Any, split: str, image_size: int, channels: int, **_) -> RandomAccessSource:
    if not data.get("path"):
        raise ValueError("config.data.source='folder' needs config.data.path.")
    budget = int(data.get("memory_mb") or 8192) * 2**20
    return FolderSource(
        folder_split_path(str(data.path), split),
        channels=channels,
        max_image_bytes=read_plan(budget).max_image_bytes,  # the pipeline's default threads/buffer
    )


def _tfds(data: Any, split: str, image_size: int, channels: int, **kw) -> RandomAccessSource:
    split = "validation" if split == "val" else split
    return TfdsSource(data.name, split=split, data_dir=kw.get("data_dir"))


#: name -> builder(data_config, split, image_size, channels, data_dir=..., num_frames=...).
SOURCES: dict[str, Callable[..., RandomAccessSource]] = {
    "digits": _digits,
    "folder": _folder,
    "tfds": _tfds,
    "synthetic": _synthetic,
    "video_folder": video_folder,
    "audio_folder": audio_folder,
}


def build_source(
    data: Any,
    split: str | None = None,
    *,
    image_size: Any,
    channels: int = 3,
    data_dir: str | None = None,
    num_frames: int | None = None,
) -> RandomAccessSource:
    """The source ``data.source`` names, for ``split`` (default: ``data.split``).

    Args:
      data: a run config's ``config.data`` (``source``, ``name``, ``path``, ``split``,
        ``num_examples``).
      split: ``train``, ``val`` (each source's validation split) or a source's own split name.
      image_size: the model's input size: an int or a square pair (digits and synthetic make
        images at that size; video_folder crops clips to it), or audio_folder's (frames, mel
        bins).
      channels: 1 or 3.
      data_dir: TFDS data directory.
      num_frames: frames per clip (``config.model.num_frames``) for video_folder; None otherwise.

    Raises:
      ValueError: an unknown source (listing the valid ones) or a split it lacks.
    """
    name = data.source
    if name not in SOURCES:
        raise ValueError(f"config.data.source={name!r} is not one of {', '.join(SOURCES)}.")
    split = split or data.get("split") or "train"
    side = square_side(image_size) if name in ("digits", "synthetic") else image_size
    return SOURCES[name](data, split, side, int(channels), data_dir=data_dir, num_frames=num_frames)
