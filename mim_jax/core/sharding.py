"""Device mesh and the mapping from logical axis names to mesh shardings.

The mesh always has the axes ``("data", "fsdp", "tensor")`` (size 1 where unused), created with
``AxisType.Auto`` so XLA's GSPMD partitioner propagates shardings through the step. Parameters
carry logical axis names (``mim_jax.models.sharding_rules``); :func:`logical_to_sharding` turns
them into ``NamedSharding``s with one rules table, replicating any dimension that the mesh axes
do not divide (a 3-wide qkv axis, an odd patch size) rather than failing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import numpy as np
import optax
from flax import nnx
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from mim_jax.models.sharding_rules import LOGICAL_AXIS_RULES, AxisRule

MESH_AXES = ("data", "fsdp", "tensor")


def make_mesh(
    data: int = -1, fsdp: int = 1, tensor: int = 1, devices: Sequence[jax.Device] | None = None
) -> Mesh:
    """A (data, fsdp, tensor) mesh over ``devices`` (default: all); -1 takes what is left.

    Raises:
      ValueError: when the sizes do not multiply to the device count.
    """
    devices = list(jax.devices() if devices is None else devices)
    sizes = [data, fsdp, tensor]
    if sizes.count(-1) > 1:
        raise ValueError(f"mesh: at most one axis may be -1, got data={data}, fsdp={fsdp}.")
    known = math.prod(s for s in sizes if s != -1)
    if -1 in sizes:
        if known < 1 or len(devices) % known:
            raise ValueError(f"mesh: {len(devices)} devices do not divide by {known}.")
        sizes[sizes.index(-1)] = len(devices) // known
    if math.prod(sizes) != len(devices) or min(sizes) < 1:
        raise ValueError(
            f"mesh: data x fsdp x tensor = {sizes[0]} x {sizes[1]} x {sizes[2]} must equal the "
            f"{len(devices)} devices in use."
        )
    grid = np.asarray(devices, dtype=object).reshape(sizes)
    return Mesh(grid, MESH_AXES, axis_types=(AxisType.Auto,) * len(MESH_AXES))


def logical_to_sharding(
    logical: PartitionSpec | tuple | None,
    shape: Sequence[int],
    mesh: Mesh,
    rules: Sequence[AxisRule] = LOGICAL_AXIS_RULES,
) -> NamedSharding:
    """``NamedSharding`` for an array of ``shape`` whose dimensions carry logical names.

    Each name maps through ``rules`` to mesh axes; an axis already used by an earlier dimension,
    or a group of axes whose size does not divide the dimension, leaves that dimension
    replicated.
    """
    table = dict(rules)
    names = tuple(logical) if logical else ()
    names += (None,) * (len(shape) - len(names))  # unannotated dimensions are replicated
    used: set[str] = set()
    spec = []
    for name, size in zip(names, shape, strict=True):
        target = table.get(name) if name is not None else None
        axes = (target,) if isinstance(target, str) else tuple(target or ())
        axes = tuple(a for a in axes if a in mesh.shape and a not in used)
        if axes and size % math.prod(mesh.shape[a] for a in axes) == 0:
            used.update(axes)
            spec.append(axes[0] if len(axes) == 1 else axes)
        else:
            spec.append(None)
    return NamedSharding(mesh, PartitionSpec(*spec))


def state_shardings(state: nnx.State, mesh: Mesh, rules: Sequence[AxisRule] = LOGICAL_AXIS_RULES):
    """Pytree of ``NamedSharding`` matching ``state`` (nnx State with logical-axis metadata)."""
    specs = nnx.get_partition_spec(state)

    def leaf_sharding(spec, value):
        spec = spec.get_value() if isinstance(spec, nnx.Variable) else spec
        value = value.get_value() if isinstance(value, nnx.Variable) else value
        return logical_to_sharding(spec, value.shape, mesh, rules)

    is_leaf = lambda x: isinstance(x, nnx.Variable)
    shardings = jax.tree.map(leaf_sharding, specs, state, is_leaf=is_leaf)
    return jax.tree.map(
        lambda v: v.get_value() if isinstance(v, nnx.Variable) else v, shardings, is_leaf=is_leaf
    )


def batch_sharding(mesh: Mesh, rank: int) -> NamedSharding:
    """Batch-leading arrays split over ``data`` and ``fsdp`` (the 'batch' rule)."""
    return NamedSharding(mesh, PartitionSpec(("data", "fsdp"), *([None] * (rank - 1))))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def optimizer_shardings(tx: optax.GradientTransformation, params, param_shardings, mesh: Mesh):
    """Shardings of ``tx``'s state: each moment takes its parameter's, scalars replicate.

    Args:
      tx: the optimizer.
      params: the parameters (arrays, or ``jax.ShapeDtypeStruct`` for a compile-only plan).
      param_shardings: their shardings, e.g. from :func:`state_shardings` (a tree with the
        parameters' structure, or a prefix of it).
      mesh: the mesh that counts and other non-parameter leaves replicate over.
    """
    per_leaf = jax.tree.map(lambda s, x: jax.tree.map(lambda _: s, x), param_shardings, params)
    return optax.tree_map_params(
        tx,
        lambda _, sharding: sharding,
        jax.eval_shape(tx.init, params),
        per_leaf,
        transform_non_params=lambda _: replicated(mesh),
    )
