"""ColorMAE's paper-exact mode: masks cut from a pre-generated bank of colour-noise patterns.

The official code (``carlosh93/ColorMAE`` ``ColorMasking``) loads a bank ``[L, M, N]`` of noise
patterns from an ``.npz`` file, crops a grid-sized window, flips it, and keeps the highest values
visible. It ships no generator for the bank; :func:`generate_bank` makes one with mim_jax's own
filters, :func:`save_bank` / :func:`load_bank` store it (the array under ``noise``, the colour and
sigmas beside it; a file with a single unnamed array, such as the official banks, loads too).

Crop modes:
  ``per_sample`` (default): every sample draws its own pattern, offset and flips.
  ``batch_shared`` (the paper's code, exactly): the official code runs on every device (GPU) for
  that device's local batch: local sample ``i`` uses pattern ``i mod L``, and the local batch
  shares one crop offset and one horizontal/vertical flip pair per pass over the bank, drawn
  with the device's own seed. mim_jax draws masks for the global batch inside the sharded train
  step, so the option ``shards`` says how many data shards the batch is split into (the number
  of batch-sharded devices, data x fsdp; the batch is split into ``shards`` consecutive equal
  blocks, as the batch sharding splits it): each block restarts at pattern 0 and draws its own
  offsets and flips, exactly as each device does in the official code. With ``shards=1`` (the
  default) the whole batch is one device's batch: identical to the official code on one GPU, and
  on several devices it differs only in that samples beyond the first ``B / devices`` continue
  with patterns ``B / devices, ...`` instead of restarting at 0 with their own crop.
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
from mim_jax.masking.color import filtered_noise, random_windows
from mim_jax.masking.core import Grid, Masks, masks_from_scores
from mim_jax.masking.filters import (
    COLORS,
    SHAPE_OPTIONS,
    Sigma,
    color_transfer,
    resolve_filter,
)

CROP_MODES = ("per_sample", "batch_shared")


def generate_bank(
    color: str,
    num_patterns: int = 1024,
    size: int = 64,
    seed: int = 0,
    filter: str = "figure",
    **params: Sigma | None,
) -> np.ndarray:
    """Makes a bank of colour-noise patterns.

    Each pattern is cut from a periodic field of twice its size (so it has no wrap-around) and
    standardised to zero mean and unit variance.

    Args:
      color: one of ``COLORS``.
      num_patterns: L, the number of patterns.
      size: side of each square pattern, in patches; windows of any grid up to it can be cut.
      seed: PRNG seed; the same arguments always give the same bank.
      filter: "figure" (default) or "paper", as for the ``color`` strategy.
      **params: the filter's shape options as for the ``color`` strategy (``center``,
        ``width``, ``low_width``; or ``sigma``, ``sigma1``, ``sigma2`` with ``filter="paper"``).

    Returns:
      float32[L, size, size].
    """
    resolved = resolve_filter("colorbank", color, filter, params, 2)
    if num_patterns < 1 or size < 1:
        raise ValueError(
            f"colorbank: num_patterns and size must be >= 1, got {num_patterns}, {size}."
        )
    field = (2 * size, 2 * size)
    transfer = color_transfer(color, field, filter, None, **resolved)
    chunks = []
    for start in range(0, num_patterns, 256):
        key = jax.random.fold_in(jax.random.key(seed), start)
        n = min(256, num_patterns - start)
        chunks.append(np.asarray(filtered_noise(key, n, transfer, field, (size, size))))
    bank = np.concatenate(chunks)
    bank -= bank.mean(axis=(1, 2), keepdims=True)
    bank /= bank.std(axis=(1, 2), keepdims=True) + 1e-12
    return bank.astype(np.float32)


def save_bank(path: str | os.PathLike, bank: np.ndarray, color: str, **params: Any) -> None:
    """Writes ``bank`` (float32[L, M, N]) to an ``.npz`` with its colour and filter options."""
    meta = {f"meta_{k}": np.asarray(v) for k, v in params.items() if v is not None}
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
      shards: for ``batch_shared``, the number of data shards (devices) the batch is split into;
        each shard's block of the batch uses patterns 0, 1, ... with its own crop and flips [1].
      num_patterns, size, seed: the generated bank's L, side and seed (ignored for a given bank).
      filter, center, width, low_width, sigma, sigma1, sigma2: the generated bank's filter (as
        for ``color``).
    """

    name = "colorbank"
    color: str = "green"
    bank: Any = None
    crop: str = "per_sample"
    shards: int = 1
    num_patterns: int = 1024
    size: int = 64
    seed: int = 0
    filter: str = "figure"
    center: float | None = None
    width: float | None = None
    low_width: float | None = None
    sigma: Sigma | None = None
    sigma1: Sigma | None = None
    sigma2: Sigma | None = None

    # Identity, not field equality: the bank is an array (and MaskGenerator's generated __eq__ and
    # __hash__ see none of this class's fields), so two colorbank generators are the same
    # generator, sharing one compiled function, only when they are the same object.
    __eq__ = object.__eq__
    __hash__ = object.__hash__

    def _validate_options(self) -> None:
        if self.crop not in CROP_MODES:
            raise ValueError(
                f"colorbank: option crop must be one of {', '.join(CROP_MODES)}, got {self.crop!r}."
            )
        if self.color not in COLORS:
            raise ValueError(
                f"colorbank: unknown color {self.color!r}; valid colors: {', '.join(COLORS)}."
            )
        if not isinstance(self.shards, int) or isinstance(self.shards, bool) or self.shards < 1:
            raise ValueError(f"colorbank: option shards must be an int >= 1, got {self.shards!r}.")
        params = {opt: getattr(self, opt) for opt in SHAPE_OPTIONS}
        if self.bank is None:
            bank = generate_bank(
                self.color, self.num_patterns, self.size, self.seed, self.filter, **params
            )
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

    def __call__(self, key: jax.Array, *, batch_size: int, grid: Grid, mask_ratio: float) -> Masks:
        if self.crop == "batch_shared" and isinstance(batch_size, int) and batch_size % self.shards:
            raise ValueError(
                f"colorbank: batch_size={batch_size} does not split into shards={self.shards} "
                f"equal blocks; use a multiple of {self.shards}."
            )
        return super().__call__(key, batch_size=batch_size, grid=grid, mask_ratio=mask_ratio)

    def _batch_shared_windows(self, key: jax.Array, batch_size: int, grid: Grid) -> jax.Array:
        """Per shard: pattern ``i mod L`` for local sample ``i``; one offset and flip pair per
        pass over the bank, drawn independently for every shard."""
        bank = self._bank
        num, m, n = bank.shape
        local = batch_size // self.shards
        passes = math.ceil(local / num)
        key_offset, key_flip = jax.random.split(key)
        offsets = jax.random.randint(
            key_offset,
            (self.shards, passes, 2),
            0,
            jnp.asarray([m - grid[0] + 1, n - grid[1] + 1]),
        )
        flips = jax.random.bernoulli(key_flip, 0.5, (self.shards, passes, 2))
        sample = jnp.arange(batch_size)
        shard, local_index = sample // local, sample % local
        pattern, pass_index = local_index % num, local_index // num

        def crop_one(pattern_i, offset_i, flip_i):
            out = jax.lax.dynamic_slice(bank[pattern_i], tuple(offset_i), grid)
            out = jnp.where(flip_i[0], out[:, ::-1], out)  # horizontal flip
            return jnp.where(flip_i[1], out[::-1, :], out)  # vertical flip

        return jax.vmap(crop_one)(pattern, offsets[shard, pass_index], flips[shard, pass_index])
