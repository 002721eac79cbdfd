"""Experiment configs: big_vision-style config files, overrides, validation and conversion.

A config file (see ``configs/*.py``) defines ``get_config(arg: str | None) -> ConfigDict``; it is
named on the command line as ``path/to/file.py[:arg]`` where ``arg`` is ``key=value,key=value``
(a bare ``key`` means ``key=True``), e.g.::

    python -m mim_jax.train --config configs/mae_in1k.py:model=vit_base,mask=green \\
        --workdir DIR --config.batch_size=1024 --config.model.dtype=bfloat16

>>> from mim_jax import configs
>>> cfg = configs.load("configs/demo.py", ["config.mask=random", "epochs=2"])
>>> configs.validate(cfg, num_devices=1)       # fails early, saying which field to change
>>> model_kwargs = configs.to_model_kwargs(cfg)  # for mim_jax.models.mae.mae_config
>>> opt = configs.to_optimizer_config(cfg, configs.steps_per_epoch(cfg))
>>> spec = configs.to_mask_spec(cfg)              # mim_jax.train.step.MaskSpec

The returned config is locked: a typo in an override or in code raises instead of adding a field.

Schema (every shipped config has all of these fields; ``None`` = optional/unset)::

    config.model                 kwargs of mim_jax.models.mae.mae_config
      .name                      encoder size: vit_tiny | vit_small | vit_base | vit_large | ...
      .image_size                int, or (H, W) (a spectrogram is (T, F) with channels=1)
      .patch_size                int, or (p, q)
      .channels                  3 (1 for audio)
      .num_frames, .tubelet_size video: frames (None = image model) and tubelet length
      .decoder                   "mae" | "crossmae"
      .decoder_width/_depth/_num_heads
      .pred_fraction, .weight_fm, .use_input, .self_attn   CrossMAE options
      .cls_token, .norm_pix_loss, .dtype ("float32" | "bfloat16"), .param_dtype, .remat
      .encoder_overrides         ConfigDict of ViTConfig fields (width, depth, num_heads, mlp_dim);
                                 an override may add any of these four keys
    config.mask                  registry name (masking.names()) or a colour shorthand
    config.mask_ratio            fraction of patches masked (K = N - floor(N * r + 1/2) visible)
    config.mask_options          ConfigDict of the generator's options (a None value is dropped;
                                 an override may add a key the configured mask accepts)
    config.data
      .source                    "digits" | "folder" | "tfds" | "synthetic"
      .name, .path, .split       tfds name / image folder / split (image size is model.image_size)
      .num_examples              training-set size (for steps per epoch), None if unknown
      .crop_scale                RandomResizedCrop area range, (0.2, 1.0) as MAE
    config.batch_size            global batch (divisible by accum_steps; micro-batch by devices)
    config.accum_steps           gradient accumulation micro-steps per optimizer step
    config.epochs, .warmup_epochs
    config.total_steps           optional: overrides epochs * steps_per_epoch
    config.lr | config.blr       absolute peak lr, or MAE's base lr (lr = blr * batch_size / 256);
                                 exactly one of them is set
    config.lr_scale              multiplies the peak lr (CrossMAE: kept_mask_ratio / mask_ratio)
    config.b1, .b2, .weight_decay, .end_lr, .clip_norm (None = no clipping), .decay_tokens
    config.seed
    config.log_every, .checkpoint_every, .keep_checkpoints, .recon_every, .eval_every   (steps)
    config.log_all_processes     progress lines from every process (default: process 0 only)
    config.wandb.enabled, .project, .entity, .mode, .run_name   Weights & Biases logging
                                 (off by default; mode online | offline | disabled)
    config.mesh.data, .fsdp, .tensor   mesh axis sizes; -1 = all remaining devices
"""

from __future__ import annotations

import ast
import difflib
import hashlib
import importlib.util
import inspect
import json
import math
import pathlib
import re
from collections.abc import Iterable, Sequence
from typing import Any

import ml_collections
from ml_collections import config_dict

__all__ = [
    "base_config",
    "import_file",
    "load",
    "parse_arg",
    "steps_per_epoch",
    "to_mask_spec",
    "to_model_kwargs",
    "to_optimizer_config",
    "validate",
]

ConfigDict = ml_collections.ConfigDict

# Where bare names ("demo", "mae_in1k:model=vit_large") are looked up.
CONFIG_DIR = pathlib.Path(__file__).resolve().parents[2] / "configs"


