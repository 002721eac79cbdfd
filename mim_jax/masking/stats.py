"""Mask statistics on the host: spectra, visible-cluster sizes, per-position frequency.

Used by the tests (to check the filters do what their names say), the calibration script and the
notebooks. Inputs are JAX or NumPy arrays; outputs are NumPy.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def radial_power_spectrum(fields) -> tuple[np.ndarray, np.ndarray]:
    """Radially averaged power spectrum of a batch of 2-D fields.

    Each field has its mean removed, its periodogram ``|FFT|^2 / (H W)`` is averaged over the
    batch, then over rings of equal radial frequency ``|f|`` (cycles per patch, bin width
    ``1 / max(H, W)``). The DC term is left out.

    Args:
      fields: float or bool array [B, H, W] (a bool mask is used as 0/1).

    Returns:
      ``(freqs, power)``: float64[F] ring centres in cycles/patch (ascending) and float64[F]
      mean power in each ring.
    """
    x = np.asarray(fields, np.float64)
    if x.ndim != 3:
        raise ValueError(f"radial_power_spectrum expects [B, H, W], got shape {x.shape}.")
    _, h, w = x.shape
    x = x - x.mean(axis=(1, 2), keepdims=True)
    power = (np.abs(np.fft.fft2(x)) ** 2).mean(axis=0) / (h * w)
    fy, fx = np.meshgrid(np.fft.fftfreq(h), np.fft.fftfreq(w), indexing="ij")
    radius = np.hypot(fy, fx)
    width = 1.0 / max(h, w)
    ring = np.rint(radius / width).astype(int)
    rings = np.arange(1, ring.max() + 1)
    sums = np.bincount(ring.ravel(), weights=power.ravel(), minlength=ring.max() + 1)
    counts = np.bincount(ring.ravel(), minlength=ring.max() + 1)
    keep = counts[rings] > 0
    return rings[keep] * width, sums[rings][keep] / counts[rings][keep]


def cluster_sizes(visible, connectivity: int = 4) -> np.ndarray:
    """Sizes of the connected components of visible patches, pooled over the batch.

    Args:
      visible: bool[B, H, W], True where a patch is visible (``~mask``).
      connectivity: 4 (edge neighbours) or 8 (edges and corners).

    Returns:
      int64[C], one entry per component, in patches.
    """
    v = np.asarray(visible, bool)
    if v.ndim != 3:
        raise ValueError(f"cluster_sizes expects [B, H, W], got shape {v.shape}.")
    if connectivity not in (4, 8):
        raise ValueError(f"connectivity must be 4 or 8, got {connectivity}.")
    structure = ndimage.generate_binary_structure(2, 1 if connectivity == 4 else 2)
    sizes = []
    for sample in v:
        labels, count = ndimage.label(sample, structure=structure)
        if count:
            sizes.append(np.bincount(labels.ravel())[1:])
    return np.concatenate(sizes) if sizes else np.zeros(0, np.int64)


def mean_cluster_size(visible, connectivity: int = 4) -> float:
    """Patch-weighted mean cluster size: the size of the cluster a random visible patch is in."""
    sizes = cluster_sizes(visible, connectivity).astype(np.float64)
    return float((sizes**2).sum() / sizes.sum()) if sizes.size else 0.0


def position_frequency(mask) -> np.ndarray:
    """float64[N] fraction of samples in which each position is masked (``mask``: bool[B, N])."""
    m = np.asarray(mask, bool)
    if m.ndim != 2:
        raise ValueError(f"position_frequency expects [B, N], got shape {m.shape}.")
    return m.mean(axis=0)
