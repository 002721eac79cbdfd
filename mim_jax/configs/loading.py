"""Loading config files and applying ``--config.a.b=value`` overrides (typed, locked).

A config file defines ``get_config(arg: str | None) -> ConfigDict`` and is named as
``path/to/file.py[:arg]`` (big_vision style), where ``arg`` is ``key=value,key=value`` parsed
by :func:`parse_arg` inside the file.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import hashlib
import importlib.util
import pathlib
import re
from collections.abc import Iterable, Sequence
from typing import Any

import ml_collections
from ml_collections import config_dict

from mim_jax import masking
from mim_jax.models.config import ViTConfig

ConfigDict = ml_collections.ConfigDict

# Where bare names ("demo", "mae_in1k:model=vit_large") are looked up.
CONFIG_DIR = pathlib.Path(__file__).resolve().parents[2] / "configs"


def split_top_level(text: str, sep: str = ",") -> list[str]:
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
        items = split_top_level(arg)
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
                    f"config arg {key!r} is not accepted{suggest(key, spec)}; "
                    f"valid keys: {', '.join(spec)}."
                )
            out[key] = _parse_value(value, spec[key], f"arg {key}", nullable=True)
    return ConfigDict(out, type_safe=False)


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


def suggest(name: str, valid: Iterable[str]) -> str:
    """``"; did you mean a or b?"`` for the closest of ``valid`` to ``name``, or ``""``."""
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
                f"{suggest('config.' + here, ['config.' + f for f in _all_fields(config)])} "
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
        return [f.name for f in dataclasses.fields(ViTConfig)]
    return []


def _mask_option_names(config: ConfigDict) -> list[str]:
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