# --------------------------------------------------------------------------------------------
# Building configs (used by the files in configs/)
# --------------------------------------------------------------------------------------------


def base_config(image_size: int | tuple[int, int] = 224) -> ConfigDict:
    """Every schema field with MAE ViT-B/16 ImageNet defaults (unlocked; files edit it).

    ``image_size`` fixes the field's type: an int (square images) or an (H, W) / (T, F) tuple.
    """
    c = ConfigDict()
    c.model = ConfigDict(
        dict(
            name="vit_base",
            image_size=image_size,
            patch_size=16,
            channels=3,
            num_frames=config_dict.placeholder(int),
            tubelet_size=2,
            decoder="mae",
            decoder_width=512,
            decoder_depth=8,
            decoder_num_heads=16,
            pred_fraction=1.0,
            self_attn=False,
            weight_fm=False,
            use_input=False,
            cls_token=True,
            norm_pix_loss=True,
            dtype="float32",
            param_dtype="float32",
            remat=False,
            encoder_overrides=ConfigDict(),
        )
    )
    c.mask = "random"
    c.mask_ratio = 0.75
    c.mask_options = ConfigDict()
    c.data = ConfigDict(
        dict(
            source="tfds",
            name="imagenet2012",
            path=config_dict.placeholder(str),
            split="train",
            num_examples=config_dict.placeholder(int),
            crop_scale=(0.2, 1.0),  # RandomResizedCrop's area range (MAE: 0.2-1)
        )
    )
    c.data.num_examples = 1_281_167
    c.batch_size = 4096
    c.accum_steps = 1
    c.epochs = 800
    c.warmup_epochs = 40
    c.total_steps = config_dict.placeholder(int)
    c.lr = config_dict.placeholder(float)
    c.blr = config_dict.placeholder(float)
    c.blr = 1.5e-4
    c.lr_scale = 1.0
    c.b1 = 0.9
    c.b2 = 0.95
    c.weight_decay = 0.05
    c.end_lr = 0.0
    c.clip_norm = config_dict.placeholder(float)
    c.decay_tokens = True
    c.seed = 0
    c.log_every = 50
    c.checkpoint_every = 1000
    c.keep_checkpoints = 3
    c.recon_every = 1000
    c.eval_every = 0
    c.log_all_processes = False  # progress lines from every process, not just process 0
    c.wandb = ConfigDict(  # optional Weights & Biases logging (mim_jax.train.wandb_log)
        dict(
            enabled=False,
            project="mim_jax",
            entity=config_dict.placeholder(str),
            mode="online",
            run_name=config_dict.placeholder(str),
        )
    )
    c.mesh = ConfigDict(dict(data=-1, fsdp=1, tensor=1))
    return c


def _split_top_level(text: str, sep: str = ",") -> list[str]:
    """Splits on ``sep`` outside brackets/quotes, so ``size=(1024,128)`` stays whole."""
    parts, depth, quote, current = [], 0, None, []
    for ch in text:
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == sep and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        current.append(ch)
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


def parse_arg(arg: str | None, **spec: Any) -> ConfigDict:
    """big_vision's ``parse_arg``: ``"model=vit_large,mask=green,fast"`` -> typed ConfigDict.

    ``spec`` gives every accepted key and its default; values are parsed with the default's type
    (a ``None`` default keeps the string, or a Python literal). A bare ``key`` means True; a
    single bare value that is not a key fills the first spec entry.

    Raises:
      ValueError: an unknown key (naming the closest valid ones) or an unparsable value.
    """
    out = dict(spec)
    if arg:
        items = _split_top_level(arg)
        for i, item in enumerate(items):
            if "=" in item:
                key, value = (s.strip() for s in item.split("=", 1))
            elif item in spec:
                key, value = item, "True"
            elif i == 0 and len(items) == 1 and spec:
                key, value = next(iter(spec)), item
            else:
                key, value = item, "True"
            if key not in spec:
                raise ValueError(
                    f"config arg {key!r} is not accepted{_suggest(key, spec)}; "
                    f"valid keys: {', '.join(spec)}."
                )
            out[key] = _parse_value(value, spec[key], f"arg {key}", nullable=True)
    return ConfigDict(out, type_safe=False)


# --------------------------------------------------------------------------------------------
# Loading and overrides
# --------------------------------------------------------------------------------------------


