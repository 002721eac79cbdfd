"""Export to transformers: ``ViTMAEForPreTraining`` (encoder + decoder) or ``ViTModel``.

Writes ``model.safetensors``, ``config.json`` and ``preprocessor_config.json`` (a
``ViTImageProcessor`` with the ImageNet normalisation mim_jax's data pipeline uses), so
``ViTMAEForPreTraining.from_pretrained(out)`` / ``ViTModel.from_pretrained(out,
add_pooling_layer=False)`` work offline. Tensor names are those of the hub's ``facebook/vit-mae-*``
and ``google/vit-*`` checkpoints (``encoder.layer.i.attention.attention.query`` ...), which every
transformers release loads (v5 renames them on load).

The fused qkv projection is split into ``query`` / ``key`` / ``value`` (rows [0, D), [D, 2D),
[2D, 3D) of timm's ``qkv.weight``). LayerNorm eps is written as 1e-6 (transformers' default
1e-12 would not match), ``hidden_act`` "gelu" is the exact GELU.

ViTMAE masks ``int(N * (1 - mask_ratio))`` visible patches where mim_jax keeps
``N - round(N * mask_ratio)``; pass ``noise`` to its forward to reproduce a mim_jax mask
(``noise = masks.restore``: its argsort is ``concat(keep, masked)``).
"""

from __future__ import annotations

import os
import pathlib
from typing import Any, Literal

import numpy as np

from mim_jax.data.augment import IMAGENET_MEAN, IMAGENET_STD
from mim_jax.export.files import write_json, write_safetensors
from mim_jax.export.mae import mae_state_dict
from mim_jax.export.source import ExportSource, check_image_encoder, check_mae_decoder, resolve
from mim_jax.models.layers import LN_EPS
from mim_jax.models.vit import ViTEncoder

Arch = Literal["vit_mae", "vit"]
ARCHS = ("vit_mae", "vit")

# timm / MAE block names -> transformers ViTLayer names (the qkv split is handled apart).
_BLOCK_NAMES = {
    "norm1": "layernorm_before",
    "norm2": "layernorm_after",
    "attn.proj": "attention.output.dense",
    "mlp.fc1": "intermediate.dense",
    "mlp.fc2": "output.dense",
}


def _block(state: dict[str, np.ndarray], src: str, dst: str) -> dict[str, np.ndarray]:
    """One block ``src`` (MAE names, e.g. ``blocks.3``) renamed to ``dst`` (transformers)."""
    out = {}
    width = state[f"{src}.norm1.weight"].shape[0]
    for part in ("weight", "bias"):
        qkv = state[f"{src}.attn.qkv.{part}"]
        for i, name in enumerate(("query", "key", "value")):
            out[f"{dst}.attention.attention.{name}.{part}"] = np.ascontiguousarray(
                qkv[i * width : (i + 1) * width]
            )
        for ours, theirs in _BLOCK_NAMES.items():
            out[f"{dst}.{theirs}.{part}"] = state[f"{src}.{ours}.{part}"]
    return out


def _encoder(state: dict[str, np.ndarray], depth: int, prefix: str) -> dict[str, np.ndarray]:
    """The encoder tensors under ``prefix`` ("vit." for ViTMAE, "" for ViTModel)."""
    p = prefix
    out = {
        f"{p}embeddings.cls_token": state["cls_token"],
        f"{p}embeddings.position_embeddings": state["pos_embed"],
        f"{p}embeddings.patch_embeddings.projection.weight": state["patch_embed.proj.weight"],
        f"{p}embeddings.patch_embeddings.projection.bias": state["patch_embed.proj.bias"],
        f"{p}layernorm.weight": state["norm.weight"],
        f"{p}layernorm.bias": state["norm.bias"],
    }
    for i in range(depth):
        out.update(_block(state, f"blocks.{i}", f"{p}encoder.layer.{i}"))
    return out


def _check(src: ExportSource, target: str) -> None:
    check_image_encoder(src.encoder, target, square=True)
    if src.head is not None:
        raise ValueError(
            f"{target} has no place for a fine-tuned classifier's head (fc_norm + head); "
            "export fine-tuned checkpoints with the timm exporter."
        )


def vit_state_dict(source: Any) -> dict[str, np.ndarray]:
    """The encoder as a transformers ``ViTModel`` state dict (no pooler) of float32 arrays."""
    src = source if isinstance(source, ExportSource) else resolve(source)
    _check(src, "transformers ViTModel")
    state = mae_state_dict(src, include_decoder=False)
    return _encoder(state, src.encoder.config.depth, "")


