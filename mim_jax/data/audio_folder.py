"""Audio-folder source: AudioMAE's log-mel inputs from wav, flac, ogg, ... files (soundfile).

``AudioFolderSource(path)`` lists the files (class folders or a ``<file> <label>`` list, see
:mod:`mim_jax.data.media_index`) and turns each into AudioMAE's input (:mod:`mim_jax.data.fbank`):
the first channel (as ``torchaudio.compliance.kaldi.fbank`` uses it), resampled to 16 kHz,
128-bin Kaldi fbank (25 ms / 10 ms, Hanning, no dither), zero-padded or cut to 1024 frames,
``(x - mean) / (2 * std)`` with AudioSet's statistics. AudioMAE's pretraining applies no random
augmentation (its SpecAugment, mixup and roll options are off for pretraining), so the training and
evaluation views are the same: ``float32[target_length, num_mel_bins, 1]``.

Unreadable, empty (no samples) and corrupt files are skipped, counted and reported
(:class:`mim_jax.data.media_source.MediaSource`).
"""

from __future__ import annotations

import os

import chex
import numpy as np

from mim_jax.data.fbank import AUDIOSET_MEAN, AUDIOSET_STD, audiomae_input
from mim_jax.data.media_source import MediaSource

AUDIO_EXTENSIONS = frozenset({".wav", ".flac", ".ogg", ".oga", ".aiff", ".aif", ".au"})


def read_audio(path: str) -> tuple[np.ndarray, int]:
    """``(float32[N] first channel in [-1, 1], rate)``; raises on unreadable or empty files."""
    import soundfile  # the optional extra ``mim_jax[audio]``

    wave, rate = soundfile.read(path, dtype="float32", always_2d=True)
    if wave.shape[0] == 0:
        raise ValueError("no audio samples")
    return wave[:, 0], int(rate)


class AudioFolderSource(MediaSource):
    """Random-access AudioMAE spectrograms from an audio folder or list.

    Args:
      path: folder (class sub-folders = labels, or flat = unlabelled) or a ``<file> <label>`` list.
      target_length: fbank frames ``T`` (AudioMAE on AudioSet: 1024, i.e. 10.24 s).
      num_mel_bins: mel bins ``F`` (AudioMAE: 128).
      mean / std: normalisation ``(x - mean) / (2 * std)`` (AudioMAE's AudioSet values).
      validate: read every file at construction and drop unreadable ones.
      cache_decoded: keep every file's spectrogram in memory after its first read (small sets).

    ``source[i]`` is ``{"image": float32[T, F, 1], "label": int}``.
    """

    what = "audio"
    extensions = AUDIO_EXTENSIONS

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        target_length: int = 1024,
        num_mel_bins: int = 128,
        mean: float = AUDIOSET_MEAN,
        std: float = AUDIOSET_STD,
        validate: bool = False,
        cache_decoded: bool = False,
    ):
        if target_length < 1 or num_mel_bins < 1:
            raise ValueError(
                f"target_length and num_mel_bins must be positive: {target_length}, {num_mel_bins}"
            )
        if not std > 0:
            raise ValueError(f"std must be positive: {std}")
        self.target_length = int(target_length)
        self.num_mel_bins = int(num_mel_bins)
        self.mean = float(mean)
        self.std = float(std)
        super().__init__(path, validate=validate, cache_decoded=cache_decoded)

    def read(self, path: str, rng: np.random.Generator | None) -> np.ndarray:
        """The spectrogram of ``path``: ``float32[T, F, 1]`` (``rng`` is unused)."""
        return self.decoded(path, self._spectrogram)

    def _spectrogram(self, path: str) -> np.ndarray:
        wave, rate = read_audio(path)
        out = audiomae_input(wave, rate, self.target_length, self.num_mel_bins, self.mean, self.std)
        chex.assert_shape(out, (self.target_length, self.num_mel_bins, 1))
        return out
