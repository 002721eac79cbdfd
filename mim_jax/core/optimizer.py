"""Optimizers and schedules for pretraining (optax).

MAE's recipe (``facebookresearch/mae`` ``main_pretrain.py``; see docs/mae_recipes.md): AdamW with
betas (0.9, 0.95) and weight decay 0.05, linear warmup then half-cycle cosine, stepped per
iteration. Weight decay skips 1-D parameters (biases, LayerNorm scales) as timm's
``add_weight_decay`` does; MAE still decays the cls and mask tokens, ColorMAE's mmpretrain recipe
does not (``decay_tokens``). Position embeddings are fixed tables, not parameters.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import optax


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    """Pretraining optimizer settings (absolute learning rate, not MAE's blr * bs / 256).

    Attributes:
      learning_rate: peak learning rate after warmup.
      warmup_steps: linear warmup from 0 to the peak.
      total_steps: the schedule's length; cosine decays to ``end_learning_rate`` there.
      b1, b2, weight_decay: AdamW's.
      end_learning_rate: floor of the cosine (MAE: 0).
      clip_norm: global-norm gradient clipping; None disables it (MAE does not clip).
      decay_tokens: apply weight decay to cls / mask tokens (MAE yes, ColorMAE no).
    """

    learning_rate: float = 1.5e-4
    warmup_steps: int = 0
    total_steps: int = 1000
    b1: float = 0.9
    b2: float = 0.95
    weight_decay: float = 0.05
    end_learning_rate: float = 0.0
    clip_norm: float | None = None
    decay_tokens: bool = True


def warmup_cosine(config: OptimizerConfig) -> optax.Schedule:
    """Linear warmup 0 -> peak over ``warmup_steps``, then cosine to the end rate."""
    warmup = max(config.warmup_steps, 0)
    decay = max(config.total_steps - warmup, 1)
    return optax.join_schedules(
        [
            optax.linear_schedule(0.0, config.learning_rate, max(warmup, 1)),
            optax.cosine_decay_schedule(
                config.learning_rate, decay, alpha=config.end_learning_rate / config.learning_rate
            ),
        ],
        boundaries=[warmup],
    )


DECAYED_NAMES = ("kernel", "weight")  # matrices of Linear layers (timm: every ndim >= 2 tensor)


def weight_decay_mask(params, decay_tokens: bool = True):
    """Pytree of bools: True where AdamW decays the parameter.

    Decided by the parameter's name rather than its rank, because the fused qkv bias is stored
    as [3, heads, head_dim] but is a 1-D bias in the reference: ``kernel``/``weight`` matrices
    are decayed, biases and LayerNorm scales are not, ``*_token`` follows ``decay_tokens``.
    """

    def name_of(path) -> str:
        names = [str(getattr(k, "key", getattr(k, "name", k))) for k in path]
        names = [n for n in names if n != "value"]  # nnx Variables add a trailing .value
        return names[-1] if names else ""

    def decays(path, _) -> bool:
        name = name_of(path)
        if name.endswith("_token"):
            return decay_tokens
        return name in DECAYED_NAMES

    return jax.tree_util.tree_map_with_path(decays, params)


def make_optimizer(config: OptimizerConfig) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """AdamW with warmup-cosine and optional clipping; returns ``(tx, schedule)``."""
    schedule = warmup_cosine(config)
    adamw = optax.adamw(
        schedule,
        b1=config.b1,
        b2=config.b2,
        weight_decay=config.weight_decay,
        mask=lambda params: weight_decay_mask(params, config.decay_tokens),
    )
    if config.clip_norm is None:
        return adamw, schedule
    return optax.chain(optax.clip_by_global_norm(config.clip_norm), adamw), schedule


def steps_per_epoch(config: Any, num_examples: int | None = None) -> int:
    """Optimizer steps per epoch of a run config: ``num_examples // batch_size``, at least 1.

    ``num_examples`` defaults to ``config.data.num_examples``.

    Raises:
      ValueError: the training-set size is unknown.
    """
    n = num_examples if num_examples is not None else config.data.num_examples
    if n is None:
        raise ValueError(
            "steps per epoch unknown: set config.data.num_examples or config.total_steps."
        )
    return max(1, int(n) // int(config.batch_size))


def peak_learning_rate(config: Any) -> float:
    """A run config's peak lr: ``lr``, or MAE's ``blr * batch_size / 256``, times ``lr_scale``.

    Raises:
      ValueError: both or neither of ``config.lr`` and ``config.blr`` are set.
    """
    if (config.lr is None) == (config.blr is None):
        raise ValueError(
            "set exactly one of config.lr (absolute) and config.blr (lr = blr * batch_size / 256); "
            f"got lr={config.lr}, blr={config.blr} (e.g. --config.blr=None --config.lr=1e-3)."
        )
    lr = config.lr if config.lr is not None else config.blr * config.batch_size / 256
    return float(lr) * float(config.get("lr_scale", 1.0))


def optimizer_config(config: Any, steps_per_epoch: int) -> OptimizerConfig:
    """The :class:`OptimizerConfig` of a run config; epochs are converted to steps.

    ``total_steps`` is ``config.total_steps`` when set, else ``epochs * steps_per_epoch``;
    ``warmup_steps = round(warmup_epochs * steps_per_epoch)`` (capped at total_steps).
    """
    if steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}.")
    total = config.total_steps
    if total is None:
        total = round(config.epochs * steps_per_epoch)
    warmup = min(round(config.warmup_epochs * steps_per_epoch), int(total))
    return OptimizerConfig(
        learning_rate=peak_learning_rate(config),
        warmup_steps=warmup,
        total_steps=int(total),
        b1=float(config.b1),
        b2=float(config.b2),
        weight_decay=float(config.weight_decay),
        end_learning_rate=float(config.get("end_lr", 0.0)),
        clip_norm=None if config.clip_norm is None else float(config.clip_norm),
        decay_tokens=bool(config.decay_tokens),
    )
