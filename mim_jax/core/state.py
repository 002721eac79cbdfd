"""The train state and the one path that lays it out on a mesh, places it and compiles a step.

Every job that holds a model and an optimizer state (pretraining, fine-tuning, linear probing,
importing weights into a run, restoring a run for evaluation, the compile-ahead memory plan)
goes through :func:`state_layout`:

1. ``layout = state_layout(model, tx, mesh)``: the model's graph definition, the abstract state
   (``jax.ShapeDtypeStruct`` leaves carrying their ``NamedSharding``) and the shardings, from
   the logical-axis rules table (:mod:`mim_jax.core.sharding`). ``model`` may be abstract
   (``nnx.eval_shape``): nothing is allocated.
2. ``state = layout.place(model)``: parameters and constants put on the mesh, a fresh optimizer
   state created there (``tx.init`` compiled with the moments' shardings).
3. ``step = layout.jit(step_fn, batch_shardings)``: ``jax.jit`` with ``in_shardings`` /
   ``out_shardings`` from the layout and the state donated.

``layout.abstract`` is also the template a checkpoint restores onto (``CheckpointStore.restore``),
so a run saved on one mesh restores onto another.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx, struct
from jax.sharding import Mesh, NamedSharding

from mim_jax.core.sharding import optimizer_shardings, replicated, state_shardings
from mim_jax.models.sharding_rules import LOGICAL_AXIS_RULES, AxisRule


@struct.dataclass
class TrainState:
    """Everything a step changes or reads, as one pytree (what checkpoints save).

    Attributes:
      step: int32 scalar, optimizer steps taken.
      params: nnx.State of the model's ``nnx.Param`` variables (float32 master weights).
      constants: nnx.State of the other variables (fixed position tables, frozen parts).
      opt_state: the optax state (e.g. AdamW moments, schedule count).
    """

    step: jax.Array
    params: Any
    constants: Any
    opt_state: Any


def split_model(
    model: nnx.Module, trainable: Any = nnx.Param
) -> tuple[nnx.GraphDef, nnx.State, nnx.State]:
    """``(graphdef, params, constants)``: the variables ``trainable`` (an nnx filter; default
    every ``nnx.Param``) selects, and everything else (fixed tables, frozen parts, statistics)."""
    return nnx.split(model, trainable, ...)


@dataclasses.dataclass(frozen=True)
class StateLayout:
    """Where a model's :class:`TrainState` lives on a mesh (see the module docstring).

    Attributes:
      graphdef: the model's graph definition (``nnx.merge(graphdef, params, constants)``).
      tx: the optimizer whose state the layout holds.
      mesh: the device mesh.
      shardings: a :class:`TrainState` of ``NamedSharding`` (a prefix tree of the state).
      abstract: a :class:`TrainState` of ``jax.ShapeDtypeStruct`` leaves with those shardings.
      trainable: the nnx filter of the variables the optimizer updates.
    """

    graphdef: nnx.GraphDef
    tx: optax.GradientTransformation
    mesh: Mesh
    shardings: TrainState
    abstract: TrainState
    trainable: Any = nnx.Param

    def place(self, model: nnx.Module) -> TrainState:
        """``model``'s variables on the mesh with a fresh optimizer state at step 0.

        Raises:
          ValueError: ``model``'s architecture differs from the layout's.
        """
        graphdef, params, constants = split_model(model, self.trainable)
        if graphdef != self.graphdef:
            raise ValueError(
                "the model's architecture differs from the one this state layout was made for; "
                "make a layout for it (state_layout)."
            )
        params = jax.device_put(params, self.shardings.params)
        opt_init = jax.jit(self.tx.init, out_shardings=self.shardings.opt_state)
        return TrainState(
            step=jax.device_put(jnp.zeros((), jnp.int32), self.shardings.step),
            params=params,
            constants=jax.device_put(constants, self.shardings.constants),
            opt_state=opt_init(params),
        )

    def jit(
        self,
        step_fn: Callable[[TrainState, Any, jax.Array], tuple[TrainState, Any]],
        batch_shardings: Any,
    ) -> Callable[[TrainState, Any, jax.Array], tuple[TrainState, Any]]:
        """``jax.jit(step_fn)`` for ``step_fn(state, batch, key) -> (state, metrics)``.

        The state keeps the layout's shardings in and out and is donated; ``batch_shardings``
        is a pytree (prefix) of shardings for the batch; the key and metrics are replicated.
        """
        return jax.jit(
            step_fn,
            in_shardings=(self.shardings, batch_shardings, replicated(self.mesh)),
            out_shardings=(self.shardings, replicated(self.mesh)),
            donate_argnums=0,
        )

    def model(self, state: TrainState) -> nnx.Module:
        """The model with ``state``'s variables."""
        return nnx.merge(self.graphdef, state.params, state.constants)


def _with_sharding(sharding: NamedSharding, subtree: Any) -> Any:
    """``subtree`` (an array, or a Variable holding one) with ShapeDtypeStruct leaves."""
    return jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), subtree
    )


def state_layout(
    model: nnx.Module,
    tx: optax.GradientTransformation,
    mesh: Mesh,
    rules: Sequence[AxisRule] = LOGICAL_AXIS_RULES,
    trainable: Any = nnx.Param,
) -> StateLayout:
    """The :class:`StateLayout` of ``model`` (concrete or abstract) and ``tx`` on ``mesh``.

    Parameters and constants follow the logical-axis ``rules``; each optimizer moment takes its
    parameter's sharding; the step and scalar optimizer leaves are replicated. ``trainable``
    (an nnx filter) picks the variables ``tx`` updates, e.g. only a linear probe's head.
    """
    graphdef, params, constants = split_model(model, trainable)
    params_sh = state_shardings(params, mesh, rules)
    shardings = TrainState(
        step=replicated(mesh),
        params=params_sh,
        constants=state_shardings(constants, mesh, rules),
        opt_state=optimizer_shardings(tx, params, params_sh, mesh),
    )
    shapes = TrainState(
        step=jax.ShapeDtypeStruct((), jnp.int32),
        params=params,
        constants=constants,
        opt_state=jax.eval_shape(tx.init, params),
    )
    abstract = jax.tree.map(_with_sharding, shardings, shapes)
    return StateLayout(graphdef, tx, mesh, shardings, abstract, trainable)
