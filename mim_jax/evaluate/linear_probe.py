"""Linear probing as in MAE (``main_linprobe.py``; research/masking.md section 11.5).

The encoder is frozen; its feature (the cls token after the final norm, or the mean of the
final-normed patch tokens) goes through ``BatchNorm1d(D, affine=False, eps=1e-6)`` and a linear
layer (weights trunc-normal std 0.01, zero bias), trained with MAE's LARS
(:func:`mim_jax.evaluate.lars.mae_lars`, weight decay 0, momentum 0.9) at
``lr = blr * batch / 256`` with linear warmup and a per-step half-cycle cosine to 0. The batch
norm uses batch statistics in training and its running statistics (torch's momentum 0.1, unbiased
running variance) in evaluation.

Without augmentation the features are computed once and cached (the fast path); with
``augment=True`` every step encodes a freshly augmented batch (RandomResizedCrop + flip).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax

from mim_jax.evaluate.data import EvalData, FeatureExtractor, extract_features, progress
from mim_jax.evaluate.lars import mae_lars
from mim_jax.train.metrics import Eta
from mim_jax.train.optimizer import OptimizerConfig, warmup_cosine

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
    eta = Eta(config.epochs, "linear probe epoch")
    loss = float("nan")
    for epoch in range(config.epochs):
        key, perm_key = jax.random.split(key)
        perm = jax.random.permutation(perm_key, n)[: steps_per_epoch * batch]
        carry, losses = run_epoch(carry, perm.reshape(steps_per_epoch, batch))
        loss = float(losses[-1])
        top1, _ = _evaluate(carry[0], carry[1], val_features, val_labels)
        history.append(top1)
        if epoch == config.epochs - 1 or (epoch + 1) % max(config.epochs // 5, 1) == 0:
            log(eta.line(epoch + 1, f"loss {loss:.4f} | val top-1 {top1:.4f}"))
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


def linear_probe(
    extractor: FeatureExtractor,
    eval_data: EvalData,
    config: LinearProbeConfig = LinearProbeConfig(),
    *,
    augment: bool = False,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """MAE linear probe of a frozen encoder on ``eval_data`` (see the module docstring)."""
    log = log or progress
    size = eval_data.image_size
    val = extract_features(extractor, eval_data.val, size, name="val features", log=log)
    if not augment:
        train = extract_features(extractor, eval_data.train, size, name="train features", log=log)
        return train_on_features(
            *train, *val, num_classes=eval_data.num_classes, config=config, log=log
        )
    return _train_augmented(extractor, eval_data, val, config, log)


def _train_augmented(extractor, eval_data, val, config, log) -> dict[str, Any]:
    """Per-step features of augmented batches (RandomResizedCrop(0.08, 1) + flip)."""
    from mim_jax import data

    n = len(eval_data.train)
    batch = min(config.batch_size, n)
    steps_per_epoch = max(n // batch, 1)
    total = config.epochs * steps_per_epoch
    schedule = warmup_cosine(
        OptimizerConfig(
            learning_rate=config.peak_lr(),
            warmup_steps=config.warmup_epochs * steps_per_epoch,
            total_steps=total,
            end_learning_rate=0.0,
        )
    )
    tx = mae_lars(schedule, weight_decay=config.weight_decay, momentum=config.momentum)
    params, stats = init_head(jax.random.key(config.seed), extractor.width, eval_data.num_classes)
    carry = (params, stats, tx.init(params))
    step = jax.jit(_make_step(tx, config.bn_momentum))
    iterator = data.make_pipeline(
        eval_data.train,
        batch_size=batch,
        image_size=eval_data.image_size,
        seed=config.seed,
        scale=(0.08, 1.0),
    )
    loss = float("nan")
    history = []
    for epoch in range(config.epochs):
        for _ in range(steps_per_epoch):
            record = next(iterator)
            feats = extractor(record["image"])
            carry, loss_dev = step(carry, (jnp.asarray(feats), jnp.asarray(record["label"])))
        loss = float(loss_dev)
        top1, _ = _evaluate(carry[0], carry[1], *val)
        history.append(top1)
        log(f"linear probe epoch {epoch + 1}/{config.epochs}: loss {loss:.4f}, val {top1:.4f}")
    top1, top5 = _evaluate(carry[0], carry[1], *val)
    return {
        "linear_top1": top1,
        "linear_top5": top5,
        "linear_best_top1": max(history),
        "linear_train_loss": loss,
        "lr": config.peak_lr(),
        "steps": total,
        "history": history,
    }
