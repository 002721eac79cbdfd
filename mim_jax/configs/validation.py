"""Checking a run config before anything is compiled: every problem, with the field to change."""

from __future__ import annotations

import math
from typing import Any

import jax
import ml_collections

from mim_jax import masking
from mim_jax.configs.loading import suggest
from mim_jax.data.sources import SOURCES
from mim_jax.models.mae import mae_config, mae_kwargs

ConfigDict = ml_collections.ConfigDict


def _pair(value: Any) -> tuple[int, ...] | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return (value, value)
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return tuple(int(v) for v in value)
    return None


def mask_grid(config: ConfigDict) -> tuple[int, ...]:
    """The model's token grid: (h, w), or (t, h, w) for video (``num_frames`` set).

    Raises:
      ValueError: sizes that do not divide, naming the config fields.
    """
    m = config.model
    size, patch = _pair(m.image_size), _pair(m.patch_size)
    if size is None or patch is None:
        raise ValueError(
            f"config.model.image_size and patch_size must be an int or a pair, got "
            f"{m.image_size!r} and {m.patch_size!r}."
        )
    if min(size + patch) < 1 or any(s % p for s, p in zip(size, patch, strict=True)):
        raise ValueError(
            f"config.model.image_size={m.image_size} is not divisible by "
            f"config.model.patch_size={m.patch_size}; change one of them (e.g. patch_size="
            f"{_divisor_hint(size, patch)})."
        )
    grid = tuple(s // p for s, p in zip(size, patch, strict=True))
    if m.num_frames is not None:
        if m.tubelet_size < 1 or m.num_frames % m.tubelet_size:
            raise ValueError(
                f"config.model.num_frames={m.num_frames} is not divisible by "
                f"config.model.tubelet_size={m.tubelet_size}."
            )
        grid = (m.num_frames // m.tubelet_size, *grid)
    return grid


def _divisor_hint(size: tuple[int, ...], patch: tuple[int, ...]) -> str:
    g = math.gcd(*size)
    options = [d for d in (4, 8, 14, 16, 32) if g % d == 0]
    return " or ".join(map(str, options)) or "a divisor of the image size"


def _check_mask(config: ConfigDict, grid: tuple[int, ...] | None) -> list[str]:
    name = config.mask
    valid = masking.names()
    if not isinstance(name, str) or name.strip().lower() not in valid:
        return [
            f"config.mask={name!r} is not a mask{suggest(str(name).lower(), valid)}; "
            f"valid: {', '.join(valid)}."
        ]
    try:
        gen = masking.get(name, **masking.mask_options(config))
    except ValueError as e:
        return [
            f"config.mask={name!r} with config.mask_options={masking.mask_options(config)}: {e}"
        ]
    if grid is None:
        return []
    ratio = config.mask_ratio

    def draw(key):
        return gen(key, batch_size=1, grid=grid, mask_ratio=ratio)

    try:
        jax.eval_shape(draw, jax.random.key(0))  # traces (all static checks run), no compile
    except ValueError as e:
        k = masking.num_visible(math.prod(grid), ratio) if 0 < ratio < 1 else None
        hint = ""
        if name.strip().lower() == "tube" and len(grid) == 3 and k is not None:
            t, hw = grid[0], grid[1] * grid[2]
            hint = (
                f" For tube, K = {k} visible must be a multiple of T={t}: e.g. "
                f"config.mask_ratio={round(hw * ratio) * t}/{hw * t} "
                f"(= {round(hw * ratio) / hw:.6f})."
            )
        return [
            f"config.mask={name!r} cannot mask the model's grid {grid} (from config.model."
            f"image_size/patch_size/num_frames/tubelet_size) at config.mask_ratio={ratio}: "
            f"{e}{hint}"
        ]
    return []


# (field, lowest allowed value, whether the lowest itself is allowed, whether None is allowed)
_RANGES: tuple[tuple[str, float, bool, bool], ...] = (
    ("batch_size", 1, True, False),
    ("log_every", 1, True, False),
    ("checkpoint_every", 1, True, False),
    ("keep_checkpoints", 1, True, False),
    ("recon_every", 0, True, False),
    ("eval_every", 0, True, False),
    ("total_steps", 1, True, True),
    ("seed", 0, True, False),
    ("lr", 0, False, True),
    ("blr", 0, False, True),
    ("lr_scale", 0, False, False),
    ("clip_norm", 0, False, True),
    ("weight_decay", 0, True, False),
    ("end_lr", 0, True, False),
    ("data.memory_mb", 0, False, False),
)
_INT_FIELDS = frozenset(
    {"batch_size", "log_every", "checkpoint_every", "keep_checkpoints", "recon_every",
     "eval_every", "total_steps", "seed"}
)  # fmt: skip


def _check_ranges(config: ConfigDict) -> list[str]:
    """Numeric fields outside their range (each message names the field and what it takes)."""
    errors = []
    for name, low, inclusive, nullable in _RANGES:
        node: Any = config
        for part in name.split("."):
            node = node.get(part) if isinstance(node, ConfigDict) else None
        value = node
        if value is None:
            if not nullable:
                errors.append(f"config.{name} must be set.")
            continue
        kind = "an int" if name in _INT_FIELDS else "a number"
        is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if name in _INT_FIELDS and not isinstance(value, int):
            is_number = False
        if (
            not is_number
            or not math.isfinite(value)
            or value < low
            or (value == low and not inclusive)
        ):
            bound = f">= {low}" if inclusive else f"> {low}"
            errors.append(f"config.{name}={value!r} must be {kind} {bound}.")
    for name in ("b1", "b2"):
        value = config.get(name)
        if value is not None and not 0 <= value < 1:
            errors.append(f"config.{name}={value!r} must be in [0, 1).")
    ratio = config.get("mask_ratio")
    if not isinstance(ratio, (int, float)) or not 0 < ratio < 1:
        errors.append(f"config.mask_ratio={ratio!r} must be in (0, 1).")
    return errors


def validate(config: ConfigDict, num_devices: int) -> None:
    """Checks a config before anything is compiled.

    Raises:
      ValueError: listing every problem found and the field to change: the patch grid (image
        not divisible by patch, frames by tubelet), an unknown mask or mask option, a mask the
        grid cannot take, a batch not divisible by accum_steps or its micro-batch by the device
        count, a mesh that does not fit the devices, lr/blr, epochs, model kwargs.
    """
    errors: list[str] = []
    grid = None
    try:
        grid = mask_grid(config)
    except ValueError as e:
        errors.append(str(e))
    errors += _check_mask(config, grid)

    bs, accum = config.batch_size, config.accum_steps
    if not isinstance(accum, int) or accum < 1:
        errors.append(f"config.accum_steps must be a positive int, got {accum!r}.")
    elif bs < 1 or bs % accum:
        errors.append(
            f"config.batch_size={bs} is not divisible by config.accum_steps={accum}; "
            f"change one of them."
        )
    elif (bs // accum) % num_devices:
        micro = bs // accum
        hint = (num_devices * max(1, round(micro / num_devices))) * accum
        errors.append(
            f"config.batch_size={bs} (micro-batch {micro} with accum_steps={accum}) is not "
            f"divisible by the {num_devices} devices; use e.g. --config.batch_size={hint}."
        )

    sizes = {k: int(v) for k, v in config.mesh.items()}
    fixed = math.prod(v for v in sizes.values() if v != -1)
    if sum(v == -1 for v in sizes.values()) > 1 or any(v == 0 or v < -1 for v in sizes.values()):
        errors.append(f"config.mesh={sizes}: axis sizes must be positive, at most one -1.")
    elif num_devices % fixed or (-1 not in sizes.values() and fixed != num_devices):
        errors.append(
            f"config.mesh={sizes} does not fit {num_devices} devices: the product must equal "
            f"the device count (use -1 for one axis to take the rest)."
        )

    if (config.lr is None) == (config.blr is None):
        errors.append(
            "set exactly one of config.lr (absolute) and config.blr (lr = blr * batch_size / 256); "
            f"got lr={config.lr}, blr={config.blr} (e.g. --config.blr=None --config.lr=1e-3)."
        )
    if config.total_steps is None and config.epochs <= 0:
        errors.append(f"config.epochs must be positive, got {config.epochs}.")
    if config.warmup_epochs < 0 or (
        config.total_steps is None and config.warmup_epochs > config.epochs
    ):
        errors.append(
            f"config.warmup_epochs={config.warmup_epochs} must be in [0, config.epochs="
            f"{config.epochs}]."
        )
    errors += _check_ranges(config)
    if config.data.source not in SOURCES:
        errors.append(f"config.data.source={config.data.source!r}; valid: {', '.join(SOURCES)}.")
    if config.data.source.endswith("folder") and not config.data.path:
        errors.append(f"config.data.source={config.data.source!r} needs config.data.path.")

    if not any("config.model.image_size" in e or "num_frames" in e for e in errors):
        try:
            mae_config(**mae_kwargs(config))
        except (ValueError, TypeError) as e:
            errors.append(f"config.model: {e}")

    if errors:
        raise ValueError("invalid config:\n  - " + "\n  - ".join(errors))
