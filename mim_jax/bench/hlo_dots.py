"""Which element type the products of a compiled program really run in.

A bfloat16 model can still run some of its products in float32: a backend without a native
kernel for a product's form converts both operands to float32 first (XLA:CPU does this, see
:mod:`mim_jax.models.kernels`). The optimised HLO shows what was compiled, so this reads every
``dot`` there and adds up its FLOPs by operand type: ``dot_flop_shares(compiled.as_text())``
gave ``{"bf16": 0.968, "f32": 0.032}`` for the bfloat16 ViT-Tiny MAE step on XLA:CPU (the
float32 part: some of attention's batched products). ``bench train-step`` reports it as
``dot_flop_shares``.
"""

from __future__ import annotations

import math
import re

# `%name = f32[6304,512]{1,0} dot(%lhs, %rhs), lhs_batch_dims=..., lhs_contracting_dims={1}, ...`
_DEFINITION = re.compile(r"%([\w.\-]+) = (\w+)\[([\d,]*)\]")
_DOT = re.compile(r"%[\w.\-]+ = \w+\[([\d,]*)\]\S* dot\(%([\w.\-]+), %[\w.\-]+\)(.*)")
_LHS_CONTRACTING = re.compile(r"lhs_contracting_dims=\{([\d,]*)\}")


def _dims(text: str) -> list[int]:
    return [int(d) for d in text.split(",") if d]


def dot_flops_by_operand_type(hlo_text: str) -> dict[str, int]:
    """FLOPs (2 x multiply-adds) of every ``dot`` in optimised HLO text, by lhs element type.

    Args:
      hlo_text: ``compiled.as_text()`` of a ``jax.jit(...).lower(...).compile()``; dots inside
        fusions count (instruction names are unique within an HLO module).

    Returns:
      ``{"bf16": flops, "f32": flops, ...}`` (HLO type names); empty without dots.
    """
    shapes = {name: (kind, _dims(dims)) for name, kind, dims in _DEFINITION.findall(hlo_text)}
    flops: dict[str, int] = {}
    for line in hlo_text.splitlines():
        dot = _DOT.search(line)
        if dot is None:
            continue
        result, lhs, attributes = dot.groups()
        kind, lhs_dims = shapes[lhs]
        contracting = _LHS_CONTRACTING.search(attributes)
        depth = math.prod(lhs_dims[i] for i in _dims(contracting.group(1))) if contracting else 1
        flops[kind] = flops.get(kind, 0) + 2 * math.prod(_dims(result)) * depth
    return flops


def dot_flop_shares(hlo_text: str) -> dict[str, float]:
    """:func:`dot_flops_by_operand_type` as fractions of all dot FLOPs (sum 1; empty: {})."""
    flops = dot_flops_by_operand_type(hlo_text)
    total = sum(flops.values())
    return {kind: value / total for kind, value in sorted(flops.items())} if total else {}
