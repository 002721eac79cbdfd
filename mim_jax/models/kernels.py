"""Pure functions with hand-written backward passes for the transformer's layers.

Why: differentiating LayerNorm, exact GELU and softmax attention op by op makes XLA keep several
full-size intermediates for the backward pass (on XLA:CPU even the LayerNorm scale broadcast to
``[B, L, D]``) and run many small elementwise passes over them. Each function here keeps only
its input (plus per-row statistics or the attention probabilities) and computes its gradient in
one expression. On XLA:CPU this cut the ViT-Tiny/16 MAE train step (b32, 224 px) by about a
fifth; see ``python -m mim_jax.bench train-step``. The values and gradients equal the plain
autodiff versions to float32 rounding (tests/models/test_models_kernels.py).

LayerNorm, GELU and the softmax compute in float32 whatever the input dtype (bfloat16 compute
included), as ``torch.nn.LayerNorm`` / ``F.gelu`` / SDPA do under autocast.

Mixed precision (``linear`` and ``attention``): every product takes its operands in the compute
dtype and accumulates into float32 (``preferred_element_type``), and only then is the result cast
back to the compute dtype. On XLA:CPU a bfloat16 x bfloat16 -> bfloat16 dot is lowered as
"convert both operands to float32, float32 dot, convert back", i.e. slower than float32; the
bfloat16 x bfloat16 -> float32 form runs as a native bfloat16 matmul (about 1.7x the float32 rate
of a 2048^3 product on a Zen 4 core with AVX512-BF16). Plain autodiff of such a dot would give
float32 cotangents and float32 backward products, so ``linear`` has its own backward: both of its
products take the bfloat16 cotangent, and the weight gradient is accumulated in float32 and
returned in the parameter's dtype (float32 master weights).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jax import lax

_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


# ------------------------------------------------------------------------------------- linear
def contract(a: jax.Array, b: jax.Array, a_axes, b_axes) -> jax.Array:
    """``a`` . ``b`` over the given axes (sequences of ints), float32 accumulation and result.

    One ``dot_general`` with its dimension numbers, never ``a @ b.T``: XLA:CPU decides whether
    a bfloat16 product runs natively before it folds a transpose into the product, so the
    transposed spelling runs with float32 operands. ``bench floor`` times the step's products
    through this function too.
    """
    dims = ((tuple(a_axes), tuple(b_axes)), ((), ()))
    return lax.dot_general(a, b, dims, preferred_element_type=jnp.float32)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def linear(x: jax.Array, kernel: jax.Array, bias: jax.Array, dtype: jnp.dtype) -> jax.Array:
    """``x @ kernel + bias`` computed in ``dtype`` with float32 accumulation.

    Args:
      x: [R, *I] rows (the contracted feature axes last), any float dtype.
      kernel: [*I, *O] weights, usually float32 master weights.
      bias: [*O].
      dtype: compute dtype (float32 or bfloat16), a hashable ``jnp.dtype``.

    Returns:
      [R, *O] in ``dtype``: ``x`` and ``kernel`` are cast to ``dtype``, multiplied with float32
      accumulation, the bias is added in float32, and the sum is cast to ``dtype`` once. The
      backward pass keeps the cast operands and computes ``dx`` and ``dkernel`` from the
      ``dtype`` cotangent with float32 accumulation; ``dkernel`` and ``dbias`` come back in the
      parameters' dtypes, ``dx`` in ``x``'s.
    """
    return _linear_fwd(x, kernel, bias, dtype)[0]


def _linear_fwd(x, kernel, bias, dtype):
    n_in = kernel.ndim - bias.ndim
    x_c, kernel_c = x.astype(dtype), kernel.astype(dtype)
    out = contract(x_c, kernel_c, range(1, n_in + 1), range(n_in))
    out = (out + bias.astype(jnp.float32)).astype(dtype)
    # kernel and bias are the parameters themselves (alive anyway), kept for their dtypes; an
    # empty array carries x's dtype (residuals must be arrays).
    return out, (x_c, kernel_c, jnp.zeros((0,), x.dtype), kernel, bias)


def _linear_bwd(dtype, residuals, grad):
    x_c, kernel_c, x_like, kernel, bias = residuals
    n_in, n_out = kernel.ndim - bias.ndim, bias.ndim
    grad = grad.astype(dtype)
    out_axes = range(1, n_out + 1)
    d_x = contract(grad, kernel_c, out_axes, range(n_in, n_in + n_out))
    d_kernel = weight_gradient(x_c, grad).reshape(kernel.shape)
    d_bias = jnp.sum(grad.astype(jnp.float32), axis=0)
    return d_x.astype(x_like.dtype), d_kernel.astype(kernel.dtype), d_bias.astype(bias.dtype)


linear.defvjp(_linear_fwd, _linear_bwd)


def weight_gradient(x: jax.Array, grad: jax.Array) -> jax.Array:
    """``x^T grad`` summed over the rows: [R, *I] x [R, *O] -> float32 [prod(I), prod(O)].

    Both operands are flattened to [R, prod(I)] and [R, prod(O)]: XLA:CPU has no bfloat16 ->
    float32 kernel for the contract-the-rows form with several feature axes and fails at run
    time. In a narrower dtype than float32 with an even R the rows are also split as [2, R/2]
    and both halves contracted in the one product: XLA:CPU lowers the plain [R, I] x [R, O]
    form as a float32 product over converted operands, while the split form gets ``x``
    transposed to [I, R] once and a native bfloat16 matmul (YNNPACK). At the ViT-Tiny MAE
    decoder's shapes ([6304, 512] x [6304, 2048]) that is 2-3x faster on a Zen 4 core with
    AVX512-BF16 (``python -m mim_jax.bench floor --dtype bfloat16``). The sum is the same.
    GPUs and TPUs run the plain form natively, and there it keeps a data-sharded R free of
    the halves' boundary (which an odd number of shards would straddle), so the split is
    CPU-only, like the CPU attention path in ``layers``.
    """
    rows = x.shape[0]
    x, grad = x.reshape(rows, -1), grad.reshape(rows, -1)
    if x.dtype == jnp.float32 or rows % 2 or jax.default_backend() != "cpu":
        return contract(x, grad, (0,), (0,))
    halves = (2, rows // 2)
    return contract(x.reshape(*halves, -1), grad.reshape(*halves, -1), (0, 1), (0, 1))


# ---------------------------------------------------------------------------------- LayerNorm
def _ln_stats(x: jax.Array, eps: float) -> tuple[jax.Array, jax.Array]:
    """Row mean and 1/sqrt(var + eps) of float32 ``x`` [..., D], each [..., 1] (two-pass var)."""
    mean = jnp.mean(x, axis=-1, keepdims=True)
    centred = x - mean
    rstd = lax.rsqrt(jnp.mean(centred * centred, axis=-1, keepdims=True) + eps)
    return mean, rstd


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def layer_norm(x: jax.Array, scale: jax.Array, bias: jax.Array, eps: float = 1e-6) -> jax.Array:
    """``(x - mean) / sqrt(var + eps) * scale + bias`` over the last axis.

    Args:
      x: [..., D] floating input (any float dtype; statistics in float32).
      scale, bias: [D] float parameters.
      eps: added to the biased (population) variance, as ``torch.nn.LayerNorm``.

    Returns:
      float32 [..., D]. The backward pass keeps ``x`` and two float32 [..., 1] row statistics.
    """
    return _layer_norm_fwd(x, scale, bias, eps)[0]


def _layer_norm_fwd(x, scale, bias, eps):
    x32 = x.astype(jnp.float32)
    mean, rstd = _ln_stats(x32, eps)
    y = (x32 - mean) * rstd * scale.astype(jnp.float32) + bias.astype(jnp.float32)
    return y, (x, mean, rstd, scale, bias)


def _layer_norm_bwd(eps, residuals, grad):
    del eps
    x, mean, rstd, scale, bias = residuals
    xhat = (x.astype(jnp.float32) - mean) * rstd
    grad = grad.astype(jnp.float32)
    g_scaled = grad * scale.astype(jnp.float32)
    # d/dx of the normalisation: rstd * (g - mean(g) - xhat * mean(g * xhat)).
    dx = rstd * (
        g_scaled
        - jnp.mean(g_scaled, axis=-1, keepdims=True)
        - xhat * jnp.mean(g_scaled * xhat, axis=-1, keepdims=True)
    )
    rows = tuple(range(x.ndim - 1))
    dscale = jnp.sum(grad * xhat, axis=rows)
    dbias = jnp.sum(grad, axis=rows)
    return dx.astype(x.dtype), dscale.astype(scale.dtype), dbias.astype(bias.dtype)


layer_norm.defvjp(_layer_norm_fwd, _layer_norm_bwd)


# --------------------------------------------------------------------------------------- GELU
def _normal_cdf(x32: jax.Array) -> jax.Array:
    return 0.5 + 0.5 * lax.erf(x32 * _INV_SQRT2)


@jax.custom_vjp
def gelu(x: jax.Array) -> jax.Array:
    """Exact GELU ``x * Phi(x)`` (erf form, ``torch.nn.GELU()``'s default).

    Args:
      x: any float array; computed in float32.

    Returns:
      Same shape and dtype as ``x``. The backward pass keeps only ``x`` and computes
      ``Phi(x) + x * phi(x)`` in one pass.
    """
    x32 = x.astype(jnp.float32)
    return (x32 * _normal_cdf(x32)).astype(x.dtype)


def _gelu_fwd(x):
    return gelu(x), x


def _gelu_bwd(x, grad):
    x32 = x.astype(jnp.float32)
    density = jnp.exp(-0.5 * x32 * x32) * _INV_SQRT_2PI
    slope = _normal_cdf(x32) + x32 * density
    return ((grad.astype(jnp.float32) * slope).astype(x.dtype),)


gelu.defvjp(_gelu_fwd, _gelu_bwd)


# ---------------------------------------------------------------------------------- attention
@jax.custom_vjp
def attention(q: jax.Array, k: jax.Array, v: jax.Array) -> jax.Array:
    """Softmax attention ``softmax(q k^T / sqrt(hd)) v`` in the heads-first layout.

    Args:
      q: [B, H, Lq, hd]; k, v: [B, H, Lk, hd]; one float dtype.

    Returns:
      [B, H, Lq, hd] in the input dtype. Every product accumulates in float32; logits and
      softmax are float32; the probabilities are cast to the input dtype for the second product
      and kept for the backward pass, which uses
      ``dS = P * (dP - rowsum(dO * O))`` (the flash-attention identity) instead of
      differentiating the softmax op by op, and feeds every batched product in the
      ``[.., M, K] x [.., K, N]`` / ``[.., M, K] x [.., N, K]`` forms XLA:CPU runs fastest.
    """
    return _attention_fwd(q, k, v)[0]


def _product(spec: str, a: jax.Array, b: jax.Array) -> jax.Array:
    """``einsum(spec, a, b)`` with float32 accumulation, cast back to ``a``'s dtype."""
    return jnp.einsum(spec, a, b, preferred_element_type=jnp.float32).astype(a.dtype)


def _attention_fwd(q, k, v):
    scale = q.shape[-1] ** -0.5
    logits = jnp.einsum("bhqd,bhkd->bhqk", q, k, preferred_element_type=jnp.float32)
    probs = jax.nn.softmax(logits * scale, axis=-1).astype(q.dtype)
    out = _product("bhqk,bhkd->bhqd", probs, v)
    return out, (q, k, v, probs, out)


def _attention_bwd(residuals, d_out):
    q, k, v, probs, out = residuals
    scale = q.shape[-1] ** -0.5
    d_out = d_out.astype(q.dtype)
    d_v = _product("bhkq,bhqd->bhkd", probs.transpose(0, 1, 3, 2), d_out)
    d_probs = jnp.einsum("bhqd,bhkd->bhqk", d_out, v, preferred_element_type=jnp.float32)
    row = jnp.sum(d_out.astype(jnp.float32) * out.astype(jnp.float32), axis=-1, keepdims=True)
    d_logits = (probs.astype(jnp.float32) * (d_probs - row) * scale).astype(q.dtype)
    d_q = _product("bhqk,bhkd->bhqd", d_logits, k)
    d_k = _product("bhkq,bhqd->bhkd", d_logits.transpose(0, 1, 3, 2), q)
    return d_q, d_k, d_v


attention.defvjp(_attention_fwd, _attention_bwd)


@jax.custom_vjp
def self_attention(qkv: jax.Array) -> jax.Array:
    """:func:`attention` of a packed, token-major projection: [B, L, 3, H, hd] -> [B, L, H, hd].

    Args:
      qkv: [B, L, 3, H, hd], queries, keys and values along axis 2 (a fused qkv projection's
        output), any float dtype.

    Returns:
      [B, L, H, hd] in ``qkv``'s dtype, equal to :func:`attention` of the three slices with the
      heads moved in front. The forward pass moves the heads of all three in one transpose; the
      backward pass stacks ``dq, dk, dv`` and moves them back in one transpose, returning the
      cotangent in ``qkv``'s layout. Slicing first and transposing each slice, as plain
      autodiff then builds the cotangent (three transposed pads added up), cost ~10% of the
      bfloat16 ViT-Tiny MAE step on XLA:CPU, and XLA:CPU ran the attention products of that
      form in float32 (``python -m mim_jax.bench train-step``'s ``dot_flop_shares``); float32
      steps take the same time either way.
    """
    return _self_attention_fwd(qkv)[0]


def _self_attention_fwd(qkv):
    heads = qkv.transpose(2, 0, 3, 1, 4)  # [3, B, H, L, hd]
    out, residuals = _attention_fwd(heads[0], heads[1], heads[2])
    return out.transpose(0, 2, 1, 3), residuals


def _self_attention_bwd(residuals, d_out):
    d_q, d_k, d_v = _attention_bwd(residuals, d_out.transpose(0, 2, 1, 3))
    return (jnp.stack([d_q, d_k, d_v]).transpose(1, 3, 0, 2, 4),)


self_attention.defvjp(_self_attention_fwd, _self_attention_bwd)
