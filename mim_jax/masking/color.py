"""ColorMAE colour-noise masks made on device (Hinojosa et al., ECCV 2024, arXiv 2407.13036).

White Gaussian noise is filtered in the Fourier domain by one of the colour filters of
:mod:`mim_jax.masking.filters` and the K *highest* values of each window stay visible, as in
ColorMAE's code. By default (``filter="figure"``) the filters are calibrated so that the noise's
periodogram matches the periodograms of the official ColorMAE noise banks, which the official
repository's overview figure shows (:mod:`mim_jax.masking.calibrate` holds them as numbers and
prints the match)::

    white  : no filter
    red    : Gaussian low-pass in |f| (std 0.072 cycles/patch)    one or two large blobs
    green  : Gaussian ring, centre 0.196, std 0.065 cycles/patch   labyrinth-like clusters
    blue   : Gaussian shoulder reaching 1 at |f| = 0.67            dispersed, evenly spread
    purple : DC lobe + blue-like shoulder, deep stop band between  blobs of fine checkerboard

``filter="paper"`` uses the paper's literal Gaussian formulas instead (``G(sigma)``,
``1 - G(sigma)``, ``G(sigma1) - G(sigma2)``, ``1 - (G(sigma1) - G(sigma2))``; see
:mod:`mim_jax.masking.filters` for the shapes, their defaults and why the figure's noise needs
other shapes).

White noise is synthesised directly in the Fourier domain (independent uniform real and
imaginary parts per frequency, self-conjugate bins rescaled so every frequency gets the same
power), multiplied by the filter (scaled so the field has unit variance) and inverse-transformed:
one inverse FFT instead of a forward and an inverse one, and every field value is a sum over all
coefficients, so the field is Gaussian before filtering and has no ties. The periodic field is
larger than the grid by a margin of about four correlation lengths per axis
(:func:`mim_jax.masking.filters.default_margin`: there the noise's autocorrelation has fallen to
about 2%, so the wrap-around does not show inside a window); each sample then takes its own
random crop and random flips. :func:`color_noise` returns these windows before ranking.

``color3d`` filters spatio-temporal noise on (T, H, W) grids (the "Green3D" idea of
arXiv 2503.16311), so masks evolve smoothly over time; ``color_tf`` filters time-frequency
grids of spectrogram patches, by default with patterns half as long along frequency. Both rank
all N patches jointly.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mim_jax.masking.base import MaskGenerator
from mim_jax.masking.core import Grid, Masks, masks_from_scores
from mim_jax.masking.filters import (
    COLORS,
    FILTERS,
    PAPER_DEFAULTS,
    SHAPE_OPTIONS,
    Sigma,
    color_transfer,
    default_margin,
    resolve_filter,
    resolve_scale,
    unit_variance_gain,
)

__all__ = [
    "COLORS",
    "FILTERS",
    "Color3DMasking",
    "ColorMasking",
    "ColorTFMasking",
    "Sigma",
    "color_noise",
    "filtered_noise",
    "random_windows",
]


def filtered_noise(
    key: jax.Array,
    batch_size: int,
    transfer: np.ndarray,
    field: Grid,
    window: Grid | None = None,
) -> jax.Array:
    """float32[B, *window] unit-variance white noise filtered by ``transfer`` on a periodic field.

    The spectrum is drawn directly: real and imaginary parts uniform on 256 levels in (-1, 1),
    four per random 32-bit word (a quarter of the random bits of float draws, which dominate the
    cost; the inverse transform sums hundreds of them per value with irrational weights, so the
    field is continuous, Gaussian and free of ties). The self-conjugate
    columns of the ``rfftn`` grid (last-axis frequency 0 and, for even sizes, Nyquist) count only
    their real part, which would leave them half the power of the others; they are scaled by
    sqrt(2) to stay white. The filter is scaled so the field's expected variance is 1.

    Only the leading ``window`` corner of the field is computed: the inverse transform is one
    dense DFT matrix per axis, restricted to the window's rows (for the small grids of masks
    this is several times faster than an inverse FFT of the whole field followed by a crop; the
    result equals ``irfftn(spectrum, s=field)[:window]`` up to float32 rounding).

    Args:
      key: PRNG key.
      batch_size: B.
      transfer: float32 filter on the ``rfftn`` grid of ``field`` (from
        :func:`mim_jax.masking.filters.color_transfer`).
      field: the real periodic field's shape.
      window: the leading corner to return (None: the whole field), no larger than ``field``.
    """
    window = tuple(field) if window is None else tuple(window)
    ndim = len(field)
    columns = field[-1] // 2 + 1  # the rfft half of the last axis
    count = 2 * math.prod(transfer.shape)
    words = jax.random.bits(key, (batch_size, (count + 3) // 4), jnp.uint32)
    shifts = jnp.asarray([24, 16, 8, 0], jnp.uint32)
    parts = ((words[..., None] >> shifts) & 0xFF).reshape(batch_size, -1)
    uniform = (parts[:, :count].astype(jnp.float32) - 127.5) * (1.0 / 128.0)
    weight = np.array(transfer, np.float64) * unit_variance_gain(transfer, field)
    weight[..., 0] *= np.sqrt(2.0)
    if field[-1] % 2 == 0:
        weight[..., -1] *= np.sqrt(2.0)
    # The spectrum, laid out [B, real/imag, last-axis column, *other axes] so that every
    # transform below is one matrix product over the trailing axis.
    weight = np.moveaxis(weight, -1, 0).astype(np.float32)
    x = uniform.reshape(batch_size, 2, *weight.shape) * weight
    highest = jax.lax.Precision.HIGHEST
    for axis in reversed(range(ndim - 1)):
        # Complex inverse DFT along this axis, only its first w outputs: e^{+2 pi i k m / n}.
        n, w = field[axis], window[axis]
        angle = 2.0 * np.pi * np.outer(np.arange(n), np.arange(w)) / n
        both = np.concatenate([np.cos(angle), np.sin(angle)], 1).astype(np.float32)  # [n, 2w]
        position = axis + 3
        t = jnp.matmul(jnp.moveaxis(x, position, -1), both, precision=highest)
        real = t[:, 0, ..., :w] - t[:, 1, ..., w:]
        imag = t[:, 1, ..., :w] + t[:, 0, ..., w:]
        x = jnp.moveaxis(jnp.stack([real, imag], 1), -1, position)
    # Real inverse DFT along the last axis from its half spectrum, with numpy's 1 / N scaling.
    n, w = field[-1], window[-1]
    k = np.arange(columns)
    angle = 2.0 * np.pi * np.outer(k, np.arange(w)) / n
    double = np.where((k == 0) | ((n % 2 == 0) & (k == n // 2)), 1.0, 2.0)[:, None]
    last = np.concatenate([double * np.cos(angle), -double * np.sin(angle)], 0)
    last = (last / math.prod(field)).astype(np.float32)  # [2 * columns, w]
    x = jnp.moveaxis(x.reshape(batch_size, 2 * columns, *window[:-1]), 1, -1)
    return jnp.matmul(x, last, precision=highest).astype(jnp.float32)


def _fast_size(n: int) -> int:
    """The smallest m >= n whose prime factors are all 2, 3 or 5."""
    m = n
    while True:
        rest = m
        for p in (2, 3, 5):
            while rest % p == 0:
                rest //= p
        if rest == 1:
            return m
        m += 1


def random_windows(key: jax.Array, fields: jax.Array, window: Grid) -> jax.Array:
    """Per-sample random crop of ``window`` from each field, each axis flipped with p = 1/2.

    Args:
      key: PRNG key.
      fields: float32[B, *field].
      window: crop shape, no larger than the field in any axis.

    Returns:
      float32[B, *window].
    """
    batch, field = fields.shape[0], fields.shape[1:]
    key_offset, key_flip = jax.random.split(key)
    limits = jnp.asarray([f - w + 1 for f, w in zip(field, window, strict=True)])
    offsets = jax.random.randint(key_offset, (batch, len(window)), 0, limits)
    flips = jax.random.bernoulli(key_flip, 0.5, (batch, len(window)))

    def crop_one(field_i, offset_i, flip_i):
        out = jax.lax.dynamic_slice(field_i, tuple(offset_i), window)
        for axis in range(len(window)):
            out = jnp.where(flip_i[axis], jnp.flip(out, axis), out)
        return out

    return jax.vmap(crop_one)(fields, offsets, flips)


@dataclasses.dataclass(frozen=True)
class ColorMasking(MaskGenerator):
    """Colour-noise masks on 2-D image grids (H, W); see the module docstring.

    Options:
      color: "white", "red", "blue", "green" (the paper's recommendation) or "purple".
      filter: "figure" (default; calibrated to the official noise's periodograms) or "paper"
        (the paper's Gaussian formulas, for ablations).
      center, width, low_width: the figure filters' shape in cycles/patch along ``|f|``
        (:mod:`mim_jax.masking.filters`): red reads width; green and blue read center and width;
        purple reads all three.
      sigma: paper red/blue Gaussian std in patches (a float, or one per axis).
      sigma1, sigma2: paper green/purple inner and outer Gaussian stds, sigma1 < sigma2.
      scale: stretches the pattern by scale_i along axis i (a float or one per axis) [1].
      margin: patches added to each grid axis to make the periodic noise field that windows are
        cropped from (an int or one per axis); None picks about four correlation lengths per axis
        (0 for white noise). 0 means no crop: the window is the whole periodic field.
    """

    name = "color"
    ndims = (2,)
    color: str = "green"
    filter: str = "figure"
    center: float | None = None
    width: float | None = None
    low_width: float | None = None
    sigma: Sigma | None = None
    sigma1: Sigma | None = None
    sigma2: Sigma | None = None
    scale: float | tuple[float, ...] | None = None
    margin: int | tuple[int, ...] | None = None

    def _given_shape(self) -> dict[str, Any]:
        return {opt: getattr(self, opt) for opt in SHAPE_OPTIONS}

    def _default_scale(self) -> float | tuple[float, ...] | None:
        return None

    def _validate_options(self) -> None:
        ndim = self.ndims[0]
        params = resolve_filter(self.name, self.color, self.filter, self._given_shape(), ndim)
        object.__setattr__(self, "_params", params)
        for option, value in params.items():  # lists become tuples: the generator stays hashable
            object.__setattr__(self, option, value)
        scale = self.scale if self.scale is not None else self._default_scale()
        object.__setattr__(self, "_scale", resolve_scale(self.name, scale, ndim))
        if isinstance(self.scale, list):
            object.__setattr__(self, "scale", tuple(self.scale))
        if isinstance(self.margin, list):
            object.__setattr__(self, "margin", tuple(self.margin))
        object.__setattr__(self, "_margin", self._resolve_margin(ndim))

    def _resolve_margin(self, ndim: int) -> tuple[int, ...]:
        if self.margin is None:
            return default_margin(self.filter, self._params, self._scale, ndim)
        values = self.margin if isinstance(self.margin, tuple | list) else (self.margin,) * ndim
        valid = all(isinstance(m, int) and not isinstance(m, bool) and m >= 0 for m in values)
        if len(values) != ndim or not valid:
            raise ValueError(
                f"{self.name}: option margin must be an int >= 0 or {ndim} of them, "
                f"got {self.margin!r}."
            )
        return tuple(values)

    @property
    def params(self) -> dict[str, Any]:
        """The shape options this colour's filter uses, defaults filled in."""
        return dict(self._params)

    @property
    def sigmas(self) -> dict[str, Any]:
        """Alias of :attr:`params` (the paper family's options are sigmas)."""
        return self.params

    def transfer(self, field: Grid) -> np.ndarray:
        """float32 filter (amplitude) on the ``rfftn`` grid of a periodic field ``field``."""
        return color_transfer(self.color, field, self.filter, self._scale, **self._params)

    def field_shape(self, grid: Grid) -> Grid:
        """The periodic field the windows of ``grid`` are cut from: grid + margin per axis,
        rounded up to a size with no prime factor above 5 (fast FFTs) when the margin is auto."""
        field = tuple(g + m for g, m in zip(grid, self._margin, strict=True))
        if self.margin is None:
            field = tuple(
                g if m == 0 else _fast_size(f)
                for g, m, f in zip(grid, self._margin, field, strict=True)
            )
        return field

    def noise_field(self, key: jax.Array, batch_size: int, grid: Grid) -> jax.Array:
        """float32[B, *grid] filtered noise windows; masks keep the K highest values.

        Each window is the leading corner of its own periodic field: the field's law does not
        change under shifts or flips (the filters are even in every frequency axis), so a random
        crop or flip of fresh noise would not change the windows' distribution.
        """
        field = self.field_shape(grid)
        return filtered_noise(key, batch_size, self.transfer(field), field, grid)

    def _generate(self, key: jax.Array, *, batch_size: int, grid: Grid, k: int) -> Masks:
        windows = self.noise_field(key, batch_size, grid)
        return masks_from_scores(windows.reshape(batch_size, -1), k)


@dataclasses.dataclass(frozen=True)
class Color3DMasking(ColorMasking):
    """Spatio-temporal colour noise on video grids (T, H, W), filtered in 3-D.

    The filter is isotropic by default (the same number of patches along time and space), so
    masks change smoothly from one tubelet to the next; ``scale=(scale_t, 1, 1)`` (or, for the
    paper filters, a 3-tuple sigma ``(sigma_t, sigma_h, sigma_w)``) sets the temporal
    correlation separately. The K highest values over all T*H*W patches stay visible.
    """

    name = "color3d"
    ndims = (3,)


@dataclasses.dataclass(frozen=True)
class ColorTFMasking(ColorMasking):
    """Colour noise on time-frequency grids (T, F) of spectrogram patches.

    Spectrogram grids are short in frequency (AudioMAE: 64 x 8), so the defaults make patterns
    half as long along frequency: ``scale=(1, 0.5)`` for the figure filters; for the paper
    filters, sigmas not given default to the image sigmas halved along frequency
    (``(sigma, sigma / 2)``). Any option may be given per axis, ``(time, freq)``.
    """

    name = "color_tf"
    ndims = (2,)

    def _default_scale(self) -> float | tuple[float, ...] | None:
        return (1.0, 0.5) if self.filter == "figure" else None

    def _validate_options(self) -> None:
        if self.filter == "paper" and self.color in PAPER_DEFAULTS:
            for opt, value in PAPER_DEFAULTS[self.color].items():
                if getattr(self, opt) is None:
                    object.__setattr__(self, opt, (value, value / 2))
        super()._validate_options()


def _generator_for(color: str, ndim: int, options: dict[str, Any]) -> ColorMasking:
    if ndim not in (2, 3):
        raise ValueError(f"color_noise: shape must be 2-D or 3-D, got {ndim}-D.")
    cls = ColorMasking if ndim == 2 else Color3DMasking
    unknown = sorted(set(options) - set(cls.option_names()))
    if unknown:
        raise ValueError(
            f"color_noise has no option {', '.join(unknown)}; its options are: "
            f"{', '.join(o for o in cls.option_names() if o != 'color')}."
        )
    return cls(color=color, **options)


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _noise(key: jax.Array, gen: ColorMasking, batch_size: int, shape: Grid) -> jax.Array:
    return gen.noise_field(key, batch_size, shape)


def color_noise(
    key: jax.Array,
    shape: tuple[int, ...],
    *,
    color: str,
    batch_size: int | None = None,
    **options: Any,
) -> jax.Array:
    """The filtered, unthresholded noise that the colour masks rank.

    ``masking.get(color, **options)`` keeps the K highest values of exactly these windows
    visible (same key, same windows).

    Args:
      key: a JAX PRNG key.
      shape: the window shape, 2-D ``(H, W)`` or 3-D ``(T, H, W)`` (filtered as ``color`` and
        ``color3d`` do), any size.
      color: one of ``COLORS``.
      batch_size: None for one window, else B >= 1.
      **options: the colour options of ``masking.get("color")``: ``filter``, ``center``,
        ``width``, ``low_width``, ``sigma``, ``sigma1``, ``sigma2``, ``scale``, ``margin``.

    Returns:
      float32[batch_size, *shape], or float32[*shape] without a batch size; zero-mean noise of
      about unit variance (exactly 1 in expectation over the periodic field).

    Raises:
      ValueError: a shape that is not 2-D or 3-D or has a side < 1, a batch size < 1, or an
        option the colour generators reject.
    """
    try:
        shape = tuple(int(s) for s in shape)
    except TypeError:
        raise ValueError(f"color_noise: shape must be a tuple of ints, got {shape!r}.") from None
    if any(s < 1 for s in shape):
        raise ValueError(f"color_noise: every side of shape must be >= 1, got {shape!r}.")
    single = batch_size is None
    if not single and (
        not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1
    ):
        raise ValueError(
            f"color_noise: batch_size must be None or an int >= 1, got {batch_size!r}."
        )
    gen = _generator_for(color, len(shape), options)
    noise = _noise(key, gen, 1 if single else batch_size, shape)
    return noise[0] if single else noise
