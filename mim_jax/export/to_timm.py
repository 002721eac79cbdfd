"""Export to timm's ``VisionTransformer`` (``vit_*_patch16_224`` layout).

Writes ``model.safetensors`` and a timm ``config.json`` (architecture + ``model_args``), so the
folder loads offline with ``timm.create_model("local-dir:OUT", pretrained=True)``; or build
``VisionTransformer(**model_args)`` yourself and ``load_state_dict``. A pretrained encoder becomes
a headless model (``num_classes=0``, cls-token pooling, final norm): ``forward_features`` returns
the same [B, 1+N, D] tokens as mim_jax's ``encoder.encode``. With a :class:`ClassifierHead` the
head (and ``fc_norm``) come along and ``forward`` returns the logits.
"""

from __future__ import annotations

import math
import os
import pathlib
from typing import Any

import numpy as np

from mim_jax.data.augment import IMAGENET_MEAN, IMAGENET_STD
from mim_jax.export.files import write_json, write_safetensors
from mim_jax.export.head import ClassifierHead
from mim_jax.export.mae import mae_state_dict
from mim_jax.export.source import ExportSource, check_image_encoder, resolve
from mim_jax.models.config import VIT_SIZES
from mim_jax.models.vit import ViTEncoder

# timm model names for the standard sizes (their factories only set the fields model_args sets).
_TIMM_NAMES = {
    ("vit_tiny", 16, 224): "vit_tiny_patch16_224",
    ("vit_small", 16, 224): "vit_small_patch16_224",
    ("vit_base", 16, 224): "vit_base_patch16_224",
    ("vit_large", 16, 224): "vit_large_patch16_224",
    ("vit_huge", 14, 224): "vit_huge_patch14_224",
}
# MAE's evaluation transform: Resize(256) + CenterCrop(224), i.e. crop fraction 224/256.
EVAL_CROP_PCT = 224 / 256


def mlp_ratio(width: int, mlp_dim: int) -> float:
    """The float timm needs so that its ``int(width * mlp_ratio)`` gives ``mlp_dim``.

    Raises:
      ValueError: no float works (never for the standard sizes).
    """
    ratio = mlp_dim / width
    for candidate in (ratio, math.nextafter(ratio, math.inf)):
        if int(width * candidate) == mlp_dim:
            return candidate
    raise ValueError(f"timm cannot express an MLP width {mlp_dim} for width {width}.")


def architecture(encoder: ViTEncoder) -> str:
    """timm's registered name for the encoder's size; for other sizes, the factory of the
    standard size nearest in width (``model_args`` then carry every difference, and
    :func:`model_description` says what the model really is)."""
    cfg = encoder.config
    tokens = encoder.tokens
    size = next((n for n, s in VIT_SIZES.items() if s == cfg), None)
    side = tokens.grid[0] * tokens.patch[0]
    square = tokens.grid[0] == tokens.grid[1] and tokens.patch[0] == tokens.patch[1]
    name = _TIMM_NAMES.get((size, tokens.patch[0], side)) if square else None
    if name is not None:
        return name
    nearest = min(_TIMM_NAMES, key=lambda k: abs(math.log(VIT_SIZES[k[0]].width / cfg.width)))
    return _TIMM_NAMES[nearest]


def model_description(encoder: ViTEncoder) -> str:
    """One line naming the exported model's real shape, e.g. ``ViT: width 64, depth 4, ...``."""
    cfg, tokens = encoder.config, encoder.tokens
    grid = "x".join(str(g * p) for g, p in zip(tokens.grid, tokens.patch, strict=True))
    patch = "x".join(str(p) for p in tokens.patch)
    return (
        f"ViT: width {cfg.width}, depth {cfg.depth}, {cfg.num_heads} heads, MLP {cfg.mlp_dim}, "
        f"{patch} patches on {grid} inputs with {tokens.channels} channels (timm builds it with "
        f"the '{architecture(encoder)}' factory and model_args)"
    )