def vit_mae_state_dict(source: Any) -> dict[str, np.ndarray]:
    """Encoder + MAE decoder as a ``ViTMAEForPreTraining`` state dict of float32 arrays."""
    src = source if isinstance(source, ExportSource) else resolve(source)
    _check(src, "transformers ViTMAEForPreTraining")
    decoder = check_mae_decoder(src, "transformers ViTMAEForPreTraining")
    state = mae_state_dict(src, include_decoder=True)
    out = _encoder(state, src.encoder.config.depth, "vit.")
    out["decoder.mask_token"] = state["mask_token"]
    out["decoder.decoder_pos_embed"] = state["decoder_pos_embed"]
    for name in ("decoder_embed", "decoder_norm", "decoder_pred"):
        for part in ("weight", "bias"):
            out[f"decoder.{name}.{part}"] = state[f"{name}.{part}"]
    for i in range(decoder.config.depth):
        out.update(_block(state, f"decoder_blocks.{i}", f"decoder.decoder_layers.{i}"))
    return out


def _common_config(encoder: ViTEncoder) -> dict[str, Any]:
    cfg, tokens = encoder.config, encoder.tokens
    return {
        "hidden_size": cfg.width,
        "num_hidden_layers": cfg.depth,
        "num_attention_heads": cfg.num_heads,
        "intermediate_size": cfg.mlp_dim,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
        "initializer_range": 0.02,
        "layer_norm_eps": LN_EPS,
        "image_size": tokens.grid[0] * tokens.patch[0],
        "patch_size": tokens.patch[0],
        "num_channels": tokens.channels,
        "qkv_bias": True,
        "torch_dtype": "float32",
    }


def vit_config(source: Any) -> dict[str, Any]:
    """``config.json`` of a transformers ``ViTModel`` for the encoder."""
    src = source if isinstance(source, ExportSource) else resolve(source)
    _check(src, "transformers ViTModel")
    return {
        "architectures": ["ViTModel"],
        "model_type": "vit",
        **_common_config(src.encoder),
        "encoder_stride": src.encoder.tokens.patch[0],
    }


def vit_mae_config(source: Any, mask_ratio: float | None = None) -> dict[str, Any]:
    """``config.json`` of a ``ViTMAEForPreTraining``.

    Args:
      source: the model (see :func:`mim_jax.export.source.resolve`).
      mask_ratio: the ratio ViTMAE masks with; default the run's (from a workdir / Pretrained),
        else MAE's 0.75.
    """
    src = source if isinstance(source, ExportSource) else resolve(source)
    _check(src, "transformers ViTMAEForPreTraining")
    decoder = check_mae_decoder(src, "transformers ViTMAEForPreTraining")
    ratio = mask_ratio if mask_ratio is not None else src.mask_ratio
    return {
        "architectures": ["ViTMAEForPreTraining"],
        "model_type": "vit_mae",
        **_common_config(src.encoder),
        "decoder_hidden_size": decoder.config.width,
        "decoder_num_hidden_layers": decoder.config.depth,
        "decoder_num_attention_heads": decoder.config.num_heads,
        "decoder_intermediate_size": decoder.config.mlp_dim,
        "mask_ratio": 0.75 if ratio is None else float(ratio),
        "norm_pix_loss": bool(src.norm_pix_loss),
    }


def preprocessor_config(encoder: ViTEncoder) -> dict[str, Any]:
    """A ``ViTImageProcessor`` config: bicubic resize to the model size, ImageNet normalisation."""
    tokens = encoder.tokens
    side = tokens.grid[0] * tokens.patch[0]
    channels = tokens.channels
    return {
        "image_processor_type": "ViTImageProcessor",
        "do_resize": True,
        "size": {"height": side, "width": side},
        "resample": 3,
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": list(IMAGENET_MEAN[:channels]),
        "image_std": list(IMAGENET_STD[:channels]),
    }


def export_transformers(
    source: Any,
    out_dir: str | os.PathLike,
    *,
    arch: Arch = "vit_mae",
    step: int | None = None,
    mask_ratio: float | None = None,
) -> pathlib.Path:
    """Writes a transformers model folder: weights, ``config.json``, ``preprocessor_config.json``.

    Args:
      source: a run's workdir, a ``Pretrained``, an ``MAE`` or a ``ViTEncoder``.
      out_dir: output folder (created).
      arch: "vit_mae" (``ViTMAEForPreTraining``, needs the MAE decoder) or "vit" (``ViTModel``,
        encoder only).
      step: checkpoint step when ``source`` is a workdir (None = latest).
      mask_ratio: ViTMAE's mask ratio (default: the run's, else 0.75).

    Returns:
      ``out_dir``.

    Raises:
      ValueError: an unknown ``arch``, or a model the layout cannot hold (video / non-square /
        no cls token; CrossMAE or no decoder for "vit_mae").
    """
    if arch not in ARCHS:
        raise ValueError(f"arch must be one of {ARCHS}, got {arch!r}.")
    src = resolve(source, step) if not isinstance(source, ExportSource) else source
    if arch == "vit_mae":
        state, config = vit_mae_state_dict(src), vit_mae_config(src, mask_ratio)
    else:
        state, config = vit_state_dict(src), vit_config(src)
    out = pathlib.Path(out_dir)
    write_safetensors(state, out / "model.safetensors", {"exported_by": "mim_jax"})
    write_json(config, out / "config.json")
    write_json(preprocessor_config(src.encoder), out / "preprocessor_config.json")
    return out
