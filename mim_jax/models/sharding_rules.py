"""The one default table mapping logical axis names to mesh axes.

Every parameter (and fixed buffer) of :mod:`mim_jax.models` carries a tuple of logical axis names
(flax ``out_sharding`` metadata, read with ``nnx.get_partition_spec(state)``). Names used:

====================  ==========================================================  ============
logical name          meaning                                                     default
====================  ==========================================================  ============
``batch``             activations' batch axis (for activation constraints)        data, fsdp
``length``            activations' token axis                                     replicated
``embed``             residual width of the encoder or decoder                    fsdp
``embed_out``         output side of the encoder -> decoder width projection      replicated
                      (kept apart from ``embed`` so a spec never names fsdp twice)
``mlp``               MLP hidden width                                            tensor
``heads``             attention heads                                             tensor
``kv``                per-head width (head_dim)                                   replicated
``qkv``               the fused q/k/v (size 3) or k/v (size 2) selector axis      replicated
``patch``             patch pixels (patch-embed input, prediction output)         replicated
``feature_maps``      CrossMAE: encoder feature maps being mixed                  replicated
``layers``            CrossMAE: decoder layers (one mix per layer)                replicated
``pos``               rows of a fixed position-embedding table                    replicated
====================  ==========================================================  ============

Build a model under a mesh with ``with jax.set_mesh(mesh), nnx.logical_axis_rules(rules):`` (an
Auto-axis mesh; values are then created sharded), or without a mesh and place the state later
with ``nnx.get_partition_spec`` + the rules. ``rules_for_mesh(mesh.axis_names)`` adapts this table
to a mesh without, e.g., a ``tensor`` axis.

A name that is missing from the rules passes through flax unchanged and is then read as a mesh
axis, so every name above must appear in the table (``tests/models/test_models_sharding.py``
checks it).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

AxisRule = tuple[str, str | tuple[str, ...] | None]

LOGICAL_AXIS_RULES: tuple[AxisRule, ...] = (
    ("batch", ("data", "fsdp")),
    ("length", None),
    ("embed", "fsdp"),
    ("embed_out", None),
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("kv", None),
    ("qkv", None),
    ("patch", None),
    ("feature_maps", None),
    ("layers", None),
    ("pos", None),
)


def rules_for_mesh(
    mesh_axis_names: Iterable[str], rules: Sequence[AxisRule] = LOGICAL_AXIS_RULES
) -> tuple[AxisRule, ...]:
    """The rules with mesh axes that the mesh lacks removed (e.g. no ``tensor`` axis).

    ``("batch", ("data", "fsdp"))`` on a mesh with only ``data`` becomes ``("batch", "data")``;
    a rule left with no mesh axis maps to ``None`` (replicated).
    """
    present = set(mesh_axis_names)
    out = []
    for name, target in rules:
        targets = (target,) if isinstance(target, str) else tuple(target or ())
        kept = tuple(t for t in targets if t in present)
        out.append((name, kept[0] if len(kept) == 1 else (kept or None)))
    return tuple(out)
