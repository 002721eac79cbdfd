"""Reading PyTorch state dicts (.pth / .safetensors / .npz) and writing safetensors + JSON.

Writing needs only ``safetensors`` (its NumPy API); reading a ``.pth`` needs ``torch``.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
from collections.abc import Mapping
from typing import Any

import numpy as np

# Keys under which training scripts nest the model's state dict (MAE: checkpoint["model"]).
NESTED_KEYS = ("model", "state_dict")


def to_numpy(value: Any) -> np.ndarray:
    """A torch tensor (any dtype, any device) or array-like as a NumPy array.

    Floating tensors come back as float32 (NumPy has no bfloat16), others keep their dtype.
    """
    if hasattr(value, "detach"):  # torch.Tensor, without importing torch
        value = value.detach().cpu()
        if value.is_floating_point():
            value = value.float()
        return value.numpy()
    return np.asarray(value)


def unwrap_state_dict(state: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The flat ``{key: array}`` state dict inside a checkpoint dict.

    Takes ``checkpoint["model"]`` (MAE's .pth files) or ``checkpoint["state_dict"]`` when the
    top level has no tensors, strips a DistributedDataParallel ``module.`` prefix and converts
    values to NumPy.

    Raises:
      ValueError: no tensors found.
    """
    state = dict(state)
    for key in NESTED_KEYS:
        if key in state and isinstance(state[key], Mapping):
            state = dict(state[key])
            break
    out = {}
    for key, value in state.items():
        if isinstance(value, Mapping | str | int | float | argparse.Namespace) or value is None:
            continue
        name = key[len("module.") :] if key.startswith("module.") else key
        out[name] = to_numpy(value)
    if not out:
        raise ValueError(
            "no tensors found in the checkpoint; expected a state dict, or a dict holding one "
            f"under one of {NESTED_KEYS} (top-level keys: {sorted(state)[:10]})."
        )
    return out


def read_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Loads a PyTorch state dict from ``.pth``/``.pt``/``.bin``, ``.safetensors`` or ``.npz``.

    ``.pth`` files are read with ``torch.load(weights_only=True)``; the ``argparse.Namespace``
    that MAE's training script stores under ``"args"`` is allowed, nothing else is unpickled.

    Raises:
      FileNotFoundError: no such file.
      ValueError: an unknown extension.
      ImportError: a ``.pth`` file without torch installed.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint file at {str(path)!r}.")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        from safetensors.numpy import load_file

        return unwrap_state_dict(load_file(str(path)))
    if suffix == ".npz":
        with np.load(path) as data:
            return unwrap_state_dict({k: data[k] for k in data.files})
    if suffix in (".pth", ".pt", ".bin", ".ckpt"):
        try:
            import torch
        except ImportError as error:
            raise ImportError(
                f"reading {path.name} needs torch (pip install 'mim_jax[torch-export]'); or "
                "pass a dict of NumPy arrays / a .safetensors or .npz file."
            ) from error
        with torch.serialization.safe_globals([argparse.Namespace]):
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        return unwrap_state_dict(checkpoint)
    raise ValueError(
        f"unknown checkpoint format {suffix!r} ({path.name}); valid: .pth/.pt/.bin/.ckpt "
        "(torch.save), .safetensors, .npz."
    )


def write_safetensors(
    tensors: Mapping[str, np.ndarray], path: str | os.PathLike, metadata: dict[str, str] | None
) -> pathlib.Path:
    """Writes arrays as safetensors with ``{"format": "pt"}`` metadata (transformers wants it).

    Returns:
      the file's path.
    """
    try:
        from safetensors.numpy import save_file
    except ImportError as error:
        raise ImportError(
            "writing an export needs safetensors: pip install 'mim_jax[torch-export]'."
        ) from error

    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
    save_file(arrays, str(path), metadata={"format": "pt", **(metadata or {})})
    return path


def write_json(data: Mapping[str, Any], path: str | os.PathLike) -> pathlib.Path:
    """Writes ``data`` as indented JSON (keys in insertion order)."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return path
