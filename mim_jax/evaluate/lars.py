"""MAE's LARS (the MoCo-v3 variant) as an optax ``GradientTransformation``.

Formulas (``facebookresearch/mae :: util/lars.py``; docs/mae_recipes.md, "Linear probing"), for each
parameter ``p`` with gradient ``g``, momentum ``m`` and learning rate ``lr`` of this step::

    u     = g + wd * p                                     (ndim > 1 only)
    ratio = trust * ||p|| / ||u||, or 1 if either norm is 0 (ndim > 1 only)
    mu    = m * mu + ratio * u
    p     = p - lr * mu

Parameters with ``ndim <= 1`` (biases, norm scales) get neither weight decay nor the trust ratio.
The learning rate multiplies the momentum buffer *after* it is updated. ``optax.lars`` scales by
the learning rate *before* its momentum trace, so the two agree at a constant learning rate and
differ whenever it changes (warmup, cosine decay).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax


class LarsState(NamedTuple):
    """``count``: int32 steps taken (indexes the schedule); ``momentum``: one buffer per param."""

    count: jax.Array
    momentum: Any


def lars_applies(param: jax.Array) -> bool:
    """Whether weight decay and the trust ratio apply to ``param`` (MAE: ``ndim > 1``)."""
    return jnp.ndim(param) > 1


def mae_lars(
    learning_rate: optax.ScalarOrSchedule,
    *,
    weight_decay: float = 0.0,
    momentum: float = 0.9,
    trust_coefficient: float = 0.001,
) -> optax.GradientTransformation:
    """MAE/MoCo-v3 LARS: weight decay and trust ratio on ``ndim > 1`` params, lr after momentum.

    Args:
      learning_rate: a float or an optax schedule of the step count (``count`` before the step).
      weight_decay: ``wd`` (MAE's linear probe uses 0).
      momentum: ``m``.
      trust_coefficient: the trust ratio's coefficient (0.001).

    Returns:
      the transformation; ``update(grads, state, params)`` needs ``params`` and returns the
      updates ``-lr * mu`` to add with ``optax.apply_updates``.
    """

    def init(params):
        return LarsState(
            count=jnp.zeros((), jnp.int32),
            momentum=jax.tree.map(jnp.zeros_like, params),
        )

    def update(updates, state, params=None):
        if params is None:
            raise ValueError("mae_lars needs the parameters: call update(grads, state, params).")

        def direction(g, p):
            if not lars_applies(p):
                return g
            u = g + weight_decay * p
            p_norm = jnp.linalg.norm(p)
            u_norm = jnp.linalg.norm(u)
            ratio = jnp.where(
                (p_norm > 0) & (u_norm > 0),
                trust_coefficient * p_norm / jnp.where(u_norm > 0, u_norm, 1.0),
                1.0,
            )
            return ratio.astype(u.dtype) * u

        directions = jax.tree.map(direction, updates, params)
        mu = jax.tree.map(lambda b, d: momentum * b + d, state.momentum, directions)
        lr = learning_rate(state.count) if callable(learning_rate) else learning_rate
        new_updates = jax.tree.map(lambda b: (-lr * b).astype(b.dtype), mu)
        count = optax.safe_int32_increment(state.count)
        return new_updates, LarsState(count=count, momentum=mu)

    return optax.GradientTransformation(init, update)
