"""Name -> strategy registry behind :func:`mim_jax.masking.get`."""

from __future__ import annotations

from typing import Any

from mim_jax.masking.base import MaskGenerator
from mim_jax.masking.block import BlockMasking
from mim_jax.masking.color import COLORS, Color3DMasking, ColorMasking, ColorTFMasking
from mim_jax.masking.colorbank import ColorBankMasking
from mim_jax.masking.grid import GridMasking, UniformMasking
from mim_jax.masking.random_masking import RandomMasking
from mim_jax.masking.simmim import SimMIMMasking
from mim_jax.masking.tube import TubeMasking

STRATEGIES: dict[str, type[MaskGenerator]] = {
    cls.name: cls
    for cls in (
        RandomMasking,
        BlockMasking,
        SimMIMMasking,
        GridMasking,
        UniformMasking,
        TubeMasking,
        ColorMasking,
        Color3DMasking,
        ColorTFMasking,
        ColorBankMasking,
    )
}


def names() -> list[str]:
    """Registry names, then the colour shorthands that ``get`` also accepts."""
    return [*STRATEGIES, *COLORS]


def get(name: str, **options: Any) -> MaskGenerator:
    """Returns the mask generator called ``name``, configured with ``options``.

    Usage::

        from mim_jax import masking
        gen = masking.get("green")                  # shorthand for get("color", color="green")
        m = gen(key, batch_size=256, grid=(14, 14), mask_ratio=0.75)
        m.keep      # int32[B, K]   visible patch indices (row-major over the grid)
        m.masked    # int32[B, N-K] masked patch indices
        m.restore   # int32[B, N]   take_along_axis(concat([keep, masked]), restore) == arange(N)
        m.mask      # bool[B, N]    True where masked

    ``K = N - floor(N * mask_ratio + 1/2)`` for every strategy (see ``mim_jax.masking.core``).
    ``batch_size``, ``grid`` and ``mask_ratio`` are static; call the generator inside your
    jit-compiled step and the masks are made on device from the key.

    Strategies and their options (defaults in brackets):

    ==========  ============  ===========================================================
    name        grid          options
    ==========  ============  ===========================================================
    random      any rank      none (MAE: uniform without replacement)
    block       (H, W)        min_num_patches [16], max_num_patches [None],
                              min_aspect [0.3], max_aspect [None = 1/min_aspect] (BEiT)
    simmim      (H, W)        scale [2] = mask_patch_size / patch_size
    grid        (H, W) even   period [2], offset [(0, 0)]; fixed, ratio 1 - 1/period**2
    uniform     (H, W) even   sampling ["balanced" | "iid"], secondary_ratio [0] (UM-MAE;
                              ratio 0.75; ``m.secondary`` marks re-hidden visible tokens)
    tube        (T, H, W)     none (VideoMAE); K must be a multiple of T
    color       (H, W)        color ["green"], sigma (red/blue), sigma1 < sigma2
                              (green/purple), margin [auto] (ColorMAE, on the fly)
    color3d     (T, H, W)     as color, sigmas per axis allowed (video, smooth in time)
    color_tf    (T, F)        as color, sigmas per axis (spectrograms)
    colorbank   (H, W)        color, bank [None | path.npz | array], crop ["per_sample" |
                              "batch_shared"], num_patterns, size, seed, sigmas
    ==========  ============  ===========================================================

    Colours: white, red (low-pass: blobs), blue (high-pass: spread out), green (band-pass:
    mid-size clusters, ColorMAE's choice), purple (band-stop). A colour name alone is shorthand
    for ``get("color", color=name, ...)``.

    Raises:
      ValueError: an unknown name or option, or an option value out of range; the message lists
        what is valid.
    """
    if not isinstance(name, str):
        raise ValueError(f"mask name must be a string, got {name!r}; valid: {', '.join(names())}.")
    key = name.strip().lower()
    if key in COLORS:
        if "color" in options and options["color"] != key:
            raise ValueError(
                f"mask {name!r} is shorthand for color={key!r}, but color={options['color']!r} "
                f"was also given; use get('color', color=...) instead."
            )
        options = {**options, "color": key}
        key = "color"
    if key not in STRATEGIES:
        raise ValueError(f"unknown mask {name!r}; valid names: {', '.join(names())}.")
    cls = STRATEGIES[key]
    unknown = sorted(set(options) - set(cls.option_names()))
    if unknown:
        valid = ", ".join(cls.option_names()) or "none"
        raise ValueError(
            f"mask {key!r} has no option {', '.join(unknown)}; its options are: {valid}."
        )
    return cls(**options)
