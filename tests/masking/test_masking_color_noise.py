"""The colour noise itself: its periodogram against the official ColorMAE noise, and its shapes."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mim_jax import masking
from mim_jax.masking.calibrate import FIGURE_PROFILES, FIGURE_RINGS
from mim_jax.masking.color import filtered_noise
from mim_jax.masking.filters import color_transfer, unit_variance_gain

FIELD = 128


def ring_profile(fields: np.ndarray) -> np.ndarray:
    """The figure's method, written out here with plain numpy: mean-removed |FFT|^2, averaged in
    rings of width 0.1 in r = |f| / Nyquist (DC left out), divided by the largest ring."""
    x = fields - fields.mean(axis=(1, 2), keepdims=True)
    power = (np.abs(np.fft.fft2(x)) ** 2).mean(axis=0)
    h, w = x.shape[1:]
    r = np.sqrt(np.fft.fftfreq(h)[:, None] ** 2 + np.fft.fftfreq(w)[None, :] ** 2) * 2.0
    means = []
    for lo in np.arange(14) * 0.1:
        ring = (r >= lo) & (r < lo + 0.1) & (r > 0)
        means.append(power[ring].mean())
    means = np.array(means)
    return means / means.max()


@pytest.mark.parametrize("color", ["red", "green", "blue", "purple"])
def test_periodogram_matches_the_official_noise(color):
    noise = np.asarray(
        masking.color_noise(jax.random.key(11), (FIELD, FIELD), color=color, batch_size=24),
        np.float64,
    )
    ours = ring_profile(noise)
    target = FIGURE_PROFILES[color]
    assert len(target) == len(FIGURE_RINGS) == 14
    worst = np.abs(ours - target).max()
    assert worst < 0.15, f"{color}: rings {np.round(ours, 2)} vs figure {target}"


def test_paper_filters_do_not_match_the_figure():
    # The reason for the figure filters: the paper's formulas miss green, blue and purple.
    for color in ("green", "blue", "purple"):
        noise = masking.color_noise(
            jax.random.key(3), (FIELD, FIELD), color=color, batch_size=8, filter="paper"
        )
        ours = ring_profile(np.asarray(noise, np.float64))
        assert np.abs(ours - FIGURE_PROFILES[color]).max() > 0.3, color


def test_purple_masks_have_a_band_stop_dip():
    gen = masking.get("purple")
    m = gen(jax.random.key(4), batch_size=3000, grid=(14, 14), mask_ratio=0.75)
    visible = (~np.asarray(m.mask)).reshape(-1, 14, 14).astype(np.float64)
    visible -= visible.mean(axis=(1, 2), keepdims=True)
    power = (np.abs(np.fft.fft2(visible)) ** 2).mean(axis=0)
    f = np.sqrt(np.fft.fftfreq(14)[:, None] ** 2 + np.fft.fftfreq(14)[None, :] ** 2)
    low = power[(f > 0) & (f < 0.1)].mean()
    middle = power[(f > 0.2) & (f < 0.4)].mean()
    high = power[f > 0.55].mean()
    # Measured: low 2.1x and high 5.3x the middle band.
    assert middle < 0.7 * low and middle < 0.4 * high, (low, middle, high)


@pytest.mark.parametrize("shape", [(14, 14), (9, 31), (4, 6, 6), (8, 14, 14)])
def test_color_noise_shapes_and_scale(shape):
    key = jax.random.key(0)
    batch = masking.color_noise(key, shape, color="green", batch_size=5)
    assert batch.shape == (5, *shape) and batch.dtype == jnp.float32
    single = masking.color_noise(key, shape, color="green")
    assert single.shape == shape and single.dtype == jnp.float32
    big = masking.color_noise(key, (96, 96), color="blue", batch_size=4)
    assert abs(float(big.std()) - 1.0) < 0.05  # unit variance by construction


def test_masks_rank_exactly_this_noise():
    key = jax.random.key(7)
    for name, grid in (("color", (14, 14)), ("color3d", (4, 6, 6))):
        gen = masking.get(name, color="purple")
        m = gen(key, batch_size=4, grid=grid, mask_ratio=0.75)
        noise = np.asarray(masking.color_noise(key, grid, color="purple", batch_size=4))
        flat = noise.reshape(4, -1)
        for row, keep, mask in zip(flat, np.asarray(m.keep), np.asarray(m.mask), strict=True):
            assert row[keep].min() >= row[mask].max()


def test_color_noise_rejects_bad_input():
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="2-D or 3-D"):
        masking.color_noise(key, (10,), color="green")
    with pytest.raises(ValueError, match="batch_size must be None or an int >= 1"):
        masking.color_noise(key, (8, 8), color="green", batch_size=0)
    with pytest.raises(ValueError, match="no option crop"):
        masking.color_noise(key, (8, 8), color="green", crop="x")
    with pytest.raises(ValueError, match="unknown color"):
        masking.color_noise(key, (8, 8), color="pink")


@pytest.mark.parametrize(
    "field, window", [((24, 24), (14, 14)), ((23, 21), (14, 9)), ((10, 12, 12), (8, 6, 12))]
)
def test_window_transform_equals_inverse_fft(field, window):
    """filtered_noise's per-axis DFT matrices give irfftn's values on the window."""
    transfer = color_transfer("green", field, center=0.2, width=0.07)
    batch, key = 3, jax.random.key(1)
    got = np.asarray(filtered_noise(key, batch, transfer, field, window))
    # The same random spectrum, rebuilt in numpy: bytes of the same words, laid out
    # [B, real/imag, last-axis column, *other axes], then irfftn.
    count = 2 * transfer.size
    words = np.asarray(jax.random.bits(key, (batch, (count + 3) // 4), jnp.uint32))
    parts = (words[..., None] >> np.array([24, 16, 8, 0], np.uint32)) & 0xFF
    uniform = (parts.reshape(batch, -1)[:, :count] - 127.5) / 128.0
    layout = (batch, 2, transfer.shape[-1], *transfer.shape[:-1])
    spectrum = np.moveaxis(uniform.reshape(layout), 2, -1)
    weight = transfer.astype(np.float64) * unit_variance_gain(transfer, field)
    weight[..., 0] *= math.sqrt(2.0)
    if field[-1] % 2 == 0:
        weight[..., -1] *= math.sqrt(2.0)
    full = np.fft.irfftn(
        (spectrum[:, 0] + 1j * spectrum[:, 1]) * weight, s=field, axes=range(1, len(field) + 1)
    )
    expected = full[(slice(None), *(slice(0, w) for w in window))]
    np.testing.assert_allclose(got, expected, atol=2e-6)
