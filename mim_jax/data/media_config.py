"""Building a video or audio source from a run config's ``data`` and ``model`` sections.

``config.data.source`` names the source: ``"video_folder"`` (:class:`VideoFolderSource`: frames
from ``model.num_frames``, side from ``model.image_size``) or ``"audio_folder"``
(:class:`AudioFolderSource`: ``model.image_size = (T, F)`` gives the fbank frames and mel bins).
``config.data.path`` is the folder or list file. Optional fields (read with their defaults when a
config does not set them): ``data.frame_stride`` (4; VideoMAE's SSv2 recipe uses 2),
``data.flip_prob`` (0.5), ``data.fbank_mean`` / ``data.fbank_std`` (AudioMAE's AudioSet values).
"""

from __future__ import annotations

from typing import Any

from mim_jax.data.audio_folder import AudioFolderSource
from mim_jax.data.fbank import AUDIOSET_MEAN, AUDIOSET_STD
from mim_jax.data.media_source import MediaSource
from mim_jax.data.video_folder import VideoFolderSource

MEDIA_SOURCES = ("video_folder", "audio_folder")


def media_source(config: Any, path: str | None = None) -> MediaSource:
    """The source ``config.data.source`` names, reading ``path`` (default ``config.data.path``).

    Raises:
      ValueError: not a media source, a missing path, or a model geometry the source cannot fill
        (a video source without ``model.num_frames``, an audio source with 3 channels).
    """
    kind, data, model = config.data.source, config.data, config.model
    path = path or data.path
    if kind not in MEDIA_SOURCES:
        raise ValueError(f"config.data.source={kind!r} is not one of {', '.join(MEDIA_SOURCES)}")
    if not path:
        raise ValueError(f"config.data.source={kind!r} needs config.data.path.")
    size = model.image_size
    if kind == "video_folder":
        if model.get("num_frames") is None or model.channels != 3:
            raise ValueError("a video_folder source needs config.model.num_frames and channels=3.")
        if not isinstance(size, int) and len(set(size)) != 1:
            raise ValueError(f"video frames are square; config.model.image_size={size}.")
        return VideoFolderSource(
            path,
            image_size=size if isinstance(size, int) else int(size[0]),
            num_frames=int(model.num_frames),
            stride=int(data.get("frame_stride", 4)),
            flip_prob=float(data.get("flip_prob", 0.5)),
        )
    if model.get("num_frames") is not None or model.channels != 1 or isinstance(size, int):
        raise ValueError(
            "an audio_folder source needs config.model.image_size=(frames, mel_bins), channels=1 "
            "and no num_frames."
        )
    return AudioFolderSource(
        path,
        target_length=int(size[0]),
        num_mel_bins=int(size[1]),
        mean=float(data.get("fbank_mean", AUDIOSET_MEAN)),
        std=float(data.get("fbank_std", AUDIOSET_STD)),
    )