def timm_model_args(encoder: ViTEncoder, head: ClassifierHead | None = None) -> dict[str, Any]:
    """``VisionTransformer`` keyword arguments that rebuild this encoder (and head) exactly.

    LayerNorm eps is timm's default for ViT (1e-6, as mim_jax), GELU exact, qkv with bias.
    """
    check_image_encoder(encoder, "timm VisionTransformer", square=False)
    cfg, tokens = encoder.config, encoder.tokens
    image = tuple(g * p for g, p in zip(tokens.grid, tokens.patch, strict=True))
    args: dict[str, Any] = dict(
        img_size=image[0] if image[0] == image[1] else list(image),
        patch_size=tokens.patch[0] if tokens.patch[0] == tokens.patch[1] else list(tokens.patch),
        in_chans=tokens.channels,
        embed_dim=cfg.width,
        depth=cfg.depth,
        num_heads=cfg.num_heads,
        mlp_ratio=mlp_ratio(cfg.width, cfg.mlp_dim),
        qkv_bias=True,
        class_token=True,
        num_classes=0 if head is None else head.num_classes,
        global_pool="token" if head is None else head.global_pool,
        fc_norm=False if head is None else head.has_fc_norm,
    )
    if head is not None and head.width != cfg.width:
        raise ValueError(f"head width {head.width} does not match the encoder width {cfg.width}.")
    return args


def timm_state_dict(source: Any, head: ClassifierHead | None = None) -> dict[str, np.ndarray]:
    """The encoder (and head) as a timm ``VisionTransformer`` state dict of float32 arrays.

    With an ``fc_norm`` head the encoder's final ``norm`` is left out (timm replaces it by
    ``Identity`` there, as MAE's fine-tuning does).
    """
    src = source if isinstance(source, ExportSource) else resolve(source)
    head = head if head is not None else src.head
    state = mae_state_dict(src, include_decoder=False)
    if head is not None:
        timm_model_args(src.encoder, head)  # validates the head against the encoder
        if head.has_fc_norm:
            del state["norm.weight"], state["norm.bias"]
        state.update(head.torch_tensors())
    return state


def timm_config(encoder: ViTEncoder, head: ClassifierHead | None = None) -> dict[str, Any]:
    """timm's hub ``config.json`` for the export (read by ``create_model("local-dir:...")``)."""
    args = timm_model_args(encoder, head)
    tokens = encoder.tokens
    channels = tokens.channels
    image = [g * p for g, p in zip(tokens.grid, tokens.patch, strict=True)]
    return {
        "architecture": architecture(encoder),
        "model_description": model_description(encoder),
        "num_classes": args["num_classes"],
        "num_features": encoder.config.width,
        "global_pool": args["global_pool"],
        "model_args": args,
        "pretrained_cfg": {
            "input_size": [channels, *image],
            "fixed_input_size": True,
            "interpolation": "bicubic",
            "crop_pct": EVAL_CROP_PCT,
            "crop_mode": "center",
            "mean": list(IMAGENET_MEAN[:channels]),
            "std": list(IMAGENET_STD[:channels]),
            "num_classes": args["num_classes"],
            "first_conv": "patch_embed.proj",
            "classifier": "head",
            "custom_load": False,
        },
    }


def export_timm(
    source: Any,
    out_dir: str | os.PathLike,
    *,
    head: ClassifierHead | None = None,
    step: int | None = None,
) -> pathlib.Path:
    """Writes ``out_dir/model.safetensors`` and ``out_dir/config.json`` for timm.

    Args:
      source: a run's workdir, a ``Pretrained``, an ``MAE`` or a ``ViTEncoder``.
      out_dir: output folder (created).
      head: a fine-tuned classifier head (see :class:`ClassifierHead`); default: the one of a
        fine-tuned checkpoint folder, else none (a headless encoder).
      step: checkpoint step when ``source`` is a workdir (None = latest).

    Returns:
      ``out_dir``. Load it with ``timm.create_model("local-dir:" + str(out_dir), pretrained=True)``.
    """
    src = resolve(source, step) if not isinstance(source, ExportSource) else source
    head = head if head is not None else src.head
    out = pathlib.Path(out_dir)
    state = timm_state_dict(src, head)
    write_safetensors(state, out / "model.safetensors", {"exported_by": "mim_jax"})
    write_json(timm_config(src.encoder, head), out / "config.json")
    return out
