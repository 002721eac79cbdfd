"""ColorMAE's paper-exact mode: masks cut from a pre-generated bank of colour-noise patterns.

The official code (``carlosh93/ColorMAE`` ``ColorMasking``) loads a bank ``[L, M, N]`` of noise
patterns from an ``.npz`` file, crops a grid-sized window, flips it, and keeps the highest values
visible. It ships no generator for the bank; :func:`generate_bank` makes one with mim_jax's own
filters, :func:`save_bank` / :func:`load_bank` store it (the array under ``noise``, the colour and
sigmas beside it; a file with a single unnamed array, such as the official banks, loads too).

Crop modes:
  ``per_sample`` (default): every sample draws its own pattern, offset and flips.
  ``batch_shared`` (the paper's code, exactly): sample ``i`` uses pattern ``i mod L``; the batch
  shares one crop offset and one horizontal/vertical flip pair per pass over the bank.
"""

from __future__ import annotations

import dataclasses
import math
import os
import zipfile
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mim_jax.masking.base import MaskGenerator
from mim_jax.masking.color import (
    COLORS,
    Sigma,
    color_transfer,
    filtered_noise,
    random_windows,
    resolve_sigmas,
)
from mim_jax.masking.core import Grid, Masks, masks_from_scores

CROP_MODES = ("per_sample", "batch_shared")


def generate_bank(
    color: str,
    num_patterns: int = 1024,
    size: int = 64,
    seed: int = 0,
    **sigmas: Sigma | None,
) -> np.ndarray:
    """Makes a bank of colour-noise patterns.

    Each pattern is cut from a periodic field of twice its size (so it has no wrap-around) and
    standardised to zero mean and unit variance.

    Args:
      color: one of ``COLORS``.
      num_patterns: L, the number of patterns.
      size: side of each square pattern, in patches; windows of any grid up to it can be cut.
      seed: PRNG seed; the same arguments always give the same bank.
      **sigmas: ``sigma`` or ``sigma1``/``sigma2`` as for the ``color`` strategy.

    Returns:
      float32[L, size, size].
    """
    resolved = resolve_sigmas("colorbank", color, sigmas, 2)
    if num_patterns < 1 or size < 1:
        raise ValueError(
            f"colorbank: num_patterns and size must be >= 1, got {num_patterns}, {size}."
        )
    field = (2 * size, 2 * size)
    transfer = color_transfer(color, field, **resolved)
    chunks = []
    for start in range(0, num_patterns, 256):
        key = jax.random.fold_in(jax.random.key(seed), start)
        n = min(256, num_patterns - start)
        chunks.append(np.asarray(filtered_noise(key, n, transfer, field)[:, :size, :size]))
    bank = np.concatenate(chunks)
    bank -= bank.mean(axis=(1, 2), keepdims=True)
    bank /= bank.std(axis=(1, 2), keepdims=True) + 1e-12
    return bank.astype(np.float32)


def save_bank(path: str | os.PathLike, bank: np.ndarray, color: str, **sigmas: Any) -> None:
    """Writes ``bank`` (float32[L, M, N]) to an ``.npz`` with its colour and sigmas."""
    meta = {f"meta_{k}": np.asarray(v) for k, v in sigmas.items() if v is not None}
    np.savez(path, noise=np.asarray(bank, np.float32), meta_color=np.asarray(color), **meta)


def load_bank(path: str | os.PathLike) -> tuple[np.ndarray, dict[str, Any]]:
    """Reads a bank file; returns ``(float32[L, M, N], metadata)``.

    The bank is the array named ``noise`` or, failing that, the file's first array (the official
    ColorMAE files hold one array); a ``.npy`` file holding the array works too. Raises
    ValueError for a missing or unreadable file or an array that is not 3-D.
    """
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.ndarray):  # a plain .npy file
            bank, meta = loaded.astype(np.float32), {}
        else:
            with loaded as data:
                name = "noise" if "noise" in data.files else data.files[0]
                bank = np.asarray(data[name], np.float32)
                meta = {k[5:]: data[k].item() for k in data.files if k.startswith("meta_")}
    except (OSError, ValueError, IndexError, EOFError, zipfile.BadZipFile) as err:
        raise ValueError(f"colorbank: cannot read a noise bank from {path!s}: {err}") from err
    if bank.ndim != 3:
        raise ValueError(
            f"colorbank: {path!s} holds an array of shape {bank.shape}; a bank is [L, M, N]."
        )
    return bank, meta


