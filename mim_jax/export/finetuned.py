"""Reading the classifier that ``mim_jax.evaluate`` fine-tuning saves, for the timm export.

:func:`mim_jax.evaluate.finetune.save_classifier` writes ``<dir>/<step>/state`` (Orbax) holding
``{"params": {"encoder": ..., "fc_norm": ... (global pool only), "head": {"kernel", "bias"}},
"pos_embed": [1 + N, D]}`` and ``<step>/config``: the pretraining config plus ``"finetune"``
(``global_pool``, ``num_classes``, ...). :func:`load_finetuned` turns it into a ``ViTEncoder``
with the fine-tuned weights and a :class:`ClassifierHead`.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mim_jax.export.head import ClassifierHead
from mim_jax.models.vit import ViTEncoder


def is_finetuned(config: dict[str, Any] | None) -> bool:
    """Whether a checkpoint's stored config is a fine-tuned classifier's (has ``"finetune"``)."""
    return bool(config) and "finetune" in config


def _encoder_from_config(config: dict[str, Any]) -> ViTEncoder:
    from mim_jax import configs
    from mim_jax.evaluate.pretrained import config_from_dict
    from mim_jax.models.mae import mae_config

    cfg = mae_config(**configs.to_model_kwargs(config_from_dict(config)))
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


def load_finetuned(
    directory: str | os.PathLike, step: int | None = None
) -> tuple[ViTEncoder, ClassifierHead]:
    """The fine-tuned encoder and head saved by ``mim_jax.evaluate`` fine-tuning.

    Args:
      directory: the folder ``save_classifier`` wrote (holding numbered step folders).
      step: a step (default: the latest).

    Returns:
      ``(encoder, head)``: a ``ViTEncoder`` with the fine-tuned weights and position table, and
      the head (``global_pool`` "avg" with ``fc_norm``, or "token").

    Raises:
      ValueError: no checkpoint, an unknown step, or a checkpoint that is not a classifier.
    """
    from mim_jax.train.checkpoint import CheckpointStore

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
    head = ClassifierHead(
        kernel=np.asarray(p["head"]["kernel"]),
        bias=np.asarray(p["head"]["bias"]),
        global_pool="avg" if global_pool else "token",
        fc_norm_scale=np.asarray(p["fc_norm"]["scale"]) if global_pool else None,
        fc_norm_bias=np.asarray(p["fc_norm"]["bias"]) if global_pool else None,
    )
    return encoder, head
