"""End-to-end fine-tuning as in MAE (``main_finetune.py``, ``util/lr_decay.py``; research/masking.md
section 11.4).

The whole encoder trains with a classification head: global pooling (mean of the patch tokens of
the last block, then ``fc_norm``, which replaces the encoder's final norm) or the cls token after
the final norm, then a linear head (trunc-normal std 2e-5, zero bias). AdamW (0.9, 0.999),
weight decay 0.05 on matrices only (biases, norm scales and the cls token are exempt), learning
rate ``blr * batch / 256`` with layer-wise decay (layer ids: cls/pos/patch_embed 0, block i i+1,
the rest depth+1; scale ``decay ** (depth + 1 - id)``), linear warmup and per-step cosine to
``min_lr``. Stochastic depth (``drop_path``, linear over blocks), label smoothing and batch-mode
mixup/cutmix (:mod:`mim_jax.evaluate.mixup`) regularise it.

The step is one ``jax.jit`` with ``in_shardings``/``out_shardings`` from the pretraining mesh and
logical-axis rules (:mod:`mim_jax.train.sharding`), the state donated; batches are split over
``data`` x ``fsdp`` as in pretraining.

Saved checkpoint (``<checkpoint_dir>/<step>/state``, Orbax ``StandardSave``; the CLI uses
``<out>/finetuned``), a plain pytree::

    {"params": {"encoder": {"patch_embed": {"kernel": [p*p*C, D], "bias": [D]},
                            "cls_token": [1, 1, D],
                            "blocks": {"0": {...same names as the pretraining encoder...}, ...},
                            "norm": {"scale": [D], "bias": [D]}},
                "fc_norm": {"scale": [D], "bias": [D]},      (global pool only)
                "head": {"kernel": [D, num_classes], "bias": [num_classes]}},
     "pos_embed": [1 + N, D]}

with ``<step>/config`` holding the pretraining config plus ``"finetune"`` (these settings and
``num_classes``). With global pooling the encoder's ``norm`` is unused (MAE deletes it).
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx, struct
from jax.sharding import Mesh, NamedSharding

from mim_jax import data
from mim_jax.evaluate.data import EvalData, iterate_batches, progress
from mim_jax.evaluate.linear_probe import accuracy_counts, trunc_normal
from mim_jax.evaluate.mixup import MixupConfig, mix_batch
from mim_jax.evaluate.pretrained import Pretrained
from mim_jax.models import layers
from mim_jax.models.vit import ViTEncoder
from mim_jax.train.checkpoint import CheckpointStore
from mim_jax.train.metrics import Eta
from mim_jax.train.optimizer import OptimizerConfig, warmup_cosine, weight_decay_mask
from mim_jax.train.sharding import (
    batch_sharding,
    make_mesh,
    optimizer_shardings,
    replicated,
    state_shardings,
)

#: MAE's layer decay per encoder size (FINETUNE.md: base 0.65, large/huge 0.75; argparse 0.75).
LAYER_DECAY = {"vit_base": 0.65, "vit_large": 0.75, "vit_huge": 0.75}
DEFAULT_LAYER_DECAY = 0.75


@dataclasses.dataclass(frozen=True)
class FinetuneConfig:
    """Fine-tuning hyper-parameters (defaults: MAE's ViT-B recipe, batch 1024, 100 epochs).

    ``lr`` (absolute) overrides ``blr * batch_size / 256``; ``layer_decay=None`` takes the
    encoder size's value from :data:`LAYER_DECAY`.
    """

    epochs: int = 100
    warmup_epochs: float = 5
    batch_size: int = 1024
    blr: float = 5e-4
    lr: float | None = None
    min_lr: float = 1e-6
    layer_decay: float | None = None
    weight_decay: float = 0.05
    b1: float = 0.9
    b2: float = 0.999
    drop_path: float = 0.1
    mixup: MixupConfig = dataclasses.field(default_factory=MixupConfig)
    global_pool: bool = True
    augment: bool = False
    eval_batch_size: int = 256
    eval_every_epochs: int = 0  # 0: evaluate after the last epoch only
    seed: int = 0

    def peak_lr(self) -> float:
        return float(self.lr) if self.lr is not None else self.blr * self.batch_size / 256


class Classifier(nnx.Module):
    """ViT encoder + (global pool, fc_norm | cls token) + linear head: images -> logits."""

    def __init__(
        self,
        encoder: ViTEncoder,
        num_classes: int,
        *,
        global_pool: bool = True,
        rngs: nnx.Rngs,
    ):
        if not global_pool and not encoder.use_cls:
            raise ValueError("global_pool=False classifies the cls token; this encoder has none.")
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
    seed: int = 0,
) -> Classifier:
    """A :class:`Classifier` whose encoder carries ``pretrained``'s weights (and ``drop_path``)."""
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
    return Classifier(encoder, num_classes, global_pool=global_pool, rngs=rngs)


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
    params: Any, config: FinetuneConfig, depth: int, decay: float, schedule: optax.Schedule
) -> optax.GradientTransformation:
    """AdamW (matrices decayed, 1-D params and tokens exempt) with layer-wise lr decay."""
    adamw = optax.adamw(
        schedule,
        b1=config.b1,
        b2=config.b2,
        eps=1e-8,
        weight_decay=config.weight_decay,
        mask=lambda p: weight_decay_mask(p, decay_tokens=False),
    )
    return optax.chain(adamw, scale_by_tree(layer_scales(params, depth, decay)))


