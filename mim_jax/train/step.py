"""The single jit-compiled, sharded MAE pretraining step.

``train_step(state, batch, key) -> (state, metrics)`` is a pure function over ``nnx.split``
state: masks are drawn inside it from ``fold_in(key, step)`` (so a resumed run redraws the same
masks), the model is merged from its graph definition, and AdamW updates the parameters. It is
compiled once through the run core's one layout/place/jit path (:mod:`mim_jax.core.state`):
``in_shardings``/``out_shardings`` from the mesh and the logical-axis rules, the state donated.
Gradient accumulation runs ``accum_steps`` micro-batches in a ``lax.scan`` and applies one
averaged update, so it matches the large batch.

Sharding: the batch is split over ``data`` x ``fsdp``; masks for the global batch come from one
key (threefry is partitionable, so each device draws only its own samples' noise and every sample
gets its own pattern, on every device); parameters and optimizer moments follow the rules table.

Several masks, one compilation: given a sequence of :class:`MaskSpec` (same ratio, so the same
static K), the step takes ``batch["mask_index"]`` (int32 scalar) and draws that strategy's masks
through ``lax.switch``; ``CompiledStep.for_mask(spec)`` binds the index, so a sweep over mask
strategies compiles the step once and runs every strategy with it (``mim_jax.sweep``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import chex
import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding

from mim_jax.core.sharding import batch_sharding, replicated
from mim_jax.core.state import StateLayout, TrainState, state_layout
from mim_jax.masking import MaskSpec
from mim_jax.models.mae import MAE
from mim_jax.models.sharding_rules import LOGICAL_AXIS_RULES, AxisRule

Batch = dict[str, jax.Array]
Metrics = dict[str, jax.Array]


MaskSpecs = MaskSpec | Sequence[MaskSpec]


def _as_specs(mask_spec: MaskSpecs) -> tuple[tuple[MaskSpec, ...], bool]:
    """(the specs, whether the step selects among them with ``batch["mask_index"]``)."""
    if isinstance(mask_spec, MaskSpec):
        return (mask_spec,), False
    specs = tuple(mask_spec)
    if not specs or not all(isinstance(s, MaskSpec) for s in specs):
        raise ValueError(f"mask_spec must be a MaskSpec or a non-empty sequence of them: {specs}")
    if len(set(specs)) != len(specs):
        raise ValueError(f"mask specs must be distinct, got {[s.name for s in specs]}.")
    ratios = {s.ratio for s in specs}
    if len(ratios) != 1:
        raise ValueError(
            f"mask specs compiled into one step must share mask_ratio (it fixes the number of "
            f"visible patches, a static shape); got ratios {sorted(ratios)}: compile one step per "
            "ratio."
        )
    return specs, True


@dataclasses.dataclass
class CompiledStep:
    """A compiled train step with the state it expects and the shardings it was built for.

    Call ``compiled.step(state, batch, key)``; the state argument is donated. A step compiled
    for several masks (``mask_specs``) wants ``batch["mask_index"]``; ``for_mask(spec)`` returns
    a view whose ``step`` adds it, sharing the same compiled executable.
    """

    step: Callable[[TrainState, Batch, jax.Array], tuple[TrainState, Metrics]]
    state: TrainState
    layout: StateLayout
    batch_sharding: NamedSharding
    mask_specs: tuple[MaskSpec, ...] = ()  # empty: a single-mask step
    jitted: Any = None  # the jax.jit object; its cache holds the executable
    mask: MaskSpec | None = None  # the spec ``for_mask`` bound, if any
    signature: str | None = None  # what it was compiled for (mim_jax.train.pretrain.signature)

    @property
    def graphdef(self) -> nnx.GraphDef:
        return self.layout.graphdef

    @property
    def mesh(self) -> Mesh:
        return self.layout.mesh

    @property
    def state_sharding(self) -> TrainState:
        return self.layout.shardings

    def init_state(self, model: MAE) -> TrainState:
        """A fresh state for another model of the same architecture (a sweep's next run)."""
        return self.layout.place(model)

    def for_mask(self, spec: MaskSpec) -> CompiledStep:
        """This step with the mask fixed to ``spec`` (one of ``mask_specs``); same executable.

        Raises:
          ValueError: ``spec`` is not one the step was compiled for.
        """
        if not self.mask_specs:
            raise ValueError("for_mask needs a step compiled for a sequence of MaskSpec.")
        if spec not in self.mask_specs:
            raise ValueError(
                f"mask {spec} was not compiled into this step; it has "
                f"{', '.join(f'{s.name}@{s.ratio}' for s in self.mask_specs)}."
            )
        index = jax.device_put(
            jnp.asarray(self.mask_specs.index(spec), jnp.int32), replicated(self.mesh)
        )
        jitted = self.jitted

        def bound(state: TrainState, batch: Batch, key: jax.Array):
            return jitted(state, {**batch, "mask_index": index}, key)

        return dataclasses.replace(self, step=bound, mask=spec)

    def model(self, state: TrainState | None = None) -> MAE:
        """The model with ``state``'s (default: the initial state's) parameters."""
        return self.layout.model(self.state if state is None else state)


def build_train_step(
    graphdef: nnx.GraphDef,
    tx: optax.GradientTransformation,
    schedule: optax.Schedule,
    mask_spec: MaskSpecs,
    grid: tuple[int, ...],
    accum_steps: int = 1,
    mesh: Mesh | None = None,
) -> Callable[[TrainState, Batch, jax.Array], tuple[TrainState, Metrics]]:
    """The pure (uncompiled) step for a model ``graphdef`` and optimizer ``tx``.

    Args:
      graphdef: from ``nnx.split(model, nnx.Param, ...)``.
      tx: optax transformation; ``schedule`` gives the learning rate reported in metrics.
      mask_spec: the masking strategy drawn inside the step; or a sequence of strategies with
        one ratio, selected per call by ``batch["mask_index"]`` (int32 scalar, ``lax.switch``).
      grid: the model's patch grid (static).
      accum_steps: micro-batches per update (must divide the batch).
      mesh: when given, masks and micro-batches are constrained to the batch sharding.

    Returns:
      ``train_step(state, batch, key) -> (state, metrics)``; ``batch["image"]`` is float
      [B, *input_shape] channels-last; metrics are float32 scalars (loss, grad_norm, lr).
    """
    specs, indexed = _as_specs(mask_spec)
    gens = [s.generator() for s in specs]
    ratio = specs[0].ratio

    def draw(key, batch_size, mask_index):
        branches = [
            lambda k, g=g: g(k, batch_size=batch_size, grid=grid, mask_ratio=ratio) for g in gens
        ]
        if not indexed:
            return branches[0](key)
        return jax.lax.switch(mask_index, branches, key)

    def constrain(tree):
        if mesh is None:
            return tree
        return jax.tree.map(
            lambda x: jax.lax.with_sharding_constraint(x, batch_sharding(mesh, x.ndim)), tree
        )

    def micro_loss(params, constants, images, key, mask_index):
        key_mask, key_query = jax.random.split(key)
        masks = constrain(draw(key_mask, images.shape[0], mask_index))
        model = nnx.merge(graphdef, params, constants)
        # Only the loss is used: the MAE decoder's last block can skip the visible tokens.
        loss, _ = model(images, masks, key=key_query, masked_only=True)
        return loss

    grad_fn = jax.value_and_grad(micro_loss)

    def train_step(state: TrainState, batch: Batch, key: jax.Array) -> tuple[TrainState, Metrics]:
        images = batch["image"]
        chex.assert_rank(images, len(grid) + 2)  # [B, *grid-shaped input, C]
        mask_index = batch["mask_index"] if indexed else None
        if indexed:
            chex.assert_rank(mask_index, 0)  # int32 scalar: which of the mask specs
        step_key = jax.random.fold_in(key, state.step)
        if accum_steps == 1:
            loss, grads = grad_fn(state.params, state.constants, images, step_key, mask_index)
        else:
            micro = images.reshape(accum_steps, -1, *images.shape[1:])

            def accumulate(carry, xs):
                index, chunk = xs
                chunk = constrain(chunk)
                loss_i, grads_i = grad_fn(
                    state.params,
                    state.constants,
                    chunk,
                    jax.random.fold_in(step_key, index),
                    mask_index,
                )
                return jax.tree.map(jnp.add, carry, (loss_i, grads_i)), None

            zeros = (jnp.zeros((), jnp.float32), jax.tree.map(jnp.zeros_like, state.params))
            (loss, grads), _ = jax.lax.scan(accumulate, zeros, (jnp.arange(accum_steps), micro))
            loss, grads = jax.tree.map(lambda x: x / accum_steps, (loss, grads))
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {
            "loss": loss.astype(jnp.float32),
            "grad_norm": optax.tree.norm(grads).astype(jnp.float32),
            "lr": jnp.asarray(schedule(state.step), jnp.float32),
        }
        new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
        return new_state, metrics

    return train_step


def compile_train_step(
    model: MAE,
    tx: optax.GradientTransformation,
    schedule: optax.Schedule,
    mesh: Mesh,
    mask_spec: MaskSpecs,
    batch_size: int,
    accum_steps: int = 1,
    rules: Sequence[AxisRule] = LOGICAL_AXIS_RULES,
) -> CompiledStep:
    """Places ``model`` and a fresh optimizer state on ``mesh`` and jit-compiles the step.

    ``mask_spec`` may be a sequence of specs sharing one ratio: the step then selects one per
    call (``CompiledStep.for_mask``), and ``CompiledStep.init_state(model)`` places another model
    of the same architecture (e.g. the next run of a sweep) for the same executable.

    Raises:
      ValueError: a batch that does not divide over the batch-sharded devices or into
        ``accum_steps`` equal micro-batches, or masks the model's grid cannot take.
    """
    grid = model.config.tokens.grid
    data_ways = mesh.shape["data"] * mesh.shape["fsdp"]
    if accum_steps < 1 or batch_size % accum_steps:
        raise ValueError(f"batch_size {batch_size} must divide into accum_steps={accum_steps}.")
    if (batch_size // accum_steps) % data_ways:
        raise ValueError(
            f"the (micro-)batch of {batch_size // accum_steps} images must divide over the "
            f"{data_ways} batch-sharded devices (data x fsdp); use a multiple of {data_ways}."
        )
    specs, indexed = _as_specs(mask_spec)
    # Fail on a mask the grid cannot take now; eval_shape runs the checks without compiling.
    for spec in specs:
        gen = spec.generator()
        jax.eval_shape(
            lambda key, gen=gen, spec=spec: gen(
                key, batch_size=1, grid=grid, mask_ratio=spec.ratio
            ),
            jax.random.key(0),
        )

    layout = state_layout(model, tx, mesh, rules)
    image_sh = batch_sharding(mesh, len(grid) + 2)
    batch_sh = {"image": image_sh}
    if indexed:
        batch_sh["mask_index"] = replicated(mesh)
    step_fn = build_train_step(layout.graphdef, tx, schedule, mask_spec, grid, accum_steps, mesh)
    compiled = layout.jit(step_fn, batch_sh)
    return CompiledStep(
        compiled,
        layout.place(model),
        layout,
        image_sh,
        mask_specs=specs if indexed else (),
        jitted=compiled,
    )
