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

import dataclasses
import math
import re

# `%name = f32[6304,512]{1,0} dot(%lhs, %rhs), lhs_batch_dims=..., lhs_contracting_dims={1}, ...`
_DEFINITION = re.compile(r"%([\w.\-]+) = (\w+)\[([\d,]*)\]")
_DOT = re.compile(r"%[\w.\-]+ = \w+\[([\d,]*)\]\S* dot\(%([\w.\-]+), %([\w.\-]+)\)(.*)")
_LHS_CONTRACTING = re.compile(r"lhs_contracting_dims=\{([\d,]*)\}")


@dataclasses.dataclass(frozen=True)
class Dot:
    """One ``dot`` of optimised HLO: its operands' element types (HLO names) and its FLOPs."""

    lhs_type: str
    rhs_type: str
    flops: int  # 2 x multiply-adds


def _dims(text: str) -> list[int]:
    return [int(d) for d in text.split(",") if d]


def dots(hlo_text: str) -> list[Dot]:
    """Every ``dot`` in optimised HLO text, in the order the text lists them.

    Args:
      hlo_text: ``compiled.as_text()`` of a ``jax.jit(...).lower(...).compile()``; dots inside
        fusions count (instruction names are unique within an HLO module).
    """
    shapes = {name: (kind, _dims(dims)) for name, kind, dims in _DEFINITION.findall(hlo_text)}
    found = []
    for line in hlo_text.splitlines():
        dot = _DOT.search(line)
        if dot is None:
            continue
        result, lhs, rhs, attributes = dot.groups()
        lhs_type, lhs_dims = shapes[lhs]
        contracting = _LHS_CONTRACTING.search(attributes)
        depth = math.prod(lhs_dims[i] for i in _dims(contracting.group(1))) if contracting else 1
        found.append(Dot(lhs_type, shapes[rhs][0], 2 * math.prod(_dims(result)) * depth))
    return found


def dot_flops_by_operand_type(hlo_text: str) -> dict[str, int]:
    """FLOPs of every :func:`dots` entry, added up by lhs element type.

    Returns:
      ``{"bf16": flops, "f32": flops, ...}`` (HLO type names); empty without dots.
    """
    flops: dict[str, int] = {}
    for dot in dots(hlo_text):
        flops[dot.lhs_type] = flops.get(dot.lhs_type, 0) + dot.flops
    return flops


def dot_flop_shares(hlo_text: str) -> dict[str, float]:
    """:func:`dot_flops_by_operand_type` as fractions of all dot FLOPs (sum 1; empty: {})."""
    flops = dot_flops_by_operand_type(hlo_text)
    total = sum(flops.values())
    return {kind: value / total for kind, value in sorted(flops.items())} if total else {}