@struct.dataclass
class FinetuneState:
    """step int32, params / constants (nnx.State of the classifier), opt_state."""

    step: jax.Array
    params: Any
    constants: Any
    opt_state: Any


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

    def step(state: FinetuneState, batch: dict[str, jax.Array], key: jax.Array):
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


@dataclasses.dataclass
class CompiledFinetune:
    """The compiled step, its initial state, shardings and a compiled ``logits`` function."""

    step: Callable
    state: FinetuneState
    state_sharding: FinetuneState
    batch_sharding: NamedSharding
    label_sharding: NamedSharding
    logits: Callable
    graphdef: nnx.GraphDef
    mesh: Mesh


def compile_finetune(
    model: Classifier,
    tx: optax.GradientTransformation,
    schedule: optax.Schedule,
    mesh: Mesh,
    num_classes: int,
    mixup: MixupConfig,
) -> CompiledFinetune:
    """Places the classifier and a fresh optimizer state on ``mesh`` and compiles the step.

    Parameters and optimizer moments follow the pretraining logical-axis rules; the batch is
    split over ``data`` x ``fsdp``; the state is donated.
    """
    graphdef, params, constants = nnx.split(model, nnx.Param, ...)
    params_sh = state_shardings(params, mesh)
    constants_sh = state_shardings(constants, mesh)
    params = jax.device_put(params, params_sh)
    constants = jax.device_put(constants, constants_sh)
    opt_sh = optimizer_shardings(tx, params, params_sh, mesh)
    opt_state = jax.jit(tx.init, out_shardings=opt_sh)(params)
    state = FinetuneState(
        step=jax.device_put(jnp.zeros((), jnp.int32), replicated(mesh)),
        params=params,
        constants=constants,
        opt_state=opt_state,
    )
    state_sh = FinetuneState(
        step=replicated(mesh), params=params_sh, constants=constants_sh, opt_state=opt_sh
    )
    image_sh, label_sh = batch_sharding(mesh, 4), batch_sharding(mesh, 1)
    step = jax.jit(
        build_finetune_step(graphdef, tx, schedule, num_classes, mixup),
        in_shardings=(state_sh, {"image": image_sh, "label": label_sh}, replicated(mesh)),
        out_shardings=(state_sh, replicated(mesh)),
        donate_argnums=0,
    )

    @jax.jit
    def logits(params, constants, images):
        return nnx.merge(graphdef, params, constants)(images)

    return CompiledFinetune(step, state, state_sh, image_sh, label_sh, logits, graphdef, mesh)