def _resolve_path(path: str) -> pathlib.Path:
    candidates = [pathlib.Path(path)]
    if not path.endswith(".py"):
        candidates.append(pathlib.Path(path + ".py"))
    candidates += [CONFIG_DIR / c.name for c in candidates if c.parent == pathlib.Path(".")]
    for c in candidates:
        if c.is_file():
            return c
    shipped = sorted(p.stem for p in CONFIG_DIR.glob("*.py")) if CONFIG_DIR.is_dir() else []
    raise ValueError(
        f"config file {path!r} not found (tried {', '.join(map(str, candidates))}); "
        f"shipped configs: {', '.join(shipped) or 'none'}."
    )


def _split_spec(spec: str) -> tuple[str, str | None]:
    match = re.match(r"^(.*?\.py):(.*)$", spec)
    if match:
        return match.group(1), match.group(2)
    if spec.endswith(".py") or ":" not in spec:
        return spec, None
    path, arg = spec.split(":", 1)  # bare name: "mae_in1k:model=vit_large"
    return path, arg


def import_file(path: str | pathlib.Path):
    """Imports a Python file by path (config files, and helpers they share such as
    ``configs/_video.py``) under a name derived from its absolute path."""
    path = pathlib.Path(path)
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:10]
    module_spec = importlib.util.spec_from_file_location(f"_mim_config_{digest}", path)
    if module_spec is None or module_spec.loader is None:
        raise ValueError(f"cannot import config file {str(path)!r}.")
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def _import_file(path: pathlib.Path):
    module = import_file(path)
    if not hasattr(module, "get_config"):
        raise ValueError(f"config file {str(path)!r} defines no get_config(arg=None).")
    return module


def load(spec: str, overrides: Sequence[str] = ()) -> ConfigDict:
    """Loads ``path/to/file.py[:arg]`` (or a shipped config's bare name) and applies overrides.

    Args:
      spec: big_vision-style config spec; ``arg`` (``key=value,...``) goes to ``get_config``.
      overrides: ``--config.a.b=value``, ``config.a.b=value`` or ``a.b=value`` strings; values
        are parsed with the type of the existing field (int, float, bool, str, tuple; ``None``
        for optional fields).

    Returns:
      the locked ConfigDict.

    Raises:
      ValueError: a missing file, an unknown field (naming the closest valid fields) or a value
        that does not parse as the field's type.
    """
    path, arg = _split_spec(spec)
    module = _import_file(_resolve_path(path))
    config = module.get_config(arg or None)
    if not isinstance(config, ConfigDict):
        raise ValueError(f"{path}: get_config must return an ml_collections.ConfigDict.")
    config.lock()
    for override in overrides:
        apply_override(config, override)
    return config


def _all_fields(config: ConfigDict, prefix: str = "") -> list[str]:
    names = []
    for key, value in config.items():
        names.append(prefix + key)
        if isinstance(value, ConfigDict):
            names += _all_fields(value, prefix + key + ".")
    return names


def _suggest(name: str, valid: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(valid), n=3, cutoff=0.6)
    return f"; did you mean {' or '.join(close)}?" if close else ""


def _strip_override(override: str) -> tuple[str, str]:
    text = override.strip()
    if text.startswith("--"):
        text = text[2:]
    if "=" not in text:
        raise ValueError(f"override {override!r} must look like --config.a.b=value.")
    key, value = text.split("=", 1)
    key = key.strip()
    if key.startswith("config."):
        key = key[len("config.") :]
    return key, value.strip()


def apply_override(config: ConfigDict, override: str) -> None:
    """Sets one ``[--][config.]a.b=value`` override on ``config`` in place (see :func:`load`)."""
    key, raw = _strip_override(override)
    parts = key.split(".")
    node = config
    for i, part in enumerate(parts):
        here = ".".join(parts[: i + 1])
        if not isinstance(node, ConfigDict) or part not in node:
            if i == len(parts) - 1 and part in _addable_keys(config, parts[:-1]):
                with node.unlocked():  # a key the mask generator / ViTConfig accepts
                    node[part] = _parse_value(raw, None, f"config.{key}", nullable=True)
                return
            raise ValueError(
                f"unknown config field config.{here}"
                f"{_suggest('config.' + here, ['config.' + f for f in _all_fields(config)])} "
                f"(overrides cannot add fields; valid top-level fields: "
                f"{', '.join(config.keys())})."
            )
        if i < len(parts) - 1:
            node = node[part]
    last = parts[-1]
    current = node[last]
    if isinstance(current, ConfigDict):
        raise ValueError(
            f"config.{key} is a group; override its fields instead: "
            f"{', '.join('config.' + key + '.' + k for k in current) or '(none)'}."
        )
    field = getattr(node, "_fields", {}).get(last)
    nullable = current is None or isinstance(field, config_dict.FieldReference)
    value = _parse_value(raw, current, f"config.{key}", nullable, node.get_type(last))
    try:
        node[last] = value
    except (TypeError, ValueError) as e:
        raise ValueError(f"cannot set config.{key}={raw!r}: {e}") from None


