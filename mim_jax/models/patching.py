"""Patchify / unpatchify for channels-last images, videos and spectrograms.

Token and element order follow MAE (``facebookresearch/mae`` ``models_mae.py :: patchify``):
tokens are row-major over the patch grid (images ``i = r*w + c``; video ``i = t*h*w + r*w + c``),
and inside a token the values are ordered (p, q, c) for images: patch row, patch column, channel
last. The NCHW reference does ``nchpwq -> nhwpqc``; for NHWC input that is a reshape to
``(B, h, p, w, q, C)`` and a transpose to ``(B, h, w, p, q, C)``. Videos use (pt, p, q, c) inside
a tubelet, which is VideoMAE's target order ``(p0 p1 p2 c)``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import chex
import jax


def _tuple(value: int | Sequence[int], n: int, what: str) -> tuple[int, ...]:
    out = (int(value),) * n if isinstance(value, int) else tuple(int(v) for v in value)
    if len(out) != n or any(v < 1 for v in out):
        raise ValueError(f"{what} must be a positive int or {n} positive ints, got {value!r}.")
    return out


def patchify_nd(x: jax.Array, patch: Sequence[int]) -> jax.Array:
    """Splits ``x`` into non-overlapping patches over its spatial axes.

    Args:
      x: [B, S_1, ..., S_n, C] array of any dtype; each S_i must be divisible by ``patch[i]``.
      patch: (P_1, ..., P_n) patch extent per spatial axis.

    Returns:
      [B, G_1*...*G_n, P_1*...*P_n*C] with G_i = S_i // P_i, tokens row-major over (G_1..G_n) and
      each token ordered (P_1, ..., P_n, C) with the channel fastest. Same dtype as ``x``.
    """
    patch = tuple(patch)
    n = len(patch)
    chex.assert_rank(x, n + 2)
    b, *spatial, c = x.shape
    if any(s % p for s, p in zip(spatial, patch, strict=True)):
        raise ValueError(f"Spatial shape {tuple(spatial)} is not divisible by patch {patch}.")
    grid = tuple(s // p for s, p in zip(spatial, patch, strict=True))
    split = [b]
    for g, p in zip(grid, patch, strict=True):
        split += [g, p]
    x = x.reshape(*split, c)
    perm = (0, *range(1, 2 * n, 2), *range(2, 2 * n + 1, 2), 2 * n + 1)
    return x.transpose(perm).reshape(b, math.prod(grid), math.prod(patch) * c)


def unpatchify_nd(
    tokens: jax.Array, grid: Sequence[int], patch: Sequence[int], channels: int
) -> jax.Array:
    """Exact inverse of :func:`patchify_nd`.

    Args:
      tokens: [B, G_1*...*G_n, P_1*...*P_n*channels].
      grid: (G_1, ..., G_n) token grid.
      patch: (P_1, ..., P_n) patch extent.
      channels: C.

    Returns:
      [B, G_1*P_1, ..., G_n*P_n, C], same dtype as ``tokens``.
    """
    grid, patch = tuple(grid), tuple(patch)
    n = len(grid)
    chex.assert_rank(tokens, 3)
    b = tokens.shape[0]
    chex.assert_shape(tokens, (b, math.prod(grid), math.prod(patch) * channels))
    x = tokens.reshape(b, *grid, *patch, channels)
    perm = [0]
    for i in range(n):
        perm += [1 + i, 1 + n + i]
    x = x.transpose(*perm, 2 * n + 1)
    return x.reshape(b, *(g * p for g, p in zip(grid, patch, strict=True)), channels)


def patchify(images: jax.Array, patch_size: int | Sequence[int]) -> jax.Array:
    """[B, H, W, C] images -> [B, h*w, p*q*C] patches in MAE order (h, w, p, q, c)."""
    chex.assert_rank(images, 4)
    return patchify_nd(images, _tuple(patch_size, 2, "patch_size"))


def unpatchify(
    patches: jax.Array, grid: Sequence[int], patch_size: int | Sequence[int], channels: int = 3
) -> jax.Array:
    """[B, h*w, p*q*C] patches -> [B, h*p, w*q, C] images (inverse of :func:`patchify`)."""
    return unpatchify_nd(
        patches, _tuple(grid, 2, "grid"), _tuple(patch_size, 2, "patch_size"), channels
    )


def patchify_video(
    videos: jax.Array, patch_size: int | Sequence[int], tubelet_size: int
) -> jax.Array:
    """[B, T, H, W, C] videos -> [B, t*h*w, pt*p*q*C] tubelets, order (t, h, w, pt, p, q, c)."""
    chex.assert_rank(videos, 5)
    return patchify_nd(videos, (int(tubelet_size), *_tuple(patch_size, 2, "patch_size")))


def unpatchify_video(
    tubelets: jax.Array,
    grid: Sequence[int],
    patch_size: int | Sequence[int],
    tubelet_size: int,
    channels: int = 3,
) -> jax.Array:
    """[B, t*h*w, pt*p*q*C] -> [B, t*pt, h*p, w*q, C] (inverse of :func:`patchify_video`)."""
    patch = (int(tubelet_size), *_tuple(patch_size, 2, "patch_size"))
    return unpatchify_nd(tubelets, _tuple(grid, 3, "grid"), patch, channels)


@dataclasses.dataclass(frozen=True)
class PatchSpec:
    """Patch geometry of one input modality: token grid, patch extent and channel count.

    ``grid`` is the mask/position grid: (h, w) for images, (t, h, w) for videos and (T, F) for
    spectrograms (time x frequency, AudioMAE's layout: time is the image's row axis). The model
    input is channels-last with shape ``(B, *input_shape)``.

    Build one with :meth:`image`, :meth:`video` or :meth:`spectrogram`.
    """

    grid: tuple[int, ...]
    patch: tuple[int, ...]
    channels: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "grid", tuple(int(g) for g in self.grid))
        object.__setattr__(self, "patch", tuple(int(p) for p in self.patch))
        if len(self.grid) not in (2, 3) or len(self.patch) != len(self.grid):
            raise ValueError(
                f"PatchSpec needs a 2-D or 3-D grid and a patch of the same rank, got "
                f"grid={self.grid}, patch={self.patch}."
            )
        if min(self.grid + self.patch) < 1 or self.channels < 1:
            raise ValueError(f"PatchSpec sizes must be positive, got {self}.")

    @classmethod
    def image(
        cls, image_size: int | Sequence[int], patch_size: int | Sequence[int], channels: int = 3
    ) -> PatchSpec:
        """Images [B, H, W, C] cut into p x q patches (H, W divisible by p, q)."""
        size = _tuple(image_size, 2, "image_size")
        patch = _tuple(patch_size, 2, "patch_size")
        if any(s % p for s, p in zip(size, patch, strict=True)):
            raise ValueError(f"image_size {size} is not divisible by patch_size {patch}.")
        return cls(tuple(s // p for s, p in zip(size, patch, strict=True)), patch, channels)

    @classmethod
    def video(
        cls,
        num_frames: int,
        image_size: int | Sequence[int],
        patch_size: int | Sequence[int],
        tubelet_size: int = 2,
        channels: int = 3,
    ) -> PatchSpec:
        """Videos [B, T, H, W, C] cut into pt x p x q tubelets (VideoMAE: pt=2, p=q=16)."""
        size = (int(num_frames), *_tuple(image_size, 2, "image_size"))
        patch = (int(tubelet_size), *_tuple(patch_size, 2, "patch_size"))
        if any(s % p for s, p in zip(size, patch, strict=True)):
            raise ValueError(f"video shape {size} is not divisible by tubelet/patch {patch}.")
        return cls(tuple(s // p for s, p in zip(size, patch, strict=True)), patch, channels)

    @classmethod
    def spectrogram(
        cls, time_frames: int, freq_bins: int, patch_size: int | Sequence[int] = 16
    ) -> PatchSpec:
        """Spectrograms [B, T, F, 1] (AudioMAE: 1024 x 128 fbank, 16 x 16 patches: grid 64 x 8)."""
        return cls.image((time_frames, freq_bins), patch_size, channels=1)

    @property
    def num_patches(self) -> int:
        return math.prod(self.grid)

    @property
    def patch_dim(self) -> int:
        return math.prod(self.patch) * self.channels

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Per-example input shape, channels last."""
        return (*(g * p for g, p in zip(self.grid, self.patch, strict=True)), self.channels)

    def patchify(self, x: jax.Array) -> jax.Array:
        """[B, *input_shape] -> [B, num_patches, patch_dim] (see :func:`patchify_nd`)."""
        chex.assert_shape(x, (None, *self.input_shape))
        return patchify_nd(x, self.patch)

    def unpatchify(self, tokens: jax.Array) -> jax.Array:
        """[B, num_patches, patch_dim] -> [B, *input_shape]."""
        return unpatchify_nd(tokens, self.grid, self.patch, self.channels)
