"""Linear probing as in MAE (``main_linprobe.py``): the probe model, its step and a fast
cached-feature trainer. The job itself (data, loop, evaluation) is :mod:`mim_jax.evaluate.jobs`.

The encoder is frozen; its feature (the cls token after the final norm, or the mean of the
final-normed patch tokens) goes through ``BatchNorm1d(D, affine=False, eps=1e-6)`` and a linear
layer (weights trunc-normal std 0.01, zero bias), trained with MAE's LARS
(:func:`mim_jax.evaluate.lars.mae_lars`, weight decay 0, momentum 0.9) at
``lr = blr * batch / 256`` with linear warmup and a per-step half-cycle cosine to 0. The batch
norm uses batch statistics in training and its running statistics (torch's momentum 0.1, unbiased
running variance) in evaluation.

The job (:class:`LinearProbe`, :func:`build_probe_step`) encodes every training batch with the
frozen encoder, as MAE does, so its training transform applies (MAE's recipe: the one-draw
RandomResizedCrop of ``util/crop.py``, scale 0.08-1, + flip; :class:`mim_jax.data.
LinearProbeAugment`); :func:`train_on_features`
trains the same head on features computed once (no augmentation), the quick probe that mask
comparisons use.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from mim_jax.core.optimizer import OptimizerConfig, warmup_cosine
from mim_jax.core.state import TrainState
from mim_jax.evaluate.data import pool_tokens, progress
from mim_jax.evaluate.lars import mae_lars
from mim_jax.models.vit import ViTEncoder

BN_EPS = 1e-6


@dataclasses.dataclass(frozen=True)
class LinearProbeConfig:
    """Linear-probe hyper-parameters (MAE's recipe: batch 16384, blr 0.1, 90 epochs, 10 warmup).

    ``lr`` (absolute) overrides ``blr * batch_size / 256`` when set.
    """

    epochs: int = 90
    warmup_epochs: int = 10
    batch_size: int = 256
    blr: float = 0.1
    lr: float | None = None
    weight_decay: float = 0.0
    momentum: float = 0.9
    bn_momentum: float = 0.1
    seed: int = 0

    def peak_lr(self) -> float:
        return float(self.lr) if self.lr is not None else self.blr * self.batch_size / 256


def trunc_normal(key: jax.Array, shape: tuple[int, ...], std: float) -> jax.Array:
    """timm's ``trunc_normal_(std=std)``: N(0, std) truncated to the absolute range [-2, 2]."""
    return std * jax.random.truncated_normal(key, -2.0 / std, 2.0 / std, shape, jnp.float32)


def init_head(key: jax.Array, dim: int, num_classes: int) -> tuple[dict, dict]:
    """``(params, batch_stats)``: kernel float32[D, C] (std 0.01), bias [C]; BN mean/var [D]."""
    params = {
        "kernel": trunc_normal(key, (dim, num_classes), 0.01),
        "bias": jnp.zeros((num_classes,), jnp.float32),
    }
    stats = {"mean": jnp.zeros((dim,), jnp.float32), "var": jnp.ones((dim,), jnp.float32)}
    return params, stats


def apply_head(
    params: dict, stats: dict, features: jax.Array, *, train: bool, bn_momentum: float = 0.1
) -> tuple[jax.Array, dict]:
    """BatchNorm (no affine) + linear: float[B, D] -> (logits float32[B, C], new batch_stats)."""
    chex.assert_rank(features, 2)
    x = features.astype(jnp.float32)
    if train:
        mean = x.mean(axis=0)
        var = x.var(axis=0)
        n = x.shape[0]
        unbiased = var * n / max(n - 1, 1)
        stats = {
            "mean": (1 - bn_momentum) * stats["mean"] + bn_momentum * mean,
            "var": (1 - bn_momentum) * stats["var"] + bn_momentum * unbiased,
        }
    else:
        mean, var = stats["mean"], stats["var"]
    x = (x - mean) / jnp.sqrt(var + BN_EPS)
    return x @ params["kernel"] + params["bias"], stats


def accuracy_counts(logits: jax.Array, labels: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(top-1, top-5) correct counts of ``logits`` [B, C] against int labels [B]."""
    top = jax.lax.top_k(logits, min(5, logits.shape[-1]))[1]
    hit = top == labels[:, None]
    return jnp.sum(hit[:, 0]), jnp.sum(jnp.any(hit, axis=1))


def _make_step(tx: optax.GradientTransformation, bn_momentum: float):
    def step(carry, batch):
        params, stats, opt_state = carry
        x, y = batch

        def loss_fn(p):
            logits, new_stats = apply_head(p, stats, x, train=True, bn_momentum=bn_momentum)
            loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
            return loss, new_stats

        (loss, new_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        return (params, new_stats, opt_state), loss

    return step


def _evaluate(params, stats, features: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    logits, _ = apply_head(params, stats, jnp.asarray(features), train=False)
    top1, top5 = accuracy_counts(logits, jnp.asarray(labels))
    return float(top1) / len(labels), float(top5) / len(labels)


def train_on_features(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    val_features: np.ndarray,
    val_labels: np.ndarray,
    *,
    num_classes: int,
    config: LinearProbeConfig = LinearProbeConfig(),
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Trains the probe head on cached features; returns the val accuracy and the history.

    Args:
      train_features: float32[N, D], train_labels int[N] (N >= 1); val_*: the same for val.
      num_classes: C.
      config: hyper-parameters; the batch is clipped to N.

    Returns:
      ``{"linear_top1", "linear_top5"}`` (after the last epoch), ``"linear_best_top1"`` (max
      over epochs, for reference only: selecting on val is optimistic), ``"linear_train_loss"``,
      ``"lr"``, ``"steps"`` and ``"history"`` (per-epoch val top-1).
    """
    log = log or progress
    train_features = np.asarray(train_features, np.float32)
    chex.assert_rank(train_features, 2)
    n, dim = train_features.shape
    batch = min(config.batch_size, n)
    steps_per_epoch = max(n // batch, 1)
    total = config.epochs * steps_per_epoch
    lr = config.peak_lr()
    schedule = warmup_cosine(
        OptimizerConfig(
            learning_rate=lr,
            warmup_steps=config.warmup_epochs * steps_per_epoch,
            total_steps=total,
            end_learning_rate=0.0,
        )
    )
    tx = mae_lars(schedule, weight_decay=config.weight_decay, momentum=config.momentum)
    key = jax.random.key(config.seed)
    key, init_key = jax.random.split(key)
    params, stats = init_head(init_key, dim, num_classes)
    opt_state = tx.init(params)
    step = _make_step(tx, config.bn_momentum)
    feats_dev = jnp.asarray(train_features)
    labels_dev = jnp.asarray(train_labels, jnp.int32)

    @jax.jit
    def run_epoch(carry, perm):
        def body(c, idx):
            return step(c, (feats_dev[idx], labels_dev[idx]))

        return jax.lax.scan(body, carry, perm)

    carry = (params, stats, opt_state)
    history = []
    start = time.perf_counter()
    loss = float("nan")
    for epoch in range(config.epochs):
        key, perm_key = jax.random.split(key)
        perm = jax.random.permutation(perm_key, n)[: steps_per_epoch * batch]
        carry, losses = run_epoch(carry, perm.reshape(steps_per_epoch, batch))
        loss = float(losses[-1])
        top1, _ = _evaluate(carry[0], carry[1], val_features, val_labels)
        history.append(top1)
        if epoch == config.epochs - 1 or (epoch + 1) % max(config.epochs // 5, 1) == 0:
            log(
                f"linear probe epoch {epoch + 1}/{config.epochs}: loss {loss:.4f}, "
                f"val top-1 {top1:.4f} ({time.perf_counter() - start:.1f}s)"
            )
    if not math.isfinite(loss):
        raise FloatingPointError(f"linear probe loss is {loss}; lower --blr.")
    top1, top5 = _evaluate(carry[0], carry[1], val_features, val_labels)
    return {
        "linear_top1": top1,
        "linear_top5": top5,
        "linear_best_top1": max(history),
        "linear_train_loss": loss,
        "lr": lr,
        "steps": total,
        "history": history,
    }


class ProbeHead(nnx.Module):
    """BatchNorm1d (no affine, eps 1e-6; running statistics as ``nnx.BatchStat``) + linear."""

    def __init__(self, dim: int, num_classes: int, *, rngs: nnx.Rngs):
        params, stats = init_head(rngs.params(), dim, num_classes)
        self.kernel = nnx.Param(params["kernel"])
        self.bias = nnx.Param(params["bias"])
        self.mean = nnx.BatchStat(stats["mean"])
        self.var = nnx.BatchStat(stats["var"])

    def __call__(
        self, features: jax.Array, *, train: bool = False, bn_momentum: float = 0.1
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """float[B, D] -> (logits float32[B, C], the running statistics after this batch).

        Pure: in training the new statistics are returned, not stored (see
        :meth:`set_statistics`), so the call can run under ``jax.grad``.
        """
        params = {"kernel": self.kernel.get_value(), "bias": self.bias.get_value()}
        stats = {"mean": self.mean.get_value(), "var": self.var.get_value()}
        return apply_head(params, stats, features, train=train, bn_momentum=bn_momentum)

    def set_statistics(self, stats: dict[str, jax.Array]) -> None:
        """Stores running statistics returned by a training call."""
        self.mean.set_value(stats["mean"])
        self.var.set_value(stats["var"])


class LinearProbe(nnx.Module):
    """A frozen encoder's feature (``pool``: cls or mean) through a :class:`ProbeHead`."""

    def __init__(self, encoder: ViTEncoder, num_classes: int, pool: str, *, seed: int = 0):
        pool_tokens(
            jnp.zeros((1, encoder.num_prefix_tokens + 1, 1)), pool, encoder.num_prefix_tokens
        )  # checks the pool mode against the encoder
        self.encoder = encoder
        self.pool = pool
        self.head = ProbeHead(encoder.config.width, num_classes, rngs=nnx.Rngs(params=seed))

    def __call__(
        self, images: jax.Array, *, train: bool = False, bn_momentum: float = 0.1
    ) -> jax.Array:
        """float[B, H, W, C] -> logits float32[B, num_classes] (evaluation statistics)."""
        return self.logits_and_statistics(images, train=train, bn_momentum=bn_momentum)[0]

    def logits_and_statistics(
        self, images: jax.Array, *, train: bool, bn_momentum: float
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """(logits, running statistics after this batch); no gradient reaches the encoder."""
        tokens = self.encoder.encode(images)
        features = jax.lax.stop_gradient(
            pool_tokens(tokens, self.pool, self.encoder.num_prefix_tokens)
        )
        return self.head(features, train=train, bn_momentum=bn_momentum)


#: The variables a linear probe trains: the head's kernel and bias (the encoder is frozen).
PROBE_TRAINABLE = nnx.All(nnx.Param, nnx.PathContains("head"))


def build_probe_step(
    graphdef: nnx.GraphDef,
    tx: optax.GradientTransformation,
    schedule: optax.Schedule,
    bn_momentum: float,
) -> Callable:
    """``step(state, {"image", "label"}, key) -> (state, metrics)`` of a :class:`LinearProbe`
    split with :data:`PROBE_TRAINABLE` (the BatchNorm statistics live in ``state.constants``)."""

    def loss_fn(params, constants, images, labels):
        model = nnx.merge(graphdef, params, constants)
        logits, stats = model.logits_and_statistics(images, train=True, bn_momentum=bn_momentum)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
        return loss, stats

    def step(state: TrainState, batch: dict[str, jax.Array], key: jax.Array):
        del key  # deterministic given the batch
        chex.assert_rank(batch["image"], 4)
        (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.params, state.constants, batch["image"], batch["label"]
        )
        model = nnx.merge(graphdef, state.params, state.constants)
        model.head.set_statistics(stats)
        _, _, constants = nnx.split(model, PROBE_TRAINABLE, ...)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {
            "loss": loss.astype(jnp.float32),
            "lr": jnp.asarray(schedule(state.step), jnp.float32),
        }
        new_state = state.replace(
            step=state.step + 1, params=params, constants=constants, opt_state=opt_state
        )
        return new_state, metrics

    return step
