"""Kaldi-compatible log-mel filterbank in NumPy, with AudioMAE's AudioSet settings as defaults.

AudioMAE (``facebookresearch/AudioMAE``, ``dataset.py``) computes its inputs with
``torchaudio.compliance.kaldi.fbank(waveform, htk_compat=True, sample_frequency=16000,
use_energy=False, window_type='hanning', num_mel_bins=128, dither=0.0, frame_shift=10)`` on the
mean-removed waveform in [-1, 1], pads (zeros) or cuts the result to 1024 frames, and normalises it
as ``(fbank - mean) / (2 * std)`` with AudioSet's mean -4.2677393 and std 4.5689974
(``main_pretrain.py``). This module reproduces Kaldi's ``compute-fbank-feats`` defaults otherwise:
25 ms frames every 10 ms without edge padding (``snip_edges``), per-frame DC removal,
pre-emphasis 0.97, Hanning window ``0.5 - 0.5 cos(2 pi n / (N - 1))``, FFT zero-padded to a
power of two, power spectrum, triangular filters equally spaced on Kaldi's mel scale
``1127 ln(1 + f / 700)`` between 20 Hz and Nyquist, natural log floored at float32's epsilon.
"""

from __future__ import annotations

import functools
from math import gcd

import chex
import numpy as np

AUDIOSET_MEAN = -4.2677393
AUDIOSET_STD = 4.5689974
SAMPLE_RATE = 16_000


def resample(wave: np.ndarray, rate: int, target: int = SAMPLE_RATE) -> np.ndarray:
    """``float[N]`` at ``rate`` Hz -> ``float32[M]`` at ``target`` Hz (polyphase, Kaiser window)."""
    chex.assert_rank(wave, 1)
    if rate <= 0:
        raise ValueError(f"sample rate must be positive: {rate}")
    if rate == target:
        return wave.astype(np.float32)
    from scipy.signal import resample_poly

    g = gcd(int(rate), int(target))
    return resample_poly(wave.astype(np.float64), target // g, rate // g).astype(np.float32)


def _mel(freq: np.ndarray | float) -> np.ndarray:
    return 1127.0 * np.log(1.0 + np.asarray(freq, np.float64) / 700.0)


@functools.lru_cache(maxsize=8)
def mel_banks(
    num_bins: int, fft_size: int, sample_rate: int, low_hz: float = 20.0, high_hz: float = 0.0
) -> np.ndarray:
    """Kaldi's triangular mel filters ``float64[fft_size // 2 + 1, num_bins]`` (the Nyquist row is
    zero, as Kaldi uses the first ``fft_size // 2`` bins). ``high_hz <= 0`` is relative to
    Nyquist."""
    nyquist = sample_rate / 2
    high = high_hz if high_hz > 0 else nyquist + high_hz
    if not 0 <= low_hz < high <= nyquist:
        raise ValueError(f"bad mel range [{low_hz}, {high}] for sample rate {sample_rate}")
    lo, hi = _mel(low_hz), _mel(high)
    delta = (hi - lo) / (num_bins + 1)
    left = lo + delta * np.arange(num_bins)
    centre, right = left + delta, left + 2 * delta
    fft_mel = _mel(np.arange(fft_size // 2) * sample_rate / fft_size)[:, None]
    up = (fft_mel - left) / (centre - left)
    down = (right - fft_mel) / (right - centre)
    weights = np.where((fft_mel > left) & (fft_mel < right), np.minimum(up, down), 0.0)
    return np.concatenate([weights, np.zeros((1, num_bins))])


def fbank(
    wave: np.ndarray,
    sample_rate: int = SAMPLE_RATE,
    num_mel_bins: int = 128,
    frame_length_ms: float = 25.0,
    frame_shift_ms: float = 10.0,
    preemphasis: float = 0.97,
) -> np.ndarray:
    """Kaldi ``fbank`` of a mono waveform: ``float[N]`` -> ``float32[frames, num_mel_bins]`` with
    ``frames = 1 + (N - L) // S`` (``L``, ``S``: frame length and shift in samples; 0 frames when
    ``N < L``). No dither, no energy term."""
    chex.assert_rank(wave, 1)
    length = int(sample_rate * frame_length_ms / 1000)
    shift = int(sample_rate * frame_shift_ms / 1000)
    fft_size = 1 << (length - 1).bit_length()
    if len(wave) < length:
        return np.zeros((0, num_mel_bins), np.float32)
    count = 1 + (len(wave) - length) // shift
    frames = np.lib.stride_tricks.sliding_window_view(wave.astype(np.float64), length)[::shift]
    frames = frames[:count] - frames[:count].mean(axis=1, keepdims=True)
    emphasised = frames.copy()
    emphasised[:, 1:] -= preemphasis * frames[:, :-1]
    emphasised[:, 0] -= preemphasis * frames[:, 0]
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(length) / (length - 1))
    spectrum = np.abs(np.fft.rfft(emphasised * window, n=fft_size)) ** 2
    energies = spectrum @ mel_banks(num_mel_bins, fft_size, sample_rate)
    out = np.log(np.maximum(energies, np.finfo(np.float32).eps)).astype(np.float32)
    chex.assert_shape(out, (count, num_mel_bins))
    return out


def audiomae_input(
    wave: np.ndarray,
    sample_rate: int,
    target_length: int = 1024,
    num_mel_bins: int = 128,
    mean: float = AUDIOSET_MEAN,
    std: float = AUDIOSET_STD,
) -> np.ndarray:
    """AudioMAE's model input from a mono waveform in [-1, 1] at any rate:
    ``float32[target_length, num_mel_bins, 1]`` (time x mel x channel).

    Resample to 16 kHz, remove the mean, Kaldi fbank, zero-pad or cut (from the start) to
    ``target_length`` frames, then ``(x - mean) / (2 * std)``.
    """
    wave = resample(np.asarray(wave), sample_rate)
    feats = fbank(wave - wave.mean(), SAMPLE_RATE, num_mel_bins)[:target_length]
    out = np.zeros((target_length, num_mel_bins), np.float32)
    out[: len(feats)] = feats
    out = (out - np.float32(mean)) / np.float32(2 * std)
    return out[..., None]
