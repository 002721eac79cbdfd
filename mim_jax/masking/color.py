"""ColorMAE colour-noise masks made on device (Hinojosa et al., ECCV 2024, arXiv 2407.13036).

White Gaussian noise is filtered in the Fourier domain with the paper's four filters, ``G`` being
a Gaussian of std ``sigma`` patches (transfer function ``exp(-2 pi^2 sum_i sigma_i^2 f_i^2)`` with
``f`` in cycles per patch)::

    white  : 1
    red    : G(sigma)                      low-pass   -> large blobs
    blue   : 1 - G(sigma)                  high-pass  -> dispersed, evenly spread patches
    green  : G(sigma1) - G(sigma2)         band-pass (difference of Gaussians, sigma1 < sigma2)
    purple : 1 - (G(sigma1) - G(sigma2))   band-stop

White noise is synthesised directly in the Fourier domain (independent uniform real and
imaginary parts per frequency, self-conjugate bins rescaled so every frequency gets the same
power), multiplied by the filter and inverse-transformed: one inverse FFT instead of a forward
and an inverse one, and every field value is a sum over all coefficients, so the field is
Gaussian white noise before filtering and has no ties. The periodic field is larger than the grid
by a margin of ``ceil(4 * sigma)`` patches per axis (at that distance the filtered noise's
autocorrelation has fallen below 2%, so the wrap-around does not show inside a window); each
sample then takes its own random crop and random flips. As in the paper, the K *highest* values
of each window stay visible.

Default sigmas (patch units) and how they were calibrated: the paper's sigmas are not published
(``shared/research/colormae.md`` §1.1), so mim_jax picks them from the figures' description and
measures them with :mod:`mim_jax.masking.stats` on 14x14 grids at ratio 0.75 (``python -m
mim_jax.masking.calibrate`` prints the table in the README). Green uses sigma1=1, sigma2=2: the
DoG pass band peaks at ``f* = sqrt(ln(s2^2/s1^2) / (2 pi^2 (s2^2 - s1^2)))`` = 0.153 cycles/patch
(a period of 6.5 patches), which gives visible clusters about 1-4 patches wide as in the
paper's figures. Red's sigma=2 gives one or two large blobs per 14x14 window; blue's sigma=1
removes everything below ~0.1 cycles/patch, leaving the visible patches spread out with few
neighbours; purple shares green's sigmas.

``color3d`` filters spatio-temporal noise on (T, H, W) grids (the "Green3D" idea of
arXiv 2503.16311), so masks evolve smoothly over time; ``color_tf`` filters time-frequency
grids of spectrogram patches with a separate sigma per axis. Both rank all N patches jointly.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mim_jax.masking.base import MaskGenerator, positive
from mim_jax.masking.core import Grid, Masks, masks_from_scores

COLORS = ("white", "red", "blue", "green", "purple")
Sigma = float | tuple[float, ...]

# Which sigma options each colour reads, and their defaults (patch units, per axis or isotropic).
SIGMA_OPTIONS: dict[str, tuple[str, ...]] = {
    "white": (),
    "red": ("sigma",),
    "blue": ("sigma",),
    "green": ("sigma1", "sigma2"),
    "purple": ("sigma1", "sigma2"),
}
DEFAULT_SIGMAS: dict[str, dict[str, float]] = {
    "white": {},
    "red": {"sigma": 2.0},
    "blue": {"sigma": 1.0},
    "green": {"sigma1": 1.0, "sigma2": 2.0},
    "purple": {"sigma1": 1.0, "sigma2": 2.0},
}


def gaussian_transfer(field: Grid, sigma: Sigma) -> np.ndarray:
    """float32 transfer function of a Gaussian blur on the ``rfftn`` grid of ``field``.

    Args:
      field: the real field's shape, e.g. (28, 28).
      sigma: std in samples (patches); a float for every axis or one per axis.

    Returns:
      float32[*field[:-1], field[-1] // 2 + 1], ``exp(-2 pi^2 sum_i sigma_i^2 f_i^2)``.
    """
    sigmas = np.broadcast_to(np.asarray(sigma, np.float64), (len(field),))
    freqs = [np.fft.fftfreq(n) for n in field[:-1]] + [np.fft.rfftfreq(field[-1])]
    grids = np.meshgrid(*freqs, indexing="ij")
    exponent = sum((s * f) ** 2 for s, f in zip(sigmas, grids, strict=True))
    return np.exp(-2.0 * np.pi**2 * exponent).astype(np.float32)


def color_transfer(color: str, field: Grid, **sigmas: Sigma) -> np.ndarray:
    """float32 ``rfftn``-domain transfer function of one colour filter on ``field``.

    ``sigmas`` holds the colour's options (``sigma`` for red/blue, ``sigma1``/``sigma2`` for
    green/purple), already validated.
    """
    if color == "white":
        return np.ones_like(gaussian_transfer(field, 1.0))
    if color in ("red", "blue"):
        low = gaussian_transfer(field, sigmas["sigma"])
        return low if color == "red" else 1.0 - low
    band = gaussian_transfer(field, sigmas["sigma1"]) - gaussian_transfer(field, sigmas["sigma2"])
    return band if color == "green" else 1.0 - band


def filtered_noise(key: jax.Array, batch_size: int, transfer: np.ndarray, field: Grid) -> jax.Array:
    """float32[B, *field] white noise filtered by ``transfer``, on a periodic field.

    The spectrum is drawn directly: real and imaginary parts uniform on (-1, 1), 16 bits each, two
    per random 32-bit word (half the random bits of float draws; the inverse FFT sums hundreds of
    them per value, so the field is continuous and Gaussian). ``irfftn`` reads only the real part
    of the self-conjugate columns (last-axis frequency 0 and, for even sizes, Nyquist), which
    would leave them half the power of the others; they are scaled by sqrt(2) to stay white.

    Args:
      key: PRNG key.
      batch_size: B.
      transfer: float32 filter on the ``rfftn`` grid of ``field`` (from :func:`color_transfer`).
      field: the real field's shape.
    """
    spectrum_shape = transfer.shape
    count = 2 * math.prod(spectrum_shape)
    words = jax.random.bits(key, (batch_size, (count + 1) // 2), jnp.uint32)
    halves = jnp.stack([words >> 16, words & 0xFFFF], axis=-1).reshape(batch_size, -1)
    uniform = (halves[:, :count].astype(jnp.float32) - 32767.5) * (1.0 / 32768.0)
    real, imag = (part.reshape(batch_size, *spectrum_shape) for part in jnp.split(uniform, 2, -1))
    weight = np.array(transfer, np.float32)
    weight[..., 0] *= np.sqrt(2.0)
    if field[-1] % 2 == 0:
        weight[..., -1] *= np.sqrt(2.0)
    spectrum = jax.lax.complex(real, imag) * weight
    axes = tuple(range(1, len(field) + 1))
    return jnp.fft.irfftn(spectrum, s=field, axes=axes).astype(jnp.float32)


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


def resolve_sigmas(name: str, color: str, given: dict[str, Any], ndim: int) -> dict[str, Sigma]:
    """Checks the colour and its sigma options; returns the sigmas the colour uses.

    Raises:
      ValueError: unknown colour, a sigma option the colour does not read, a non-positive sigma,
        a per-axis tuple of the wrong length, or green/purple with sigma1 >= sigma2.
    """
    if color not in COLORS:
        raise ValueError(f"{name}: unknown color {color!r}; valid colors: {', '.join(COLORS)}.")
    used = SIGMA_OPTIONS[color]
    stray = [opt for opt, value in given.items() if value is not None and opt not in used]
    if stray:
        reads = ", ".join(used) if used else "no sigma"
        raise ValueError(
            f"{name}: color={color!r} reads {reads}; remove {', '.join(stray)} "
            f"(red/blue take sigma, green/purple take sigma1 < sigma2, white takes none)."
        )
    sigmas = {
        opt: given[opt] if given.get(opt) is not None else DEFAULT_SIGMAS[color][opt]
        for opt in used
    }
    for opt, value in sigmas.items():
        positive(name, opt, value)
        if isinstance(value, tuple | list) and len(value) != ndim:
            raise ValueError(
                f"{name}: option {opt} is per axis here and needs {ndim} values "
                f"(one per grid axis) or one number, got {value!r}."
            )
        sigmas[opt] = tuple(float(v) for v in value) if isinstance(value, tuple | list) else value
    if color in ("green", "purple"):
        s1 = np.broadcast_to(np.asarray(sigmas["sigma1"], float), (ndim,))
        s2 = np.broadcast_to(np.asarray(sigmas["sigma2"], float), (ndim,))
        if not np.all(s1 < s2):
            raise ValueError(
                f"{name}: {color} is a difference of Gaussians and needs sigma1 < sigma2 on every "
                f"axis, got sigma1={sigmas['sigma1']}, sigma2={sigmas['sigma2']}."
            )
    return sigmas


@dataclasses.dataclass(frozen=True)
class ColorMasking(MaskGenerator):
    """Colour-noise masks on 2-D image grids (H, W); see the module docstring.

    Options:
      color: "white", "red", "blue", "green" (the paper's recommendation) or "purple".
      sigma: red/blue Gaussian std in patches (a float, or one per axis).
      sigma1, sigma2: green/purple inner and outer Gaussian stds, sigma1 < sigma2.
      margin: patches added to each grid axis to make the periodic noise field that windows are
        cropped from (an int or one per axis); None picks ``ceil(4 * largest sigma)`` per axis
        (0 for white noise). 0 means no crop: the window is the whole periodic field.
    """

    name = "color"
    ndims = (2,)
    color: str = "green"
    sigma: Sigma | None = None
    sigma1: Sigma | None = None
    sigma2: Sigma | None = None
    margin: int | tuple[int, ...] | None = None

    def _validate_options(self) -> None:
        given = {"sigma": self.sigma, "sigma1": self.sigma1, "sigma2": self.sigma2}
        ndim = self.ndims[0]
        sigmas = resolve_sigmas(self.name, self.color, given, ndim)
        object.__setattr__(self, "_sigmas", sigmas)
        for option, value in sigmas.items():  # lists become tuples: the generator stays hashable
            object.__setattr__(self, option, value)
        if isinstance(self.margin, list):
            object.__setattr__(self, "margin", tuple(self.margin))
        object.__setattr__(self, "_margin", self._resolve_margin(sigmas, ndim))

    def _resolve_margin(self, sigmas: dict[str, Sigma], ndim: int) -> tuple[int, ...]:
        if self.margin is None:
            per_axis = [np.broadcast_to(np.asarray(v, float), (ndim,)) for v in sigmas.values()]
            widest = np.max(per_axis, axis=0) if per_axis else np.zeros(ndim)
            return tuple(math.ceil(4 * w) for w in widest)
        values = self.margin if isinstance(self.margin, tuple | list) else (self.margin,) * ndim
        valid = all(isinstance(m, int) and not isinstance(m, bool) and m >= 0 for m in values)
        if len(values) != ndim or not valid:
            raise ValueError(
                f"{self.name}: option margin must be an int >= 0 or {ndim} of them, "
                f"got {self.margin!r}."
            )
        return tuple(values)

    @property
    def sigmas(self) -> dict[str, Sigma]:
        """The sigma options this colour uses, defaults filled in."""
        return dict(self._sigmas)

    def noise_field(self, key: jax.Array, batch_size: int, grid: Grid) -> jax.Array:
        """float32[B, *grid] filtered noise windows; masks keep the K highest values."""
        field = tuple(g + m for g, m in zip(grid, self._margin, strict=True))
        transfer = color_transfer(self.color, field, **self._sigmas)
        key_noise, key_crop = jax.random.split(key)
        fields = filtered_noise(key_noise, batch_size, transfer, field)
        if field == grid:
            return fields
        return random_windows(key_crop, fields, grid)

    def _generate(self, key: jax.Array, *, batch_size: int, grid: Grid, k: int) -> Masks:
        windows = self.noise_field(key, batch_size, grid)
        return masks_from_scores(windows.reshape(batch_size, -1), k)


@dataclasses.dataclass(frozen=True)
class Color3DMasking(ColorMasking):
    """Spatio-temporal colour noise on video grids (T, H, W), filtered in 3-D.

    Sigmas are isotropic by default (the same number of patches along time and space), so masks
    change smoothly from one tubelet to the next; pass a 3-tuple ``(sigma_t, sigma_h, sigma_w)``
    to set the temporal correlation separately. The K highest values over all T*H*W patches stay
    visible.
    """

    name = "color3d"
    ndims = (3,)


@dataclasses.dataclass(frozen=True)
class ColorTFMasking(ColorMasking):
    """Colour noise on time-frequency grids (T, F) of spectrogram patches.

    Sigmas are per axis, ``(sigma_time, sigma_freq)``; a single number applies to both. The
    defaults halve the image sigmas along frequency, because spectrogram grids are short in
    frequency (AudioMAE: 64 x 8).
    """

    name = "color_tf"
    ndims = (2,)

    def _validate_options(self) -> None:
        given = {"sigma": self.sigma, "sigma1": self.sigma1, "sigma2": self.sigma2}
        defaults = {
            opt: (value, value / 2) for opt, value in DEFAULT_SIGMAS.get(self.color, {}).items()
        }
        for opt, value in defaults.items():
            if given.get(opt) is None and opt in SIGMA_OPTIONS[self.color]:
                object.__setattr__(self, opt, value)
        super()._validate_options()
