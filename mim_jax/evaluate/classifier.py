"""The fine-tuned classifier: its model, and the one saved layout (save and load).

:class:`Classifier` is a ViT encoder with a classification head: global pooling (mean of the
patch tokens of the last block, then ``fc_norm``, which replaces the encoder's final norm) or the
cls token after the final norm, then a linear head (trunc-normal std 2e-5, zero bias), as MAE's
``models_vit.py``. Its position table trains by default (``train_pos_embed``): timm's
``pos_embed`` is an ``nn.Parameter`` that MAE loads from the pretrained fixed sin-cos table and
fine-tunes (layer id 0 in the lr decay, exempt from weight decay by ``no_weight_decay``); the
classifier's encoder copy then holds it as an ``nnx.Param``, the pretraining encoder keeps its
fixed table.

Saved layout (:func:`save_classifier`; ``<dir>/<step>/state``, Orbax ``StandardSave``), a plain
pytree::

    {"params": {"encoder": {"patch_embed": {"kernel": [p*p*C, D], "bias": [D]},
                            "cls_token": [1, 1, D],
                            "blocks": {"0": {...same names as the pretraining encoder...}, ...},
                            "norm": {"scale": [D], "bias": [D]}},
                "fc_norm": {"scale": [D], "bias": [D]},      (global pool only)
                "head": {"kernel": [D, num_classes], "bias": [num_classes]}},
     "pos_embed": [1 + N, D]}

with ``<step>/config`` holding the pretraining config plus ``"finetune"`` (the fine-tuning
settings, ``global_pool`` and ``num_classes``). With global pooling the encoder's ``norm`` is
unused (MAE deletes it). ``pos_embed`` is stored outside ``params`` whether it trained or not, so
the layout is the same either way. :func:`load_finetuned` reads it back as a ``ViTEncoder`` with the
fine-tuned weights and the head's arrays.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mim_jax.core import paths
from mim_jax.core.checkpoint import CheckpointStore
from mim_jax.core.state import TrainState
from mim_jax.core.workdir import Pretrained, config_from_dict
from mim_jax.evaluate.linear_probe import trunc_normal
from mim_jax.models import layers
from mim_jax.models.mae import mae_config, mae_kwargs
from mim_jax.models.vit import ViTEncoder


@dataclasses.dataclass(frozen=True)
class SavedClassifier:
    """What :func:`load_finetuned` reads: the encoder and the head's arrays.

    Attributes:
      encoder: a ``ViTEncoder`` with the fine-tuned weights and position table.
      kernel: float32[D, num_classes]; bias: float32[num_classes].
      global_pool: True for mean pooling + ``fc_norm``, False for the cls token.
      fc_norm_scale, fc_norm_bias: float32[D] (global pool only, else None).
    """

    encoder: ViTEncoder
    kernel: np.ndarray
    bias: np.ndarray
    global_pool: bool
    fc_norm_scale: np.ndarray | None = None
    fc_norm_bias: np.ndarray | None = None


def make_pos_embed_trainable(encoder: ViTEncoder) -> None:
    """Turns ``encoder``'s fixed position table (float32[prefix + N, D]) into an ``nnx.Param``
    with the same value and logical axes, in place (timm / MAE fine-tuning train ``pos_embed``)."""
    table = encoder.pos_embed
    if not isinstance(table, nnx.Param):
        encoder.pos_embed = nnx.Param(table.get_value(), **table.get_metadata())


class Classifier(nnx.Module):
    """ViT encoder + (global pool, fc_norm | cls token) + linear head: images -> logits.

    ``train_pos_embed`` (default, as MAE) makes the encoder's position table a trained parameter
    (:func:`make_pos_embed_trainable`; the encoder passed in is modified).
    """

    def __init__(
        self,
        encoder: ViTEncoder,
        num_classes: int,
        *,
        global_pool: bool = True,
        train_pos_embed: bool = True,
        rngs: nnx.Rngs,
    ):
        if not global_pool and not encoder.use_cls:
            raise ValueError("global_pool=False classifies the cls token; this encoder has none.")
        if train_pos_embed:
            make_pos_embed_trainable(encoder)
        self.encoder = encoder
        self.global_pool = global_pool
        width = encoder.config.width
        kw = dict(dtype=encoder.dtype, param_dtype=jnp.float32, rngs=rngs)
        self.fc_norm = layers.layer_norm(width, **kw) if global_pool else None

        def head_init(key, shape, dtype=jnp.float32):
            return trunc_normal(key, shape, 2e-5).astype(dtype)

        self.head = nnx.Linear(
            width,
            num_classes,
            dtype=encoder.dtype,
            param_dtype=jnp.float32,
            kernel_init=layers.partitioned(head_init, ("embed", None)),
            bias_init=layers.partitioned(nnx.initializers.zeros_init(), (None,)),
            rngs=rngs,
        )

    def __call__(self, images: jax.Array, *, key: jax.Array | None = None) -> jax.Array:
        """float[B, H, W, C] -> float32[B, num_classes]; ``key`` enables drop path."""
        patches = self.encoder.tokens.patchify(images)
        if self.global_pool:
            _, hidden = self.encoder(patches, return_hidden=True, key=key)
            pooled = hidden[-1][:, self.encoder.num_prefix_tokens :].mean(axis=1)
            features = self.fc_norm(pooled)
        else:
            features = self.encoder(patches, key=key)[:, 0]
        return self.head(features).astype(jnp.float32)


def classifier_from_pretrained(
    pretrained: Pretrained,
    num_classes: int,
    *,
    drop_path: float = 0.0,
    global_pool: bool = True,
    train_pos_embed: bool = True,
    seed: int = 0,
) -> Classifier:
    """A :class:`Classifier` whose encoder is a copy of ``pretrained``'s (weights and position
    table; ``drop_path`` added). ``pretrained`` itself is left as it is."""
    source = pretrained.encoder
    cfg = pretrained.model.config
    rngs = nnx.Rngs(params=seed)
    encoder = ViTEncoder(
        cfg.encoder,
        cfg.tokens,
        cls_token=cfg.cls_token,
        dtype=jnp.dtype(cfg.dtype),
        param_dtype=jnp.dtype(cfg.param_dtype),
        remat=cfg.remat,
        gather=cfg.gather,
        drop_path=drop_path,
        rngs=rngs,
    )
    nnx.update(encoder, nnx.state(source))
    return Classifier(
        encoder, num_classes, global_pool=global_pool, train_pos_embed=train_pos_embed, rngs=rngs
    )


def is_finetuned(config: dict[str, Any] | None) -> bool:
    """Whether a checkpoint's stored config is a fine-tuned classifier's (has ``"finetune"``)."""
    return bool(config) and "finetune" in config


def _encoder_from_config(config: dict[str, Any]) -> ViTEncoder:
    cfg = mae_config(**mae_kwargs(config_from_dict(config)))
    return ViTEncoder(
        cfg.encoder,
        cfg.tokens,
        cls_token=cfg.cls_token,
        dtype=jnp.dtype(cfg.dtype),
        param_dtype=jnp.dtype(cfg.param_dtype),
        rngs=nnx.Rngs(params=0),
    )


def _pure(state: nnx.State) -> Any:
    """``nnx.to_pure_dict`` with string keys (the saved layout's ``"0"``, ``"1"`` block keys)."""

    def strings(tree: Any) -> Any:
        if isinstance(tree, dict):
            return {str(k): strings(v) for k, v in tree.items()}
        return tree

    return strings(nnx.to_pure_dict(state))


def load_finetuned(directory: str | os.PathLike, step: int | None = None) -> SavedClassifier:
    """The fine-tuned encoder and head saved by ``mim_jax.evaluate`` fine-tuning.

    Args:
      directory: the folder ``save_classifier`` wrote (holding numbered step folders).
      step: a step (default: the latest).

    Returns:
      the encoder with the fine-tuned weights and position table, and the head's arrays.

    Raises:
      ValueError: no checkpoint, an unknown step, or a checkpoint that is not a classifier.
    """
    store = CheckpointStore(os.fspath(directory), async_save=False)
    try:
        steps = store.all_steps()
        if not steps:
            raise ValueError(f"no complete checkpoint in {directory}.")
        if step is not None and step not in steps:
            raise ValueError(f"checkpoint step {step} is not in {directory}; steps: {steps}.")
        chosen = steps[-1] if step is None else step
        config = store.read_config(chosen)
        if not is_finetuned(config):
            raise ValueError(
                f"{directory} step {chosen} is not a fine-tuned classifier (its config has no "
                "'finetune' entry); a pretraining run's workdir is loaded with load_pretrained."
            )
        settings = config["finetune"]
        global_pool = bool(settings["global_pool"])
        num_classes = int(settings["num_classes"])
        encoder = _encoder_from_config(config)
        width = encoder.config.width
        device = jax.sharding.SingleDeviceSharding(jax.devices()[0])

        def spec(shape: tuple[int, ...]) -> jax.ShapeDtypeStruct:
            return jax.ShapeDtypeStruct(shape, jnp.float32, sharding=device)

        params: dict[str, Any] = {
            "encoder": jax.tree.map(lambda x: spec(x.shape), _pure(nnx.state(encoder, nnx.Param))),
            "head": {"kernel": spec((width, num_classes)), "bias": spec((num_classes,))},
        }
        if global_pool:
            params["fc_norm"] = {"scale": spec((width,)), "bias": spec((width,))}
        template = {"params": params, "pos_embed": spec(encoder.pos_embed.shape)}
        saved = store.restore(template, chosen).state
    finally:
        store.close()
    nnx.replace_by_pure_dict(state := nnx.state(encoder, nnx.Param), saved["params"]["encoder"])
    nnx.update(encoder, state)
    encoder.pos_embed.set_value(jnp.asarray(saved["pos_embed"], jnp.float32))
    p = saved["params"]
    return SavedClassifier(
        encoder=encoder,
        kernel=np.asarray(p["head"]["kernel"]),
        bias=np.asarray(p["head"]["bias"]),
        global_pool=global_pool,
        fc_norm_scale=np.asarray(p["fc_norm"]["scale"]) if global_pool else None,
        fc_norm_bias=np.asarray(p["fc_norm"]["bias"]) if global_pool else None,
    )


def _string_keys(tree: Any) -> Any:
    if isinstance(tree, dict):
        return {str(k): _string_keys(v) for k, v in tree.items()}
    return tree


def classifier_pytree(state: TrainState) -> dict[str, Any]:
    """The saved layout: ``{"params": nested dict (str keys), "pos_embed": [1 + N, D]}``.

    The position table is stored outside ``params`` whether it trained (a parameter) or not (a
    constant), so readers see one layout.
    """
    params = _string_keys(nnx.to_pure_dict(state.params))
    if "pos_embed" in params["encoder"]:
        pos_embed = params["encoder"].pop("pos_embed")
    else:
        pos_embed = nnx.to_pure_dict(state.constants)["encoder"]["pos_embed"]
    return {"params": params, "pos_embed": pos_embed}


def save_classifier(
    directory: str,
    state: TrainState,
    run_config: Any,
    settings: dict[str, Any],
    num_classes: int,
) -> None:
    """Saves :func:`classifier_pytree` with Orbax under ``directory/<step>``, plus the config.

    ``run_config`` is the pretraining config; ``settings`` the fine-tuning job's (must hold
    ``global_pool``).
    """
    stored = run_config.to_dict()
    stored["finetune"] = {**settings, "num_classes": num_classes}
    store = CheckpointStore(paths.resolve(directory), keep=1, async_save=False)
    try:
        store.save(int(state.step), classifier_pytree(state), config=stored)
        store.wait()
    finally:
        store.close()
