"""End-to-end fine-tuning as in MAE (``main_finetune.py``, ``util/lr_decay.py``): its optimizer
and step. The job itself (data, loop, evaluation) is :mod:`mim_jax.evaluate.jobs`.

The whole encoder trains with a classification head (:class:`~mim_jax.evaluate.classifier.
Classifier`). AdamW (0.9, 0.999),
weight decay 0.05 on matrices only (biases, norm scales and the cls token are exempt), learning
rate ``blr * batch / 256`` with layer-wise decay (layer ids: cls/pos/patch_embed 0, block i i+1,
the rest depth+1; scale ``decay ** (depth + 1 - id)``), linear warmup and per-step cosine to
``min_lr``. The position table trains too in MAE's recipe (``train_pos_embed``; layer id 0, no
weight decay: its name is not a decayed matrix name). Stochastic depth (``drop_path``, linear
over blocks), label smoothing and batch-mode mixup/cutmix (:mod:`mim_jax.evaluate.mixup`)
regularise it; the training images' RandAugment and RandomErasing run in the input pipeline
(:func:`mim_jax.evaluate.jobs.train_transform`).

The step is compiled by the run core's one layout/place/jit path (:mod:`mim_jax.core.state`):
shardings from the pretraining mesh and logical-axis rules, the state donated, the batch split
over ``data`` x ``fsdp``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import chex
import jax
import jax.numpy as jnp
import optax
from flax import nnx

from mim_jax.core.optimizer import weight_decay_mask
from mim_jax.core.state import TrainState
from mim_jax.evaluate.mixup import MixupConfig, mix_batch

#: MAE's layer decay per encoder size (FINETUNE.md: base 0.65, large/huge 0.75; argparse 0.75).
LAYER_DECAY = {"vit_base": 0.65, "vit_large": 0.75, "vit_huge": 0.75}
DEFAULT_LAYER_DECAY = 0.75


def _names(path) -> list[str]:
    names = [str(getattr(k, "key", getattr(k, "name", k))) for k in path]
    return [n for n in names if n != "value"]


def layer_id(names: list[str], depth: int) -> int:
    """MAE's ``get_layer_id_for_vit`` on a parameter path (e.g. ``encoder.blocks.3.mlp...``)."""
    if names and names[0] == "encoder":
        if len(names) > 1 and names[1] in ("cls_token", "pos_embed", "patch_embed"):
            return 0
        if len(names) > 2 and names[1] == "blocks":
            return int(names[2]) + 1
    return depth + 1


def layer_scales(params: Any, depth: int, decay: float) -> Any:
    """Pytree of float learning-rate scales ``decay ** (depth + 1 - layer_id)``."""
    return jax.tree_util.tree_map_with_path(
        lambda path, _: float(decay ** (depth + 1 - layer_id(_names(path), depth))), params
    )


def scale_by_tree(scales: Any) -> optax.GradientTransformation:
    """Multiplies each update by its fixed scale (the layer-wise lr decay)."""

    def update(updates, state, params=None):
        del params
        return jax.tree.map(lambda u, s: u * jnp.asarray(s, u.dtype), updates, scales), state

    return optax.GradientTransformation(lambda _: optax.EmptyState(), update)


def finetune_optimizer(
    params: Any, config: Any, depth: int, decay: float, schedule: optax.Schedule
) -> optax.GradientTransformation:
    """AdamW (matrices decayed, 1-D params and tokens exempt) with layer-wise lr decay.

    ``config`` gives ``b1``, ``b2`` and ``weight_decay`` (a fine-tuning job config).
    """
    adamw = optax.adamw(
        schedule,
        b1=config.b1,
        b2=config.b2,
        eps=1e-8,
        weight_decay=config.weight_decay,
        mask=lambda p: weight_decay_mask(p, decay_tokens=False),
    )
    return optax.chain(adamw, scale_by_tree(layer_scales(params, depth, decay)))


def soft_cross_entropy(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """Mean over the batch of ``sum(-targets * log_softmax(logits))`` (float32 scalar)."""
    return jnp.mean(jnp.sum(-targets * jax.nn.log_softmax(logits.astype(jnp.float32)), axis=-1))


def build_finetune_step(
    graphdef: nnx.GraphDef,
    tx: optax.GradientTransformation,
    schedule: optax.Schedule,
    num_classes: int,
    mixup: MixupConfig,
) -> Callable:
    """``step(state, {"image": [B,H,W,C], "label": int32[B]}, key) -> (state, metrics)``."""

    def loss_fn(params, constants, images, targets, key):
        model = nnx.merge(graphdef, params, constants)
        return soft_cross_entropy(model(images, key=key), targets)

    def step(state: TrainState, batch: dict[str, jax.Array], key: jax.Array):
        chex.assert_rank(batch["image"], 4)
        step_key = jax.random.fold_in(key, state.step)
        mix_key, drop_key = jax.random.split(step_key)
        images, targets, _ = mix_batch(mix_key, batch["image"], batch["label"], num_classes, mixup)
        loss, grads = jax.value_and_grad(loss_fn)(
            state.params, state.constants, images, targets, drop_key
        )
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {
            "loss": loss,
            "grad_norm": optax.tree.norm(grads).astype(jnp.float32),
            "lr": jnp.asarray(schedule(state.step), jnp.float32),
        }
        return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics

    return step