@dataclasses.dataclass(frozen=True, eq=False)
class ColorBankMasking(MaskGenerator):
    """Masks from a bank of colour-noise patterns (ColorMAE's released method).

    Options:
      color: the colour of the bank; used to generate one when ``bank`` is None, and checked
        against the colour stored in a bank file.
      bank: None (generate), a path to an ``.npz`` bank, or an array float32[L, M, N].
      crop: "per_sample" (default) or "batch_shared" (paper-exact); see the module docstring.
      num_patterns, size, seed: the generated bank's L, side and seed (ignored for a given bank).
      sigma, sigma1, sigma2: the generated bank's filter (as for ``color``).
    """

    name = "colorbank"
    color: str = "green"
    bank: Any = None
    crop: str = "per_sample"
    num_patterns: int = 1024
    size: int = 64
    seed: int = 0
    sigma: Sigma | None = None
    sigma1: Sigma | None = None
    sigma2: Sigma | None = None

    def _validate_options(self) -> None:
        if self.crop not in CROP_MODES:
            raise ValueError(
                f"colorbank: option crop must be one of {', '.join(CROP_MODES)}, got {self.crop!r}."
            )
        if self.color not in COLORS:
            raise ValueError(
                f"colorbank: unknown color {self.color!r}; valid colors: {', '.join(COLORS)}."
            )
        sigmas = {"sigma": self.sigma, "sigma1": self.sigma1, "sigma2": self.sigma2}
        if self.bank is None:
            bank = generate_bank(self.color, self.num_patterns, self.size, self.seed, **sigmas)
        elif isinstance(self.bank, str | os.PathLike):
            bank, meta = load_bank(self.bank)
            stored = meta.get("color")
            if stored is not None and stored != self.color:
                raise ValueError(
                    f"colorbank: {self.bank!s} holds {stored} noise but color={self.color!r}; "
                    f"pass color={stored!r} or another bank."
                )
        else:
            bank = np.asarray(self.bank, np.float32)
            if bank.ndim != 3:
                raise ValueError(f"colorbank: a bank array must be [L, M, N], got {bank.shape}.")
        object.__setattr__(self, "_bank", jnp.asarray(bank))

    @property
    def patterns(self) -> jax.Array:
        """The bank in use, float32[L, M, N]."""
        return self._bank

    def _check(self, grid: Grid, k: int, mask_ratio: float) -> None:
        _, m, n = self._bank.shape
        if grid[0] > m or grid[1] > n:
            raise ValueError(
                f"colorbank: grid {grid} is larger than the bank's {m}x{n} patterns; use a bank "
                f"with patterns at least as large as the grid (generate_bank(size=...))."
            )

    def _generate(self, key: jax.Array, *, batch_size: int, grid: Grid, k: int) -> Masks:
        bank = self._bank
        num = bank.shape[0]
        if self.crop == "per_sample":
            key_pick, key_crop = jax.random.split(key)
            picks = jax.random.randint(key_pick, (batch_size,), 0, num)
            windows = random_windows(key_crop, bank[picks], grid)
        else:
            windows = self._batch_shared_windows(key, batch_size, grid)
        return masks_from_scores(windows.reshape(batch_size, -1), k)

    def _batch_shared_windows(self, key: jax.Array, batch_size: int, grid: Grid) -> jax.Array:
        """Pattern ``i mod L`` for sample ``i``; one offset and flip pair per pass over the bank."""
        bank = self._bank
        num, m, n = bank.shape
        passes = math.ceil(batch_size / num)
        key_offset, key_flip = jax.random.split(key)
        offsets = jax.random.randint(
            key_offset, (passes, 2), 0, jnp.asarray([m - grid[0] + 1, n - grid[1] + 1])
        )
        flips = jax.random.bernoulli(key_flip, 0.5, (passes, 2))
        sample = jnp.arange(batch_size)
        pattern, pass_index = sample % num, sample // num

        def crop_one(pattern_i, offset_i, flip_i):
            out = jax.lax.dynamic_slice(bank[pattern_i], tuple(offset_i), grid)
            out = jnp.where(flip_i[0], out[:, ::-1], out)  # horizontal flip
            return jnp.where(flip_i[1], out[::-1, :], out)  # vertical flip

        return jax.vmap(crop_one)(pattern, offsets[pass_index], flips[pass_index])
