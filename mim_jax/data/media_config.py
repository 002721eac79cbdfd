"""The ``video_folder`` and ``audio_folder`` entries of :data:`mim_jax.data.sources.SOURCES`.

Each builder takes the run config's ``data`` section, a split and the model's input geometry:

- ``video_folder`` (:class:`VideoFolderSource`): ``num_frames`` frames (``config.model.num_frames``)
  at ``image_size`` x ``image_size`` (an int or a square pair), 3 channels. Optional data fields:
  ``frame_stride`` (4; VideoMAE's SSv2 recipe uses 2) and ``flip_prob`` (0.5).
- ``audio_folder`` (:class:`AudioFolderSource`): ``image_size = (T, F)`` gives the fbank frames
  and mel bins, 1 channel, no ``num_frames``. Optional: ``fbank_mean`` / ``fbank_std``
  (AudioMAE's AudioSet values).

Both take ``cache_decoded`` (False): keep each file's decoded frames / spectrogram in memory after
its first read (:mod:`mim_jax.data.media_source`), for small sets read over many epochs.

``config.data.path`` is a folder or a list file; :func:`media_split_path` picks a split's files.
"""

from __future__ import annotations

import os
from typing import Any

from mim_jax.data.audio_folder import AudioFolderSource
from mim_jax.data.fbank import AUDIOSET_MEAN, AUDIOSET_STD
from mim_jax.data.media_index import LIST_SUFFIXES
from mim_jax.data.media_source import MediaSource
from mim_jax.data.video_folder import VideoFolderSource

MEDIA_SOURCES = ("video_folder", "audio_folder")
_SPLIT_NAMES = {"val": ("val", "validation"), "validation": ("validation", "val")}


def media_split_path(path: str, split: str) -> str:
    """Where a split's files are listed.

    A folder: ``train`` is ``<path>/train`` when that folder exists, else ``<path>``; another
    split is ``<path>/<split>`` (``val`` also ``<path>/validation``), or a list file
    ``<path>/<split>.csv`` (``.txt``, ``.tsv``) as VideoMAE's Kinetics/SSv2 annotation folders
    hold them. A list file (``.../train.csv``): ``train`` is the file itself, another split the
    sibling whose name has the split in place of ``train`` (``.../val.csv``).

    Raises:
      ValueError: a split with no such folder or list, naming the paths tried.
    """
    if split == "train":
        nested = os.path.join(path, "train")
        return nested if os.path.isdir(nested) else path
    names = _SPLIT_NAMES.get(split, (split,))
    if os.path.isdir(path):
        tried = [os.path.join(path, n) for n in names]
        tried += [os.path.join(path, n + s) for n in names for s in sorted(LIST_SUFFIXES)]
    else:
        folder, base = os.path.split(path)
        tried = [os.path.join(folder, base.replace("train", n)) for n in names if "train" in base]
    for candidate in tried:
        if os.path.exists(candidate):
            return candidate
    raise ValueError(
        f"no {split} split for config.data.path={path!r} (tried {', '.join(tried) or 'nothing'}):"
        " give a folder holding train/ and val/ (or train.csv and val.csv), or a train list "
        "file whose val list sits beside it with 'train' replaced by 'val' in its name."
    )


def _path(data: Any, kind: str) -> str:
    if not data.get("path"):
        raise ValueError(f"config.data.source={kind!r} needs config.data.path.")
    return str(data.path)


def video_folder(
    data: Any, split: str, image_size: Any, channels: int, *, num_frames: int | None = None, **_
) -> MediaSource:
    """A :class:`VideoFolderSource` of ``split`` (see the module docstring).

    Raises:
      ValueError: no path, no ``num_frames``, channels other than 3 or a non-square size.
    """
    path = _path(data, "video_folder")
    if num_frames is None or channels != 3:
        raise ValueError(
            "a video_folder source needs config.model.num_frames and config.model.channels=3 "
            f"(got num_frames={num_frames}, channels={channels})."
        )
    if not isinstance(image_size, int) and len(set(image_size)) != 1:
        raise ValueError(f"video frames are square; config.model.image_size={image_size}.")
    return VideoFolderSource(
        media_split_path(path, split),
        image_size=image_size if isinstance(image_size, int) else int(image_size[0]),
        num_frames=int(num_frames),
        stride=int(data.get("frame_stride") or 4),
        flip_prob=float(data.get("flip_prob", 0.5)),
        cache_decoded=bool(data.get("cache_decoded", False)),
    )


def audio_folder(
    data: Any, split: str, image_size: Any, channels: int, *, num_frames: int | None = None, **_
) -> MediaSource:
    """An :class:`AudioFolderSource` of ``split`` (see the module docstring).

    Raises:
      ValueError: no path, or not ``image_size=(frames, mel_bins)`` with one channel.
    """
    path = _path(data, "audio_folder")
    if num_frames is not None or channels != 1 or isinstance(image_size, int):
        raise ValueError(
            "an audio_folder source needs config.model.image_size=(frames, mel_bins), channels=1 "
            f"and no num_frames (got image_size={image_size}, channels={channels}, "
            f"num_frames={num_frames})."
        )
    mean, std = data.get("fbank_mean"), data.get("fbank_std")
    return AudioFolderSource(
        media_split_path(path, split),
        target_length=int(image_size[0]),
        num_mel_bins=int(image_size[1]),
        mean=float(AUDIOSET_MEAN if mean is None else mean),
        std=float(AUDIOSET_STD if std is None else std),
        cache_decoded=bool(data.get("cache_decoded", False)),
    )
