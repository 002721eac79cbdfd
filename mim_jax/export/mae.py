"""mim_jax models <-> the ``facebookresearch/mae`` PyTorch state dict (``models_mae.py`` names).

Export: :func:`mae_state_dict` gives ``{key: float32 array}`` in the MAE layout (the encoder part
is also timm's ``VisionTransformer`` layout); see :mod:`mim_jax.export.layout` for the table.

Import: :func:`load_mae_state_dict` copies a state dict into an existing MAE or ViTEncoder after
checking every key and shape; :func:`mae_from_state_dict` builds the model from the weights'
shapes first. The released ``mae_pretrain_vit_*.pth`` files hold the encoder only (no
``mask_token`` / ``decoder_*``); the ``mae_visualize_vit_*.pth`` ones hold both. Position tables
are copied too (a fine-tuned checkpoint may hold learned ones); they stay non-trainable.

>>> from mim_jax.export import mae_from_state_dict
>>> model = mae_from_state_dict("mae_visualize_vit_base.pth")   # an MAE with the released weights
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mim_jax.export import layout
from mim_jax.export.files import read_state_dict, unwrap_state_dict
from mim_jax.export.source import ExportSource, check_image_encoder, check_mae_decoder, resolve
from mim_jax.models.config import VIT_SIZES, MAEConfig
from mim_jax.models.mae import MAE, MAEDecoder, mae_config
from mim_jax.models.vit import ViTEncoder

StateLike = Mapping[str, Any] | str | os.PathLike

# MAE's released decoders are all 512 wide, 8 deep with 16 heads (models_mae.py factories).
MAE_DECODER_HEADS = {512: 16}


def _pairs(
    encoder: ViTEncoder, decoder: MAEDecoder | None
) -> list[tuple[nnx.Module, layout.Entry]]:
    """(module, entry) for every tensor: entry paths are relative to their module."""
    out = [(encoder, e) for e in layout.encoder_entries(encoder.config.depth)]
    if decoder is not None:
        out += [(decoder, e) for e in layout.decoder_entries(decoder.config.depth, prefix=())]
    return out


def mae_state_dict(source: Any, *, include_decoder: bool | None = None) -> dict[str, np.ndarray]:
    """The model's weights as a ``models_mae.py`` state dict of float32 NumPy arrays.

    Args:
      source: a run's workdir, a ``Pretrained``, an ``MAE`` or a ``ViTEncoder``
        (see :func:`mim_jax.export.source.resolve`).
      include_decoder: None adds the decoder when the source has an MAE decoder; True requires
        one (ValueError for a bare encoder or a CrossMAE decoder); False writes the encoder only.

    Returns:
      ``{key: float32 array}`` with torch shapes (``pos_embed`` [1, 1+N, D], OIHW patch kernel,
      [out, in] Linear weights).

    Raises:
      ValueError: a video encoder, an encoder without cls token, or a missing / CrossMAE decoder
        with ``include_decoder=True``.
    """
    src = source if isinstance(source, ExportSource) else resolve(source)
    check_image_encoder(src.encoder, "The MAE / timm PyTorch layout", square=False)
    decoder = None
    if include_decoder or (include_decoder is None and isinstance(src.decoder, MAEDecoder)):
        decoder = check_mae_decoder(src, "The MAE PyTorch layout with decoder")
    tokens = src.encoder.tokens
    out = {}
    for module, entry in _pairs(src.encoder, decoder):
        value = np.asarray(layout.variable(module, entry.path).get_value())
        out[entry.key] = layout.to_torch(entry, value, tokens)
    return out


def _as_state(state: StateLike) -> dict[str, np.ndarray]:
    if isinstance(state, str | os.PathLike):
        return read_state_dict(state)
    return unwrap_state_dict(state)


def _show(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" ... ({len(keys)} in all)" if len(keys) > limit else "")


def _count_blocks(state: Mapping[str, Any], prefix: str) -> int:
    pattern = re.compile(rf"^{re.escape(prefix)}\.(\d+)\.")
    ids = {int(m.group(1)) for key in state if (m := pattern.match(key))}
    return max(ids) + 1 if ids else 0


def load_mae_state_dict(
    model: MAE | ViTEncoder,
    state: StateLike,
    *,
    missing_decoder: Literal["error", "keep"] = "error",
    strict: bool = True,
) -> MAE | ViTEncoder:
    """Copies a ``models_mae.py`` / timm-layout state dict into ``model`` (in place).

    Every key and shape is checked before anything is written, so a failed load leaves the model
    unchanged.

    Args:
      model: an ``MAE`` (MAE or CrossMAE decoder) or a ``ViTEncoder``, built with the
        checkpoint's architecture (or use :func:`mae_from_state_dict`).
      state: a state dict (NumPy arrays or torch tensors; ``{"model": ...}`` is unwrapped), or a
        path to a ``.pth`` / ``.safetensors`` / ``.npz`` file.
      missing_decoder: for an MAE with an MAE decoder and a state without decoder keys (the
        released encoder-only checkpoints): "error", or "keep" the model's own decoder weights.
        A CrossMAE decoder always keeps its own weights (the MAE layout has no place for them).
      strict: raise on keys the model has no place for (e.g. a classifier ``head``).

    Returns:
      ``model``.

    Raises:
      ValueError: missing or unexpected keys, another depth, or a tensor whose shape does not fit
        (the message names the key, the shape found and the shape the model needs).
    """
    state = _as_state(state)
    if isinstance(model, MAE):
        encoder = model.encoder
        decoder = model.decoder if isinstance(model.decoder, MAEDecoder) else None
    elif isinstance(model, ViTEncoder):
        encoder, decoder = model, None
    else:
        raise TypeError(f"load_mae_state_dict loads into an MAE or a ViTEncoder, not {model!r}.")
    check_image_encoder(encoder, "The MAE PyTorch layout", square=False)
    has_decoder_keys = any(k.startswith(("decoder_", "mask_token")) for k in state)
    if decoder is not None and not has_decoder_keys:
        if missing_decoder != "keep":
            raise ValueError(
                "the checkpoint holds no decoder (no mask_token / decoder_* keys; MAE's released "
                "mae_pretrain_vit_*.pth files are encoder-only). Pass missing_decoder='keep' to "
                "keep the model's own decoder, or load into a ViTEncoder."
            )
        decoder = None
    for prefix, module, what in (("blocks", encoder, "encoder"), ("decoder_blocks", decoder, "")):
        if module is None:
            continue
        found = _count_blocks(state, prefix)
        if found and found != module.config.depth:
            raise ValueError(
                f"the checkpoint has {found} {prefix} (depth {found}), the model's "
                f"{what or 'decoder'} has depth {module.config.depth}; build the model with the "
                "checkpoint's depth (mae_from_state_dict infers it)."
            )
    pairs = _pairs(encoder, decoder)
    expected = {e.key for _, e in pairs}
    missing = sorted(expected - set(state))
    if missing:
        hint = ""
        if "norm.weight" in missing and "fc_norm.weight" in state:
            hint = (
                " This looks like a fine-tuned classifier with global pooling (fc_norm instead "
                "of the final norm); only pretrained MAE encoders map onto mim_jax's encoder."
            )
        raise ValueError(f"the checkpoint lacks {_show(missing)}.{hint}")
    unexpected = sorted(set(state) - expected)
    if decoder is None and isinstance(model, MAE):
        unexpected = [k for k in unexpected if not k.startswith(("decoder_", "mask_token"))]
    if unexpected and strict:
        raise ValueError(
            f"the model has no place for {_show(unexpected)}; pass strict=False to ignore them "
            "(e.g. a fine-tuned head)."
        )
    updates = []
    for module, entry in pairs:
        var = layout.variable(module, entry.path)
        value = layout.from_torch(entry, state[entry.key], var.shape, encoder.tokens)
        updates.append((var, jnp.asarray(value, var.dtype)))
    for var, value in updates:
        sharding = getattr(var.get_value(), "sharding", None)  # keep a sharded model sharded
        var.set_value(value if sharding is None else jax.device_put(value, sharding))
    return model


def _heads(width: int, depth: int, mlp_dim: int, given: int | None, what: str) -> int:
    if given is not None:
        return int(given)
    for size in VIT_SIZES.values():
        if (size.width, size.depth, size.mlp_dim) == (width, depth, mlp_dim):
            return size.num_heads
    raise ValueError(
        f"cannot infer the {what} head count of a width-{width}, depth-{depth} ViT (not a "
        f"standard size: {sorted(VIT_SIZES)}); pass num_heads / decoder_num_heads."
    )


def mae_config_from_state_dict(
    state: StateLike,
    *,
    num_heads: int | None = None,
    decoder_num_heads: int | None = None,
    image_size: tuple[int, int] | None = None,
    norm_pix_loss: bool = True,
    **kwargs: Any,
) -> MAEConfig:
    """The :class:`MAEConfig` whose shapes fit ``state`` (an MAE-layout state dict or its file).

    Width, depth, MLP width, patch size, channels and (square) image size come from the tensors.
    Head counts cannot: ``num_heads`` defaults to the standard ViT size with the same width,
    depth and MLP width; ``decoder_num_heads`` to 16 for MAE's 512-wide decoder. An encoder-only
    checkpoint gets MAE's default decoder (512 wide, 8 deep, 16 heads, freshly initialised).

    Args:
      state: the state dict or a path to it.
      num_heads, decoder_num_heads: head counts (required for non-standard sizes).
      image_size: (H, W) for a non-square grid (default: a square grid from ``pos_embed``).
      norm_pix_loss: MAE's released models were trained with it (True).
      kwargs: further :func:`mim_jax.models.mae.mae_config` arguments (e.g. ``dtype``).

    Raises:
      ValueError: a missing key needed for the shapes, or head counts that cannot be inferred.
    """
    state = _as_state(state)
    needed = ["patch_embed.proj.weight", "pos_embed", "blocks.0.mlp.fc1.weight"]
    lacking = [k for k in needed if k not in state]
    if lacking:
        raise ValueError(
            f"not an MAE / timm ViT state dict: it lacks {lacking} (keys found: "
            f"{_show(sorted(state))})."
        )
    width, channels, p, q = state["patch_embed.proj.weight"].shape
    rows = state["pos_embed"].shape[1]
    num_patches = rows - 1 if "cls_token" in state else rows
    if image_size is None:
        side = math.isqrt(num_patches)
        if side * side != num_patches:
            raise ValueError(
                f"pos_embed has {num_patches} patch rows, not a square grid; pass image_size."
            )
        image_size = (side * p, side * q)
    depth = _count_blocks(state, "blocks")
    mlp_dim = state["blocks.0.mlp.fc1.weight"].shape[0]
    enc = dict(width=int(width), depth=depth, mlp_dim=int(mlp_dim))
    enc["num_heads"] = _heads(enc["width"], depth, enc["mlp_dim"], num_heads, "encoder")
    dec = {}
    if "decoder_embed.weight" in state:
        d_width = int(state["decoder_embed.weight"].shape[0])
        d_heads = decoder_num_heads or MAE_DECODER_HEADS.get(d_width)
        if d_heads is None:
            raise ValueError(
                f"cannot infer the head count of a {d_width}-wide decoder; pass decoder_num_heads."
            )
        dec = dict(
            decoder_width=d_width,
            decoder_depth=_count_blocks(state, "decoder_blocks"),
            decoder_num_heads=int(d_heads),
            decoder_mlp_dim=int(state["decoder_blocks.0.mlp.fc1.weight"].shape[0]),
        )
    elif decoder_num_heads is not None:
        dec = dict(decoder_num_heads=int(decoder_num_heads))
    return mae_config(
        "vit_base",
        image_size=tuple(int(s) for s in image_size),
        patch_size=(int(p), int(q)),
        channels=int(channels),
        encoder_overrides=enc,
        cls_token="cls_token" in state,
        norm_pix_loss=norm_pix_loss,
        **dec,
        **kwargs,
    )


def mae_from_state_dict(
    state: StateLike,
    *,
    encoder_only: bool = False,
    rngs: int | nnx.Rngs = 0,
    **config_kwargs: Any,
) -> MAE | ViTEncoder:
    """Builds a mim_jax MAE (or its encoder) from a ``models_mae.py`` state dict.

    Args:
      state: the state dict, or a path to ``.pth`` (e.g. MAE's ``mae_pretrain_vit_base.pth``),
        ``.safetensors`` or ``.npz``.
      encoder_only: return the ``ViTEncoder`` alone.
      rngs: seed for the parts the checkpoint lacks (the decoder of an encoder-only file).
      config_kwargs: :func:`mae_config_from_state_dict` arguments (``num_heads``, ...).

    Returns:
      an ``MAE`` (decoder from the checkpoint when it has one, else freshly initialised) or a
      ``ViTEncoder`` with the checkpoint's weights.
    """
    state = _as_state(state)
    config = mae_config_from_state_dict(state, **config_kwargs)
    if isinstance(rngs, int):
        rngs = nnx.Rngs(params=rngs)
    if encoder_only:
        encoder = ViTEncoder(
            config.encoder,
            config.tokens,
            cls_token=config.cls_token,
            dtype=jnp.dtype(config.dtype),
            param_dtype=jnp.dtype(config.param_dtype),
            rngs=rngs,
        )
        strict_keys = {k: v for k, v in state.items() if not k.startswith(("decoder_", "mask_"))}
        return load_mae_state_dict(encoder, strict_keys)
    return load_mae_state_dict(MAE(config, rngs=rngs), state, missing_decoder="keep")
