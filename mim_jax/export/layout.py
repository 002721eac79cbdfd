"""The one table that maps mim_jax parameters to the PyTorch MAE / timm layout, both ways.

``facebookresearch/mae`` (``models_mae.py``) builds its encoder from timm's ``PatchEmbed`` and
``Block``, so the released MAE checkpoints and timm's ``VisionTransformer`` share their encoder
names; this module calls that layout "MAE layout". Per tensor (D width, H heads, hd head width,
M MLP width, C channels, p x q patch, N patches; mim_jax shapes from :mod:`mim_jax.models.vit`):

=================================  ===========================  ================================
MAE layout key (torch shape)       mim_jax path (shape)         conversion
=================================  ===========================  ================================
``cls_token`` [1, 1, D]            ``cls_token`` [1, 1, D]      copy
``pos_embed`` [1, 1+N, D]          ``pos_embed`` [1+N, D]       add / drop the leading 1
``patch_embed.proj.weight``        ``patch_embed.kernel``       [p*q*C, D] (p, q, c order)
[D, C, p, q] (OIHW)                                             -> [p, q, C, D] -> OIHW
``blocks.i.attn.qkv.weight``       ``blocks.i.attn.qkv.kernel`` ``kernel.reshape(D, 3D).T``
[3D, D]                            [D, 3, H, hd]
``blocks.i.attn.proj.weight``      ``blocks.i.attn.proj.kernel`` ``kernel.reshape(D, D).T``
[D, D]                             [H, hd, D]
other ``*.weight`` of a Linear     ``*.kernel`` [in, out]       transpose
``*.bias``                         ``*.bias`` (any shape)       flatten
``norm*.weight`` / ``.bias``       ``norm*.scale`` / ``.bias``  copy
=================================  ===========================  ================================

The decoder (MAE decoder only) uses the names of ``models_mae.py``: ``mask_token``,
``decoder_embed``, ``decoder_pos_embed``, ``decoder_blocks.i.*``, ``decoder_norm`` and
``decoder_pred``. The qkv flattening (q, k, v outermost, then heads) is timm's
``qkv.reshape(B, N, 3, H, hd)``; the attention output before ``proj`` is ``(H, hd)`` flattened,
as timm's ``transpose(1, 2).reshape(B, N, D)``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Literal

import numpy as np
from flax import nnx

from mim_jax.models.patching import PatchSpec

Kind = Literal["copy", "table", "patch", "linear", "bias"]


@dataclasses.dataclass(frozen=True)
class Entry:
    """One tensor: its MAE-layout ``key``, the mim_jax ``path`` and how to convert it.

    Attributes:
      key: PyTorch state-dict key (MAE / timm names).
      path: attribute path from the root module (ints index ``nnx.List`` entries).
      kind: ``copy`` (same shape), ``table`` (position table, torch adds a leading 1), ``patch``
        (patch-embedding kernel <-> OIHW conv weight), ``linear`` (kernel <-> transposed
        weight; ``n_in`` leading kernel dims are inputs) or ``bias`` (any shape <-> flat).
      n_in: number of input dims of a ``linear`` kernel (2 for the attention ``proj``).
    """

    key: str
    path: tuple[str | int, ...]
    kind: Kind
    n_in: int = 1


def _block_entries(key: str, path: tuple[str | int, ...]) -> list[Entry]:
    """The 12 tensors of a pre-norm ViT block (timm ``Block`` names)."""
    out = []
    for norm in ("norm1", "norm2"):
        out += [
            Entry(f"{key}.{norm}.weight", (*path, norm, "scale"), "copy"),
            Entry(f"{key}.{norm}.bias", (*path, norm, "bias"), "copy"),
        ]
    for name, sub, n_in in (
        ("attn.qkv", ("attn", "qkv"), 1),
        ("attn.proj", ("attn", "proj"), 2),
        ("mlp.fc1", ("mlp", "fc1"), 1),
        ("mlp.fc2", ("mlp", "fc2"), 1),
    ):
        out += [
            Entry(f"{key}.{name}.weight", (*path, *sub, "kernel"), "linear", n_in),
            Entry(f"{key}.{name}.bias", (*path, *sub, "bias"), "bias"),
        ]
    return out


def encoder_entries(depth: int, prefix: tuple[str | int, ...] = ()) -> list[Entry]:
    """Entries of a ViT encoder with a cls token and ``depth`` blocks (paths under ``prefix``)."""
    out = [
        Entry("cls_token", (*prefix, "cls_token"), "copy"),
        Entry("pos_embed", (*prefix, "pos_embed"), "table"),
        Entry("patch_embed.proj.weight", (*prefix, "patch_embed", "kernel"), "patch"),
        Entry("patch_embed.proj.bias", (*prefix, "patch_embed", "bias"), "bias"),
    ]
    for i in range(depth):
        out += _block_entries(f"blocks.{i}", (*prefix, "blocks", i))
    out += [
        Entry("norm.weight", (*prefix, "norm", "scale"), "copy"),
        Entry("norm.bias", (*prefix, "norm", "bias"), "copy"),
    ]
    return out


def decoder_entries(depth: int, prefix: tuple[str | int, ...] = ("decoder",)) -> list[Entry]:
    """Entries of an MAE decoder (``models_mae.py`` names) with ``depth`` blocks."""
    out = [
        Entry("mask_token", (*prefix, "mask_token"), "copy"),
        Entry("decoder_embed.weight", (*prefix, "embed", "kernel"), "linear"),
        Entry("decoder_embed.bias", (*prefix, "embed", "bias"), "bias"),
        Entry("decoder_pos_embed", (*prefix, "pos_embed"), "table"),
    ]
    for i in range(depth):
        out += _block_entries(f"decoder_blocks.{i}", (*prefix, "blocks", i))
    out += [
        Entry("decoder_norm.weight", (*prefix, "norm", "scale"), "copy"),
        Entry("decoder_norm.bias", (*prefix, "norm", "bias"), "copy"),
        Entry("decoder_pred.weight", (*prefix, "pred", "kernel"), "linear"),
        Entry("decoder_pred.bias", (*prefix, "pred", "bias"), "bias"),
    ]
    return out


def variable(root: nnx.Module, path: Sequence[str | int]) -> nnx.Variable:
    """The ``nnx.Variable`` at ``path`` under ``root`` (attribute names and list indices)."""
    node = root
    for part in path:
        node = node[part] if isinstance(part, int) else getattr(node, part)
    if not isinstance(node, nnx.Variable):
        raise TypeError(f"{'.'.join(map(str, path))} is a {type(node).__name__}, not a variable.")
    return node


def torch_shape(entry: Entry, shape: tuple[int, ...], tokens: PatchSpec) -> tuple[int, ...]:
    """The PyTorch shape of ``entry`` when the mim_jax value has ``shape``."""
    if entry.kind == "copy":
        return tuple(shape)
    if entry.kind == "table":
        return (1, *shape)
    if entry.kind == "bias":
        return (int(np.prod(shape)),)
    if entry.kind == "patch":
        return (shape[-1], tokens.channels, *tokens.patch)
    n_in = entry.n_in
    return (int(np.prod(shape[n_in:])), int(np.prod(shape[:n_in])))


def to_torch(entry: Entry, value: np.ndarray, tokens: PatchSpec) -> np.ndarray:
    """mim_jax value -> PyTorch-layout array (float32, C-contiguous).

    Args:
      entry: the table entry.
      value: the mim_jax array (any float dtype).
      tokens: patch geometry (for the patch-embedding kernel).
    """
    value = np.asarray(value, np.float32)
    if entry.kind == "copy":
        out = value
    elif entry.kind == "table":
        out = value[None]
    elif entry.kind == "bias":
        out = value.reshape(-1)
    elif entry.kind == "patch":
        # [prod(patch)*C, D] in (p, q, c) order -> [p, q, C, D] (HWIO) -> [D, C, p, q] (OIHW).
        hwio = value.reshape(*tokens.patch, tokens.channels, value.shape[-1])
        out = hwio.transpose(hwio.ndim - 1, hwio.ndim - 2, *range(hwio.ndim - 2))
    else:
        n_in = entry.n_in
        flat = value.reshape(int(np.prod(value.shape[:n_in])), -1)
        out = flat.T
    return np.ascontiguousarray(out)


def from_torch(
    entry: Entry, value: np.ndarray, shape: tuple[int, ...], tokens: PatchSpec
) -> np.ndarray:
    """PyTorch-layout array -> mim_jax value of ``shape`` (inverse of :func:`to_torch`).

    Raises:
      ValueError: ``value`` does not have the shape the mim_jax model needs; the message names
        the key, the shape found and the shape expected.
    """
    value = np.asarray(value)
    want = torch_shape(entry, shape, tokens)
    if tuple(value.shape) != want:
        raise ValueError(
            f"{entry.key}: shape {tuple(value.shape)} does not fit the model, which needs {want} "
            f"(mim_jax {'.'.join(map(str, entry.path))} {tuple(shape)})."
        )
    if entry.kind in ("copy", "table", "bias"):
        return value.reshape(shape)
    if entry.kind == "patch":
        n = value.ndim
        hwio = value.transpose(*range(2, n), 1, 0)  # [D, C, *patch] -> [*patch, C, D]
        return hwio.reshape(shape)
    return value.T.reshape(shape)
