"""Which masks a train step draws: :class:`MaskSpec`, and its construction from a run config.

A spec is a plain, hashable value (a registry or colour name, the ratio and the generator's
options as sorted items), so compiled steps can be keyed by it and a sweep can compile one step
for several specs of one ratio.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from mim_jax.masking.base import MaskGenerator
from mim_jax.masking.registry import get


@dataclasses.dataclass(frozen=True)
class MaskSpec:
    """A masking strategy: ``name`` (registry or colour name), ``ratio`` and ``options``.

    ``options`` holds ``(name, value)`` pairs sorted by name; values are hashable (tuples, not
    lists).
    """

    name: str = "random"
    ratio: float = 0.75
    options: tuple[tuple[str, Any], ...] = ()

    def generator(self) -> MaskGenerator:
        """The generator (``masking.get(name, **options)``); raises ``ValueError`` if unknown."""
        return get(self.name, **dict(self.options))


def _hashable(value: Any) -> Any:
    if isinstance(value, Mapping) or hasattr(value, "items"):
        return {k: _hashable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return tuple(_hashable(v) for v in value)
    return value


def mask_options(config: Any) -> dict[str, Any]:
    """``config.mask_options`` as a plain dict, dropping unset (None) options."""
    options = config.get("mask_options") or {}
    return {k: _hashable(v) for k, v in options.items() if v is not None}


def mask_spec_from_config(config: Any) -> MaskSpec:
    """The spec of a run config (``config.mask``, ``config.mask_ratio``, ``config.mask_options``).

    ``config`` is a ConfigDict or any mapping-like object with those fields.
    """
    return MaskSpec(
        name=str(config.mask),
        ratio=float(config.mask_ratio),
        options=tuple(sorted(mask_options(config).items())),
    )
