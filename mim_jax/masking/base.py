"""The generator base class: option validation, call validation and the jit wrapper.

A strategy is a frozen dataclass whose fields are its options. Subclasses implement
``_generate(key, batch_size, grid, k) -> Masks`` (traced; shapes static) and may override
``_check(grid, k, mask_ratio)`` for strategy-specific limits.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, ClassVar

import jax

from mim_jax.masking.core import Grid, Masks, check_request

STATIC_ARGNAMES = ("batch_size", "grid", "k")


@dataclasses.dataclass(frozen=True)
class MaskGenerator:
    """Base class of every mask strategy. Call as ``gen(key, batch_size=, grid=, mask_ratio=)``.

    ``key`` is a JAX PRNG key (typed or raw uint32[2]); ``batch_size``, ``grid`` and
    ``mask_ratio`` are static Python values. The call validates them in Python, then runs the
    jit-compiled generator; inside an outer ``jax.jit`` it is traced inline, so masks are made
    on device inside the train step with no host round-trip.
    """

    name: ClassVar[str] = ""
    ndims: ClassVar[tuple[int, ...]] = (2,)
    deterministic: ClassVar[bool] = False  # True when the pattern ignores the key

    def __post_init__(self) -> None:
        self._validate_options()
        try:  # equal generators (same class and options) share one compiled function
            hash(self)
            jitted = functools.partial(type(self)._shared_jit(), self)
        except TypeError:
            jitted = jax.jit(self._generate, static_argnames=STATIC_ARGNAMES)
        object.__setattr__(self, "_jitted", jitted)

    @classmethod
    def _shared_jit(cls) -> Callable[..., Masks]:
        if "_class_jit" not in cls.__dict__:
            cls._class_jit = jax.jit(
                cls._generate, static_argnums=0, static_argnames=STATIC_ARGNAMES
            )
        return cls.__dict__["_class_jit"]

    def __call__(self, key: jax.Array, *, batch_size: int, grid: Grid, mask_ratio: float) -> Masks:
        grid, k = check_request(self.name, batch_size, grid, mask_ratio, self.ndims)
        self._check(grid, k, float(mask_ratio))
        return self._jitted(key, batch_size=batch_size, grid=grid, k=k)

    @classmethod
    def option_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    def _validate_options(self) -> None:
        """Raises ValueError for an option value out of range (override)."""

    def _check(self, grid: Grid, k: int, mask_ratio: float) -> None:
        """Raises ValueError for a grid or ratio this strategy cannot take (override)."""

    def _generate(self, key: jax.Array, *, batch_size: int, grid: Grid, k: int) -> Masks:
        raise NotImplementedError


def positive(name: str, option: str, value: Any, *, allow_zero: bool = False) -> None:
    """Raises ValueError unless ``value`` (or every entry of a tuple) is a positive number."""
    values = value if isinstance(value, tuple | list) else (value,)
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
    ok = numbers and all(v > 0 or (allow_zero and v == 0) for v in values)
    if not ok or not values:
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name}: option {option} must be a number {bound}, got {value!r}.")
