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

    A generator is a pure function of a PRNG key: the pattern never depends on the image, so
    masks can be made on device inside a jit-compiled train step. Call it as
    ``gen(key, *, batch_size, grid, mask_ratio) -> Masks``.

    Example::

        >>> import jax
        >>> from mim_jax import masking
        >>> gen = masking.get("green")            # shorthand for get("color", color="green")
        >>> m = gen(jax.random.key(0), batch_size=8, grid=(14, 14), mask_ratio=0.75)
        >>> m.keep.shape, m.masked.shape, m.restore.shape, m.mask.shape
        ((8, 49), (8, 147), (8, 196), (8, 196))
        >>> str(m.keep.dtype), str(m.mask.dtype), int(m.mask.sum(axis=1).max())
        ('int32', 'bool', 147)
        >>> gen = masking.get("red", width=0.05)  # a colour with a filter option
        >>> gen = masking.get("block", min_num_patches=8)  # a strategy with an option
        >>> tube = masking.get("tube")            # video: grid (T, H, W)
        >>> tube(jax.random.key(1), batch_size=2, grid=(8, 14, 14), mask_ratio=0.9)
        Traceback (most recent call last):
        ValueError: tube: mask_ratio=0.9 on grid (8, 14, 14) gives K=157 visible patches, ...
        >>> tube(jax.random.key(1), batch_size=2, grid=(8, 14, 14), mask_ratio=0.898).num_visible
        160

    Call arguments (the same for every strategy):
      key: a JAX PRNG key (``jax.random.key(seed)`` or a raw ``uint32[2]`` key). Equal keys give
        equal masks; each sample of the batch gets its own pattern.
      batch_size: B, a static Python int >= 1.
      grid: the patch grid, a static tuple: ``(H, W)`` for images, ``(T, H, W)`` for video
        (tubelets), ``(T, F)`` for spectrograms (time x frequency). ``N = prod(grid)``.
      mask_ratio: the fraction of patches to mask, a static float strictly in (0, 1).

    Returns ``Masks`` (:class:`mim_jax.masking.core.Masks`), patches numbered row-major over
    the grid (``i = r * W + c``; video ``t * H * W + r * W + c``):
      keep: int32[B, K] visible patch indices, the order in which the encoder receives them
        (raster order for ``grid`` and ``uniform``; random or noise-ranked order otherwise).
      masked: int32[B, N - K] masked patch indices.
      restore: int32[B, N] inverse permutation:
        ``take_along_axis(concatenate([keep, masked], -1), restore, -1) == arange(N)``.
      mask: bool[B, N], True where masked (hidden from the encoder).
      secondary: bool[B, K] (``uniform`` with ``secondary_ratio > 0``: visible tokens hidden
        again) or None.
      and the properties ``batch_size`` (B), ``num_visible`` (K), ``num_patches`` (N).

    Rounding rule (the only one in mim_jax; :func:`mim_jax.masking.num_visible`):
    ``K = N - floor(N * mask_ratio + 1/2)``, the same static K for every sample and every
    strategy, so a step compiled for one strategy takes masks from any other. 196 patches at
    0.75 -> 49 visible; 1568 at 0.9 -> 157 visible (1411 masked, VideoMAE's count).

    Names and their options (``get(name, **options)``; defaults in brackets):

    ==========  ============  ===========================================================
    name        grid          options
    ==========  ============  ===========================================================
    random      (L,), (H, W)  none. MAE: K patches uniformly without replacement.
                or (T, H, W)
    block       (H, W)        min_num_patches [16], max_num_patches [None = all masked],
                              min_aspect [0.3], max_aspect [None = 1/min_aspect]. BEiT
                              blocks; sides >= 2.
    simmim      (H, W)        scale [2] = mask_patch_size / patch_size; sides divisible
                              by scale. SimMIM: whole scale x scale cells masked.
    grid        (H, W)        period [2], offset [(0, 0)]. MAE's fixed lattice, one visible
                              patch per period x period cell; the same for every sample;
                              ratio must be 1 - 1/period**2, sides multiples of period.
    uniform     (H, W)        sampling ["balanced" | "iid"], secondary_ratio [0.0]. UM-MAE:
                              one visible patch per 2x2 cell at a random position; ratio
                              0.75, even sides; ``m.secondary`` marks re-hidden tokens.
    tube        (T, H, W)     none. VideoMAE: one spatial pattern repeated in every frame;
                              K must be a multiple of T (the error names ratios that work).
    color       (H, W)        color ["green"], filter ["figure" | "paper"], center, width,
                              low_width, sigma, sigma1, sigma2, scale [1], margin [None =
                              auto]. ColorMAE filtered noise made on the fly, K highest
                              visible.
    color3d     (T, H, W)     as color; scale=(scale_t, 1, 1) (or paper sigmas per axis)
                              sets time apart. Video masks that move smoothly in time.
    color_tf    (T, F)        as color; defaults make patterns half as long along F
                              (scale (1, 0.5); paper: sigmas halved along F). Spectrograms.
    colorbank   (H, W)        color ["green"], bank [None = generate | path.npz | float32
                              array [L, M, N]], crop ["per_sample" | "batch_shared"],
                              shards [1], num_patterns [1024], size [64], seed [0], and
                              color's filter options. ColorMAE's released method: windows
                              cut from a bank.
    ==========  ============  ===========================================================

    Colours (``color=`` of color, color3d, color_tf, colorbank): white (no filter, like
    random), red (low-pass: a few large blobs), blue (high-pass: spread out), green (band-pass:
    mid-size clusters, ColorMAE's choice), purple (band-stop: blobs of fine checkerboard). By
    default (``filter="figure"``) the filters are shaped so the noise's periodogram matches the
    official ColorMAE noise (its repository's overview figure); their shapes are Gaussians in
    the radial frequency ``|f|`` (cycles/patch): red reads ``width``, green and blue ``center``
    and ``width``, purple also ``low_width`` (defaults in :mod:`mim_jax.masking.filters`).
    ``filter="paper"`` uses the paper's formulas with ``G`` a Gaussian blur of std in patches:
    red ``G(sigma)``, blue ``1 - G(sigma)`` (``sigma`` defaults 2 and 1), green
    ``G(sigma1) - G(sigma2)``, purple ``1 - (G(sigma1) - G(sigma2))`` (``sigma1 < sigma2``,
    defaults 1 and 2). White reads no shape option. ``scale`` stretches the pattern per axis;
    ``margin`` pads the periodic noise field (auto: about four correlation lengths).
    :func:`mim_jax.masking.color_noise` returns the noise itself. A colour name alone is
    shorthand: ``get("blue", width=0.3) == get("color", color="blue", width=0.3)``.
    Registered names: :func:`names` (the table's names, then the colours).

    Raises:
      ValueError: from ``get``: ``name`` is not a registered name or colour, an option is not
        one the strategy takes, or an option value is out of range (a negative sigma or width,
        paper green with ``sigma1 >= sigma2``, a filter option the colour does not read, an
        unknown colour, filter or crop mode, an unreadable bank file). From the call:
        ``batch_size < 1``, a grid of the wrong rank for the strategy or with a side < 1,
        ``mask_ratio`` outside (0, 1) or leaving no visible or no masked patch, or the
        strategy's own limits above (grid/uniform ratio and sides, simmim divisibility, tube's
        K multiple of T, block's 2x2 minimum, a grid larger than colorbank's patterns, a batch
        that colorbank's ``shards`` do not divide). Every message names the bad value and what
        is valid.
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