def _addable_keys(config: ConfigDict, group: list[str]) -> list[str]:
    """Keys an override may add to an open-ended group (never anywhere else)."""
    if group == ["mask_options"]:
        return _mask_option_names(config)
    if group == ["model", "encoder_overrides"]:
        import dataclasses

        from mim_jax.models.config import ViTConfig

        return [f.name for f in dataclasses.fields(ViTConfig)]
    return []


def _mask_option_names(config: ConfigDict) -> list[str]:
    from mim_jax import masking

    name = str(config.get("mask", "")).strip().lower()
    if name in masking.COLORS:
        name = "color"
    cls = masking.STRATEGIES.get(name)
    return cls.option_names() if cls is not None else []


_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def _literal(raw: str) -> Any:
    try:
        return ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return raw


def _parse_value(
    raw: str, current: Any, what: str, nullable: bool = False, kind: type | None = None
) -> Any:
    """Parses ``raw`` with the type of ``current`` (or ``kind`` for a None placeholder)."""
    text = raw.strip()
    if text.lower() in ("none", "null"):
        if not nullable:
            raise ValueError(f"{what} cannot be None (it is a {type(current).__name__}).")
        return None
    if kind is None or kind is type(None):
        kind = type(current) if current is not None else None
    try:
        if kind is None:
            return _literal(text)
        if kind is bool:
            if text.lower() in _TRUE:
                return True
            if text.lower() in _FALSE:
                return False
            raise ValueError("expected true/false")
        if kind is int:
            value = _literal(text)
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError("expected an int")
            return value
        if kind is float:
            value = _literal(text)
            if isinstance(value, str) and "/" in value:  # "1408/1568"
                num, den = value.split("/", 1)
                return float(num) / float(den)
            return float(value)
        if kind is str:
            value = _literal(text)
            return value if isinstance(value, str) else text
        if kind in (tuple, list):
            value = _literal(text if text[:1] in "([" else f"({text},)")
            if not isinstance(value, (tuple, list)):
                raise ValueError("expected a tuple like (1024,128)")
            return kind(value)
    except (ValueError, TypeError, ZeroDivisionError) as e:
        raise ValueError(f"cannot parse {what}={raw!r} as {kind.__name__}: {e}.") from None
    return _literal(text)


# --------------------------------------------------------------------------------------------
# Conversion
# --------------------------------------------------------------------------------------------


