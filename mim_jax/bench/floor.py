"""``python -m mim_jax.bench floor``: the MAE train step's matmul floor at its own shapes.

Every matmul of one training step (forward, and the two backward products of each dense layer)
is timed on its own, at the step's shapes, and the times are added up: the step cannot run faster
than that on this device with this matmul library, whatever else it fuses or skips. With
``--vs-torch`` the same shapes are timed with torch in the same process, so the two frameworks'
floors, and how close each step gets to its own, can be compared (the step times themselves come
from ``bench train-step --vs-torch``). ``--dtype bfloat16`` times the products with bfloat16
operands: in JAX with float32 accumulation, as the bfloat16 step computes them
(:func:`mim_jax.models.kernels.linear`), in torch with bfloat16 results, as under autocast.

  python -m mim_jax.bench floor --model vit_tiny --batch-size 32 [--vs-torch] [--dtype bfloat16]
      {"what": "matmul_floor", "framework": "jax", "dtype": ..., "model": ..., "flops": ...,
       "floor_ms": ...,
       "tflops_per_s": ..., "parts": {"encoder": ms, "decoder": ms, "attention": ms, ...}}

Shapes (MAE decoder, the train step's ``masked_only`` decoding; B batch, K visible, N patches,
c = 1 with a cls token, Q = N - K): patch embed ``[B*K, P] x [P, De]``; encoder blocks on
``B*(K+c)`` rows; decoder embed; decoder blocks on ``B*(N+c)`` rows, the last one with its
keys/values on all rows and its query side on ``B*Q`` rows; the head on ``B*Q`` rows; attention
as batched ``[L, hd] x [hd, L]`` and ``[L, L] x [L, hd]`` products per (sample, head). A dense
layer ``[R, I] x [I, O]`` costs three products (``x @ w``, ``dy @ w.T``, and ``x.T @ dy`` in
JAX as the step computes it, :func:`mim_jax.models.kernels.weight_gradient`); an
attention product's backward is timed as two more products of the same size. The FLOPs add up
to :func:`mim_jax.models.mae_train_flops` with ``num_decoded = N - K``.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp

from mim_jax import masking
from mim_jax.bench.timing import best_seconds
from mim_jax.models import kernels
from mim_jax.models.config import MAEConfig


@dataclasses.dataclass(frozen=True)
class Dense:
    """``count`` dense layers ``[rows, fan_in] x [fan_in, fan_out]`` in part ``part``."""

    part: str
    rows: int
    fan_in: int
    fan_out: int
    count: int = 1

    @property
    def flops(self) -> int:  # forward + two backward products
        return 3 * 2 * self.rows * self.fan_in * self.fan_out * self.count


@dataclasses.dataclass(frozen=True)
class Attention:
    """``count`` attention layers: ``batch`` x ``heads`` of ``[lq, hd] x [hd, lk]`` and back."""

    batch: int
    heads: int
    lq: int
    lk: int
    head_dim: int
    count: int = 1
    part: str = "attention"

    @property
    def flops(self) -> int:  # (QK^T + PV) forward, twice that backward
        return 3 * 2 * 2 * self.batch * self.heads * self.lq * self.lk * self.head_dim * self.count


def step_matmuls(config: MAEConfig, batch_size: int, mask_ratio: float) -> list[Dense | Attention]:
    """The matmuls of one MAE train step (``masked_only`` decoding); see the module docstring.

    Raises:
      ValueError: a CrossMAE decoder (not covered).
    """
    if config.decoder.kind != "mae":
        raise ValueError("the matmul floor covers the MAE decoder only, not CrossMAE")
    b = batch_size
    n = config.tokens.num_patches
    k = masking.num_visible(n, mask_ratio)
    q = n - k
    c = int(config.cls_token)
    enc, dec = config.encoder, config.decoder
    te, td = k + c, n + c
    de, dd = enc.width, dec.width
    return [
        Dense("patch_embed", b * k, config.tokens.patch_dim, de),
        *_block("encoder", b * te, de, enc.mlp_dim, enc.depth),
        Attention(b, enc.num_heads, te, te, de // enc.num_heads, enc.depth),
        Dense("decoder", b * te, de, dd),  # decoder embed
        *_block("decoder", b * td, dd, dec.mlp_dim, dec.depth - 1),
        Attention(b, dec.num_heads, td, td, dd // dec.num_heads, dec.depth - 1),
        # Last block: keys/values for all tokens, the query side for the Q masked ones.
        Dense("decoder", b * td, dd, 2 * dd),
        Dense("decoder", b * q, dd, dd, 2),  # q and proj
        Dense("decoder", b * q, dd, dec.mlp_dim),
        Dense("decoder", b * q, dec.mlp_dim, dd),
        Attention(b, dec.num_heads, q, td, dd // dec.num_heads),
        Dense("pred", b * q, dd, config.tokens.patch_dim),
    ]


def _block(part: str, rows: int, width: int, mlp_dim: int, count: int) -> list[Dense]:
    return [
        Dense(part, rows, width, 3 * width, count),  # qkv
        Dense(part, rows, width, width, count),  # proj
        Dense(part, rows, width, mlp_dim, count),
        Dense(part, rows, mlp_dim, width, count),
    ]


Product = tuple[Callable[[jax.Array, jax.Array], jax.Array], jax.Array, jax.Array]


def jax_products(op: Dense | Attention, dtype: str = "float32") -> tuple[list[Product], int]:
    """One layer's products as ``(function, lhs, rhs)`` triples in JAX, and their multiplicity.

    A dense layer ``[R, I] x [I, O]`` gives ``x @ w``, ``dy @ w^T`` and the weight gradient
    (:func:`mim_jax.models.kernels.weight_gradient`), each once; an attention layer gives
    ``q k^T`` and ``p v`` (all ``dtype`` operands, float32 results), to be counted three times
    (forward, and the backward's two products per forward product, of the same sizes).
    """
    ones = functools.partial(jnp.ones, dtype=dtype)
    if isinstance(op, Dense):
        x, w, dy = (
            ones((op.rows, op.fan_in)),
            ones((op.fan_in, op.fan_out)),
            ones((op.rows, op.fan_out)),
        )
        forward = functools.partial(kernels.contract, a_axes=(1,), b_axes=(0,))
        input_gradient = functools.partial(kernels.contract, a_axes=(1,), b_axes=(1,))
        return [(forward, x, w), (input_gradient, dy, w), (kernels.weight_gradient, x, dy)], 1
    einsum = functools.partial(jnp.einsum, preferred_element_type=jnp.float32)
    qs = ones((op.batch, op.heads, op.lq, op.head_dim))
    ks = ones((op.batch, op.heads, op.lk, op.head_dim))
    probs = ones((op.batch, op.heads, op.lq, op.lk))
    return [
        (lambda a, b: einsum("bhqd,bhkd->bhqk", a, b), qs, ks),
        (lambda a, b: einsum("bhqk,bhkd->bhqd", a, b), probs, ks),
    ], 3


def _jax_seconds(op: Dense | Attention, repeats: int, dtype: str = "float32") -> float:
    """Seconds of one layer's products (:func:`jax_products`, forward and backward) in JAX."""
    products, scale = jax_products(op, dtype)
    total = 0.0
    for fn, a, b in products:
        call = functools.partial(jax.jit(fn), a, b)
        total += best_seconds(lambda call=call: jax.block_until_ready(call()), repeats)
    return scale * total


def _torch_seconds(torch, op: Dense | Attention, repeats: int, dtype: str = "float32") -> float:
    """The same products as :func:`_jax_seconds` in torch, ``dtype`` in and out, current threads."""
    ones = functools.partial(torch.ones, dtype=getattr(torch, dtype))
    if isinstance(op, Dense):
        x, w, dy = ones(op.rows, op.fan_in), ones(op.fan_in, op.fan_out), ones(op.rows, op.fan_out)
        products = [lambda: x @ w, lambda: dy @ w.T, lambda: x.T @ dy]
        scale = 1
    else:
        qs = ones(op.batch, op.heads, op.lq, op.head_dim)
        ks = ones(op.batch, op.heads, op.lk, op.head_dim)
        probs = ones(op.batch, op.heads, op.lq, op.lk)
        products = [lambda: qs @ ks.transpose(-1, -2), lambda: probs @ ks]
        scale = 3
    return scale * sum(best_seconds(product, repeats) for product in products)


def matmul_floor(
    config: MAEConfig, batch_size: int, mask_ratio: float, seconds_of: Callable, repeats: int
) -> dict:
    """``{"flops", "floor_ms", "tflops_per_s", "parts": {part: ms}}`` with ``seconds_of(op)``."""
    parts: dict[str, float] = {}
    flops = 0
    for op in step_matmuls(config, batch_size, mask_ratio):
        seconds = op.count * seconds_of(op, repeats)
        parts[op.part] = parts.get(op.part, 0.0) + 1e3 * seconds
        flops += op.flops
    floor_ms = sum(parts.values())
    return {
        "flops": flops,
        "floor_ms": floor_ms,
        "tflops_per_s": flops / floor_ms / 1e9,
        "parts": {name: round(ms, 1) for name, ms in parts.items()},
    }


def run_floor(args: argparse.Namespace) -> list[dict]:
    """``bench floor``: one line for JAX, and one for torch with ``--vs-torch``."""
    from mim_jax import models
    from mim_jax.bench.model_args import model_kwargs

    if args.dtype not in ("float32", "bfloat16"):
        raise ValueError(f"the matmul floor is timed in float32 or bfloat16, not {args.dtype!r}")
    config = models.mae_config(args.model, **model_kwargs(args))
    common = {
        "what": "matmul_floor",
        "model": args.model,
        "image_size": args.image_size,
        "patch_size": args.patch_size,
        "batch_size": args.batch_size,
        "mask_ratio": args.mask_ratio,
        "dtype": args.dtype,
    }
    timed = functools.partial(_jax_seconds, dtype=args.dtype)
    results = [
        common
        | {"framework": "jax", "backend": jax.default_backend()}
        | matmul_floor(config, args.batch_size, args.mask_ratio, timed, args.repeats)
    ]
    if args.vs_torch:
        from mim_jax.bench.torch_ref import _import_deps

        torch, _ = _import_deps()
        timed = lambda op, repeats: _torch_seconds(torch, op, repeats, args.dtype)
        floor = matmul_floor(config, args.batch_size, args.mask_ratio, timed, args.repeats)
        results.append(common | {"framework": "torch", "threads": torch.get_num_threads()} | floor)
    return results


def add_parser(sub) -> None:
    """Registers the ``floor`` subcommand on the bench's subparsers."""
    from mim_jax.bench.model_args import add_model_arguments

    floor = sub.add_parser("floor", help="the train step's matmul floor at its own shapes")
    add_model_arguments(floor, default_model="vit_tiny")
    floor.add_argument("--batch-size", type=int, default=32)
    floor.add_argument("--mask-ratio", type=float, default=0.75)
    floor.add_argument("--repeats", type=int, default=5, help="timings per product (best kept)")
    floor.add_argument("--vs-torch", action="store_true", help="also time the shapes in torch")