def evaluate_classifier(
    compiled: CompiledFinetune,
    state: FinetuneState,
    source,
    image_size: int,
    batch_size: int,
) -> tuple[float, float]:
    """(top-1, top-5) accuracy on every record of ``source`` (eval transform, padded batches)."""
    ways = compiled.mesh.shape["data"] * compiled.mesh.shape["fsdp"]
    batch_size = -(-batch_size // ways) * ways
    top1 = top5 = total = 0
    for images, labels in iterate_batches(source, batch_size, image_size):
        b = len(labels)
        padded = np.zeros((batch_size, *images.shape[1:]), np.float32)
        padded[:b] = images
        logits = compiled.logits(
            state.params, state.constants, jax.device_put(padded, compiled.batch_sharding)
        )
        c1, c5 = accuracy_counts(jnp.asarray(np.asarray(logits)[:b]), jnp.asarray(labels))
        top1, top5, total = top1 + int(c1), top5 + int(c5), total + b
    return top1 / total, top5 / total


def finetune(
    pretrained: Pretrained,
    eval_data: EvalData,
    config: FinetuneConfig = FinetuneConfig(),
    *,
    mesh: Mesh | None = None,
    checkpoint_dir: str | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Fine-tunes ``pretrained``'s encoder on ``eval_data``; returns the val accuracy.

    Args:
      pretrained: the loaded run (or :func:`random_init` for a from-scratch baseline).
      eval_data: labelled train / val sources.
      config: hyper-parameters; the global batch is clipped to the training-set size and
        must divide over the batch-sharded devices.
      mesh: default: the pretraining config's mesh (``config.mesh``) over all devices.
      checkpoint_dir: when given, the fine-tuned classifier is saved there (Orbax, see the
        module docstring).

    Returns:
      ``{"finetune_top1", "finetune_top5", "finetune_best_top1", "finetune_train_loss",
      "lr", "layer_decay", "steps", "history"}``.
    """
    log = log or progress
    run_config = pretrained.config
    if mesh is None:
        m = run_config.mesh
        mesh = make_mesh(m.data, m.fsdp, m.tensor)
    ways = mesh.shape["data"] * mesh.shape["fsdp"]
    process_count = jax.process_count()
    n = len(eval_data.train)
    batch = min(config.batch_size, n)
    batch -= batch % ways
    if batch < ways:
        raise ValueError(
            f"fine-tune batch {config.batch_size} (clipped to the {n} training images) must be "
            f"at least the {ways} batch-sharded devices (data x fsdp)."
        )
    steps_per_epoch = max(n // batch, 1)
    total = config.epochs * steps_per_epoch
    depth = pretrained.model.config.encoder.depth
    decay = config.layer_decay
    if decay is None:
        decay = LAYER_DECAY.get(str(run_config.model.name), DEFAULT_LAYER_DECAY)
    lr = float(config.lr) if config.lr is not None else config.blr * batch / 256
    schedule = warmup_cosine(
        OptimizerConfig(
            learning_rate=lr,
            warmup_steps=round(config.warmup_epochs * steps_per_epoch),
            total_steps=total,
            end_learning_rate=min(config.min_lr, lr),
        )
    )
    model = classifier_from_pretrained(
        pretrained,
        eval_data.num_classes,
        drop_path=config.drop_path,
        global_pool=config.global_pool,
        seed=config.seed,
    )
    _, params, _ = nnx.split(model, nnx.Param, ...)
    tx = finetune_optimizer(params, config, depth, decay, schedule)
    compiled = compile_finetune(model, tx, schedule, mesh, eval_data.num_classes, config.mixup)
    iterator = data.make_pipeline(
        eval_data.train,
        batch_size=batch // process_count,
        image_size=eval_data.image_size,
        seed=config.seed,
        augment=config.augment,
        scale=(0.08, 1.0),
        process_index=jax.process_index(),
        process_count=process_count,
    )
    key = jax.random.key(config.seed)
    state = compiled.state
    log(
        f"fine-tuning {run_config.model.name} (depth {depth}, layer decay {decay}, drop path "
        f"{config.drop_path}) for {total} steps of {batch} images, peak lr {lr:.3g}"
    )
    history: list[float] = []
    eta = Eta(config.epochs, "fine-tune epoch")
    loss = float("nan")
    for epoch in range(config.epochs):
        for _ in range(steps_per_epoch):
            record = next(iterator)
            batch_arrays = {
                "image": jax.make_array_from_process_local_data(
                    compiled.batch_sharding, record["image"]
                ),
                "label": jax.make_array_from_process_local_data(
                    compiled.label_sharding, record["label"].astype(np.int32)
                ),
            }
            state, metrics = compiled.step(state, batch_arrays, key)
        loss = float(metrics["loss"])
        if not math.isfinite(loss):
            raise FloatingPointError(f"fine-tune loss is {loss} at epoch {epoch + 1}; lower --blr.")
        last = epoch == config.epochs - 1
        every = config.eval_every_epochs
        if last or (every and (epoch + 1) % every == 0):
            top1, top5 = evaluate_classifier(
                compiled, state, eval_data.val, eval_data.image_size, config.eval_batch_size
            )
            history.append(top1)
            log(eta.line(epoch + 1, f"loss {loss:.4f} | val top-1 {top1:.4f}"))
        elif (epoch + 1) % max(config.epochs // 10, 1) == 0:
            log(eta.line(epoch + 1, f"loss {loss:.4f}"))
    if checkpoint_dir is not None:
        save_classifier(checkpoint_dir, state, compiled, run_config, config, eval_data.num_classes)
        log(f"saved the fine-tuned classifier to {checkpoint_dir}")
    return {
        "finetune_top1": top1,
        "finetune_top5": top5,
        "finetune_best_top1": max(history),
        "finetune_train_loss": loss,
        "lr": lr,
        "layer_decay": decay,
        "batch_size": batch,
        "steps": total,
        "history": history,
    }


def _string_keys(tree: Any) -> Any:
    if isinstance(tree, dict):
        return {str(k): _string_keys(v) for k, v in tree.items()}
    return tree


def classifier_pytree(state: FinetuneState) -> dict[str, Any]:
    """The saved layout: ``{"params": nested dict (str keys), "pos_embed": [1 + N, D]}``."""
    params = _string_keys(nnx.to_pure_dict(state.params))
    constants = nnx.to_pure_dict(state.constants)
    return {"params": params, "pos_embed": constants["encoder"]["pos_embed"]}


def save_classifier(
    directory: str,
    state: FinetuneState,
    compiled: CompiledFinetune,
    run_config,
    config: FinetuneConfig,
    num_classes: int,
) -> None:
    """Saves :func:`classifier_pytree` with Orbax under ``directory/<step>``, plus the config."""
    stored = run_config.to_dict()
    settings = dataclasses.asdict(config)
    stored["finetune"] = {**settings, "num_classes": num_classes}
    store = CheckpointStore(os.path.abspath(directory), keep=1, async_save=False)
    try:
        store.save(int(state.step), classifier_pytree(state), config=stored)
        store.wait()
    finally:
        store.close()