def to_json(config: ConfigDict) -> str:
    """The resolved config (after overrides) as indented JSON with sorted keys: what
    ``--print-config`` prints and what a run writes to ``WORKDIR/config.json``."""
    return json.dumps(_jsonable(config.to_dict()), indent=2, sort_keys=True) + "\n"


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _plain(value: Any) -> Any:
    if isinstance(value, ConfigDict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return tuple(_plain(v) for v in value)
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    return value


def _mae_config_params() -> dict[str, inspect.Parameter]:
    from mim_jax.models.mae import mae_config

    return dict(inspect.signature(mae_config).parameters)


def to_model_kwargs(config: ConfigDict) -> dict[str, Any]:
    """``config.model`` as keyword arguments of :func:`mim_jax.models.mae.mae_config`.

    ``name`` is included (``mae_config(**kwargs)`` works); ``encoder_overrides`` becomes a plain
    dict (None when empty).

    Raises:
      ValueError: a model field that ``mae_config`` does not take.
    """
    params = _mae_config_params()
    kwargs = {k: _plain(v) for k, v in config.model.items()}
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        raise ValueError(
            f"config.model has fields mae_config does not take: {', '.join(unknown)}; "
            f"valid: {', '.join(params)}."
        )
    if "encoder_overrides" in kwargs:
        kwargs["encoder_overrides"] = dict(kwargs["encoder_overrides"] or {}) or None
    return kwargs


def steps_per_epoch(config: ConfigDict, num_examples: int | None = None) -> int:
    """Optimizer steps per epoch: ``num_examples // batch_size`` (drop-remainder), at least 1."""
    n = num_examples if num_examples is not None else config.data.num_examples
    if n is None:
        raise ValueError(
            "steps per epoch unknown: set config.data.num_examples or config.total_steps."
        )
    return max(1, int(n) // int(config.batch_size))


def peak_learning_rate(config: ConfigDict) -> float:
    """``lr``, or ``blr * batch_size / 256``, times ``lr_scale``."""
    if (config.lr is None) == (config.blr is None):
        raise ValueError(
            "set exactly one of config.lr (absolute) and config.blr (lr = blr * batch_size / 256); "
            f"got lr={config.lr}, blr={config.blr} (e.g. --config.blr=None --config.lr=1e-3)."
        )
    lr = config.lr if config.lr is not None else config.blr * config.batch_size / 256
    return float(lr) * float(config.get("lr_scale", 1.0))


def to_optimizer_config(config: ConfigDict, steps_per_epoch: int):
    """An :class:`~mim_jax.train.optimizer.OptimizerConfig`; epochs are converted to steps.

    ``total_steps`` is ``config.total_steps`` when set, else ``epochs * steps_per_epoch``;
    ``warmup_steps = round(warmup_epochs * steps_per_epoch)`` (capped at total_steps).
    """
    from mim_jax.train.optimizer import OptimizerConfig

    if steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}.")
    total = config.total_steps
    if total is None:
        total = round(config.epochs * steps_per_epoch)
    warmup = min(round(config.warmup_epochs * steps_per_epoch), int(total))
    return OptimizerConfig(
        learning_rate=peak_learning_rate(config),
        warmup_steps=warmup,
        total_steps=int(total),
        b1=float(config.b1),
        b2=float(config.b2),
        weight_decay=float(config.weight_decay),
        end_learning_rate=float(config.get("end_lr", 0.0)),
        clip_norm=None if config.clip_norm is None else float(config.clip_norm),
        decay_tokens=bool(config.decay_tokens),
    )


def _mask_options(config: ConfigDict) -> dict[str, Any]:
    return {k: _plain(v) for k, v in config.mask_options.items() if v is not None}


def to_mask_spec(config: ConfigDict):
    """A :class:`~mim_jax.train.step.MaskSpec` (name, ratio, sorted option items)."""
    from mim_jax.train.step import MaskSpec

    return MaskSpec(
        name=str(config.mask),
        ratio=float(config.mask_ratio),
        options=tuple(sorted(_mask_options(config).items())),
    )


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


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
    import jax

    from mim_jax import masking

    name = config.mask
    valid = masking.names()
    if not isinstance(name, str) or name.strip().lower() not in valid:
        return [
            f"config.mask={name!r} is not a mask{_suggest(str(name).lower(), valid)}; "
            f"valid: {', '.join(valid)}."
        ]
    try:
        gen = masking.get(name, **_mask_options(config))
    except ValueError as e:
        return [f"config.mask={name!r} with config.mask_options={_mask_options(config)}: {e}"]
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

    try:
        peak_learning_rate(config)
    except ValueError as e:
        errors.append(str(e))
    if config.total_steps is None and config.epochs <= 0:
        errors.append(f"config.epochs must be positive, got {config.epochs}.")
    if config.warmup_epochs < 0 or (
        config.total_steps is None and config.warmup_epochs > config.epochs
    ):
        errors.append(
            f"config.warmup_epochs={config.warmup_epochs} must be in [0, config.epochs="
            f"{config.epochs}]."
        )
    if config.data.source not in ("digits", "folder", "tfds", "synthetic"):
        errors.append(
            f"config.data.source={config.data.source!r}; valid: digits, folder, tfds, synthetic."
        )
    if config.data.source == "folder" and not config.data.path:
        errors.append("config.data.source='folder' needs config.data.path.")

    if not any("config.model.image_size" in e or "num_frames" in e for e in errors):
        try:
            from mim_jax.models.mae import mae_config

            mae_config(**to_model_kwargs(config))
        except (ValueError, TypeError) as e:
            errors.append(f"config.model: {e}")

    if errors:
        raise ValueError("invalid config:\n  - " + "\n  - ".join(errors))
