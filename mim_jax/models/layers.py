"""Transformer building blocks shared by the ViT encoder and the MAE / CrossMAE decoders.

Conventions (all modules here):

- ``dtype`` is the compute dtype (e.g. bfloat16), ``param_dtype`` the storage dtype (float32).
  LayerNorm statistics and the attention softmax are always computed in float32.
- Every parameter carries logical axis names (``out_sharding`` metadata, see
  :mod:`mim_jax.models.sharding_rules`). Values are sharded at creation only when a mesh is active
  (flax's eager sharding); without a mesh, modules build on one device and the names stay as
  metadata for ``nnx.get_partition_spec``.
- Linear layers are :class:`Dense` (an ``nnx.LinearGeneral`` with the same parameters whose
  product is :func:`mim_jax.models.kernels.linear`) with xavier-uniform init on the flat
  [in, out] view and zero bias, as MAE's ``_init_weights`` (the fused qkv kernel [D, 3, H, hd]
  is initialised as the reference's [D, 3D] ``nn.Linear``; ``kernel.reshape(D, 3*D).T`` is
  timm's ``qkv.weight``).
- LayerNorm eps 1e-6 with two-pass variance, as ``torch.nn.LayerNorm(eps=1e-6)`` in MAE.
- Dense layers, LayerNorm, GELU and (on CPU) attention differentiate through the hand-written
  backward passes of :mod:`mim_jax.models.kernels`. In bfloat16 every product takes bfloat16
  operands and accumulates in float32, forward and backward (see that module for why).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import chex
import jax
import jax.numpy as jnp
from flax import nnx

from mim_jax.models import kernels
from mim_jax.models.tokens import GatherMethod, gather_tokens

Axes = tuple[str | None, ...]
Dtype = Any

LN_EPS = 1e-6


def eager_sharding() -> bool:
    """Shard values at creation only when a mesh is set (``jax.set_mesh``) and flax allows it."""
    return (not jax.sharding.get_abstract_mesh().empty) and nnx.using_eager_sharding()


def partitioned(init: Callable[..., jax.Array], axes: Axes) -> Callable[..., Any]:
    """``init`` annotated with logical axis names ``axes`` (one per dimension of the value)."""
    return nnx.with_partitioning(init, axes, eager_sharding=eager_sharding())


class FixedEmbed(nnx.Variable):
    """A non-trainable table (the fixed sin-cos position embeddings).

    Not an ``nnx.Param``: ``nnx.split(model, nnx.Param, ...)`` and ``nnx.Optimizer(...,
    wrt=nnx.Param)`` leave it out, like MAE's ``requires_grad=False`` ``pos_embed``.
    """


def fixed_embed(table: Any, axes: Axes = ("pos", "embed")) -> FixedEmbed:
    """Wraps a [rows, width] float32 table as a :class:`FixedEmbed` with logical axis names."""
    eager = eager_sharding()
    if eager:
        # Under a mesh, eager sharding needs a mesh-sharded input: make the constant inside jit.
        value = jax.jit(lambda: jnp.asarray(table, jnp.float32))()
    else:
        value = jnp.asarray(table, jnp.float32)
    chex.assert_rank(value, len(axes))
    return FixedEmbed(value, out_sharding=axes, eager_sharding=eager)


def token_param(width: int, param_dtype: Dtype, rngs: nnx.Rngs) -> nnx.Param:
    """A learned [1, 1, width] token (cls / mask token), init N(0, 0.02) as MAE."""
    init = partitioned(nnx.initializers.normal(0.02), (None, None, "embed"))
    return nnx.Param(init(rngs.params(), (1, 1, width), param_dtype))


class Dense(nnx.LinearGeneral):
    """``nnx.LinearGeneral`` (same parameters, init and metadata) computed by
    :func:`mim_jax.models.kernels.linear`.

    ``[..., *in_features]`` (the contracted axes last) -> ``[..., *out_features]`` in ``dtype``:
    inputs and kernel cast to ``dtype``, float32 accumulation and bias add, one cast of the
    result; the gradients of the (float32) parameters are accumulated in float32. The leading
    axes are flattened into rows, so every product is one 2-D matmul (on XLA:CPU the backward
    of 3-D dots adds layout copies).
    """

    def __call__(self, inputs: jax.Array, out_sharding: Any = None) -> jax.Array:
        n_in = len(self.in_features)
        axes = tuple(a % inputs.ndim for a in self.axis)
        if self.batch_axis or axes != tuple(range(inputs.ndim - n_in, inputs.ndim)):
            raise ValueError(
                f"Dense contracts its last {n_in} input axes without batch axes; got axis="
                f"{self.axis}, batch_axis={dict(self.batch_axis)} for input shape {inputs.shape}."
            )
        if out_sharding is not None:
            raise ValueError("Dense does not take out_sharding (its output follows the rows).")
        chex.assert_equal(inputs.shape[inputs.ndim - n_in :], self.in_features)
        kernel = self.kernel[...]
        if self.bias is not None:
            bias = self.bias[...]
        else:
            bias = jnp.zeros(self.out_features, kernel.dtype)
        dtype = jnp.dtype(self.dtype or jnp.result_type(inputs, kernel))
        lead = inputs.shape[: inputs.ndim - n_in]
        rows = inputs.reshape(-1, *self.in_features).astype(dtype)
        out = kernels.linear(rows, kernel, bias, dtype)
        return out.reshape(*lead, *self.out_features)


def dense(
    in_features: int | Sequence[int],
    out_features: int | Sequence[int],
    axes: Axes,
    *,
    dtype: Dtype,
    param_dtype: Dtype,
    rngs: nnx.Rngs,
    axis: int | Sequence[int] = -1,
    use_bias: bool = True,
) -> Dense:
    """:class:`Dense` with xavier-uniform (flat view) kernel, zero bias and logical axis names.

    Args:
      in_features, out_features: sizes (ints or tuples); kernel shape is in + out.
      axes: logical names for the kernel dims (in dims then out dims); the bias takes the out part.
      axis: input axes contracted (default the last).
    """
    n_out = 1 if isinstance(out_features, int) else len(out_features)
    return Dense(
        in_features,
        out_features,
        axis=axis,
        use_bias=use_bias,
        dtype=dtype,
        param_dtype=param_dtype,
        kernel_init=partitioned(nnx.initializers.xavier_uniform(), axes),
        bias_init=partitioned(nnx.initializers.zeros_init(), axes[-n_out:]),
        rngs=rngs,
    )


class LayerNorm(nnx.Module):
    """LayerNorm over the last axis with :func:`mim_jax.models.kernels.layer_norm`'s backward.

    ``[..., D]`` any float dtype -> ``[..., D]`` in ``dtype``; statistics in float32, eps 1e-6,
    two-pass variance. Parameters ``scale`` (ones) and ``bias`` (zeros), [D] ``param_dtype`` on
    the ``embed`` logical axis: the same names and shapes as ``nnx.LayerNorm``, so checkpoints
    and exports see the same tree.
    """

    def __init__(self, width: int, *, dtype: Dtype, param_dtype: Dtype, rngs: nnx.Rngs):
        self.scale = nnx.Param(
            partitioned(nnx.initializers.ones_init(), ("embed",))(
                rngs.params(), (width,), param_dtype
            )
        )
        self.bias = nnx.Param(
            partitioned(nnx.initializers.zeros_init(), ("embed",))(
                rngs.params(), (width,), param_dtype
            )
        )
        self.dtype = dtype

    def __call__(self, x: jax.Array) -> jax.Array:
        chex.assert_equal(x.shape[-1], self.scale.shape[0])
        return kernels.layer_norm(x, self.scale[...], self.bias[...], LN_EPS).astype(self.dtype)


def layer_norm(width: int, *, dtype: Dtype, param_dtype: Dtype, rngs: nnx.Rngs) -> LayerNorm:
    """LayerNorm(eps 1e-6), scale 1 and bias 0, both on the ``embed`` logical axis."""
    return LayerNorm(width, dtype=dtype, param_dtype=param_dtype, rngs=rngs)


class Mlp(nnx.Module):
    """fc1 -> exact GELU -> fc2 ([B, L, D] -> [B, L, D])."""

    def __init__(
        self, width: int, mlp_dim: int, *, dtype: Dtype, param_dtype: Dtype, rngs: nnx.Rngs
    ):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.fc1 = dense(width, mlp_dim, ("embed", "mlp"), **kw)
        self.fc2 = dense(mlp_dim, width, ("mlp", "embed"), **kw)

    def __call__(self, x: jax.Array) -> jax.Array:
        # Rows flattened to [B*L, D]: on XLA:CPU the backward of 3-D dots around the GELU adds
        # layout copies (measured +57% CPU time on an MLP fwd+bwd at B32 L197 D512, +4% flat).
        rows = x.reshape(-1, x.shape[-1])
        # torch.nn.GELU() default is the exact erf form.
        out = self.fc2(kernels.gelu(self.fc1(rows)))
        return out.reshape(*x.shape[:-1], out.shape[-1])


def _attend(q: jax.Array, k: jax.Array, v: jax.Array) -> jax.Array:
    """[B, Lq, H, hd] x [B, Lk, H, hd] -> [B, Lq, H, hd], scale 1/sqrt(hd), fp32 softmax.

    ``jax.nn.dot_product_attention`` where a fused kernel exists (GPU cuDNN, TPU). On CPU, XLA
    lowers that to dots in the [B, L, H, hd] layout whose backward needs transposes, so there the
    heads are moved in front once ([B, H, L, hd]) and :func:`kernels.attention` (batched dots,
    hand-written backward) runs: measured 17% less CPU time than the stock lowering for qkv +
    attention + proj fwd+bwd at B32 L197 H16 hd32, and the custom backward a further 15% on
    the attention alone.
    """
    if jax.default_backend() != "cpu":
        return jax.nn.dot_product_attention(q, k, v)
    q, k, v = (t.transpose(0, 2, 1, 3) for t in (q, k, v))
    return kernels.attention(q, k, v).transpose(0, 2, 1, 3)


def _self_attend(qkv: jax.Array) -> jax.Array:
    """:func:`_attend` of a fused projection [B, L, 3, H, hd] -> [B, L, H, hd]; on CPU through
    :func:`kernels.self_attention` (one transpose each way instead of one per slice)."""
    if jax.default_backend() != "cpu":
        return _attend(qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2])
    return kernels.self_attention(qkv)


class SelfAttention(nnx.Module):
    """Multi-head self-attention with a fused qkv projection ([B, L, D] -> [B, L, D])."""

    def __init__(
        self, width: int, num_heads: int, *, dtype: Dtype, param_dtype: Dtype, rngs: nnx.Rngs
    ):
        if width % num_heads:
            raise ValueError(f"width {width} is not divisible by num_heads {num_heads}.")
        head_dim = width // num_heads
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.qkv = dense(width, (3, num_heads, head_dim), ("embed", "qkv", "heads", "kv"), **kw)
        self.proj = dense(
            (num_heads, head_dim), width, ("heads", "kv", "embed"), axis=(-2, -1), **kw
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        b, length, width = x.shape
        qkv = self.qkv(x.reshape(b * length, width))  # [B*L, 3, H, hd]: 2-D dots (see Mlp)
        qkv = qkv.reshape(b, length, *qkv.shape[1:])
        out = _self_attend(qkv)  # [B, L, H, hd]
        return self._project_out(out)

    def from_queries(self, queries: jax.Array, x: jax.Array) -> jax.Array:
        """Attention output for a subset of the tokens only.

        Args:
          queries: [B, Q, D] (normalised) tokens whose outputs are wanted, a subset of ``x``.
          x: [B, L, D] all (normalised) tokens: the keys and values.

        Returns:
          [B, Q, D], equal to ``self(x)`` at the queried rows, with the query projection,
          attention rows and output projection computed for the Q rows only.
        """
        b, length, width = x.shape
        num_queries = queries.shape[1]
        kernel, bias = self.qkv.kernel[...], self.qkv.bias[...]  # [D, 3, H, hd], [3, H, hd]
        dtype = jnp.dtype(self.qkv.dtype or x.dtype)
        rows = queries.reshape(b * num_queries, width).astype(dtype)
        q = kernels.linear(rows, kernel[:, 0], bias[0], dtype)  # [B*Q, H, hd]
        kv = kernels.linear(
            x.reshape(b * length, width).astype(dtype), kernel[:, 1:], bias[1:], dtype
        ).reshape(b, length, 2, *q.shape[1:])
        out = _attend(q.reshape(b, num_queries, *q.shape[1:]), kv[:, :, 0], kv[:, :, 1])
        return self._project_out(out)

    def _project_out(self, heads: jax.Array) -> jax.Array:
        """[B, L, H, hd] attention output -> [B, L, D] through ``proj`` as one 2-D matmul."""
        b, length = heads.shape[:2]
        out = self.proj(heads.reshape(b * length, *heads.shape[2:]))
        return out.reshape(b, length, out.shape[-1])


class CrossAttention(nnx.Module):
    """Queries from ``x`` [B, Lq, D], keys/values projected from ``context`` [B, Lk, Dc].

    As CrossMAE's ``CrossAttention``: ``q = Linear(D, D)``, ``kv = Linear(Dc, 2D)``, ``proj``.
    """

    def __init__(
        self,
        width: int,
        context_width: int,
        num_heads: int,
        *,
        dtype: Dtype,
        param_dtype: Dtype,
        rngs: nnx.Rngs,
    ):
        if width % num_heads:
            raise ValueError(f"width {width} is not divisible by num_heads {num_heads}.")
        head_dim = width // num_heads
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.q = dense(width, (num_heads, head_dim), ("embed", "heads", "kv"), **kw)
        self.kv = dense(
            context_width, (2, num_heads, head_dim), ("embed", "qkv", "heads", "kv"), **kw
        )
        self.proj = dense(
            (num_heads, head_dim), width, ("heads", "kv", "embed"), axis=(-2, -1), **kw
        )

    def __call__(self, x: jax.Array, context: jax.Array) -> jax.Array:
        q = self.q(x)  # [B, Lq, H, hd]
        kv = self.kv(context)  # [B, Lk, 2, H, hd]
        return self.proj(_attend(q, kv[:, :, 0], kv[:, :, 1]))


def drop_path(x: jax.Array, rate: float, key: jax.Array | None) -> jax.Array:
    """Stochastic depth on a residual branch ``x`` [B, ...] (timm's ``drop_path``).

    Each sample's branch is zeroed with probability ``rate`` and the kept ones are scaled by
    ``1 / (1 - rate)``. ``key=None`` or ``rate == 0`` returns ``x`` unchanged (evaluation).
    """
    if key is None or rate == 0.0:
        return x
    keep = 1.0 - rate
    shape = (x.shape[0],) + (1,) * (x.ndim - 1)
    mask = jax.random.bernoulli(key, keep, shape)
    return jnp.where(mask, x / jnp.asarray(keep, x.dtype), jnp.zeros_like(x))


class Block(nnx.Module):
    """Pre-norm ViT block: ``x += Attn(LN(x)); x += MLP(LN(x))`` ([B, L, D] -> [B, L, D]).

    ``drop_path`` (default 0) is the stochastic-depth rate of both residual branches; it acts
    only when a ``key`` is passed to ``__call__`` (fine-tuning), never in evaluation.
    """

    def __init__(
        self,
        width: int,
        num_heads: int,
        mlp_dim: int,
        *,
        dtype: Dtype,
        param_dtype: Dtype,
        rngs: nnx.Rngs,
        drop_path: float = 0.0,
    ):
        if not 0.0 <= drop_path < 1.0:
            raise ValueError(f"drop_path must lie in [0, 1), got {drop_path}.")
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.norm1 = layer_norm(width, **kw)
        self.attn = SelfAttention(width, num_heads, **kw)
        self.norm2 = layer_norm(width, **kw)
        self.mlp = Mlp(width, mlp_dim, **kw)
        self.drop_path = float(drop_path)

    def __call__(self, x: jax.Array, key: jax.Array | None = None) -> jax.Array:
        if key is None or self.drop_path == 0.0:
            x = x + self.attn(self.norm1(x))
            return x + self.mlp(self.norm2(x))
        key_attn, key_mlp = jax.random.split(key)
        x = x + drop_path(self.attn(self.norm1(x)), self.drop_path, key_attn)
        return x + drop_path(self.mlp(self.norm2(x)), self.drop_path, key_mlp)

    def at(self, x: jax.Array, index: jax.Array, gather: GatherMethod = "take") -> jax.Array:
        """The block's output at the rows ``index`` only (no drop path).

        Args:
          x: [B, L, D] block input.
          index: int32[B, Q] rows of ``x`` wanted.
          gather: how rows are selected (:func:`mim_jax.models.tokens.gather_tokens`).

        Returns:
          [B, Q, D], equal to ``self(x)`` gathered at ``index``; only the keys and values are
          computed for all L rows, the query side (attention rows, proj, MLP) for the Q rows.
        """
        chex.assert_rank(index, 2)
        normed = self.norm1(x)
        queries = gather_tokens(normed, index, gather)
        out = gather_tokens(x, index, gather) + self.attn.from_queries(queries, normed)
        return out + self.mlp(self.norm2(out))


def apply_block(block: nnx.Module, *args: jax.Array, remat: bool = False) -> jax.Array:
    """``block(*args)``, rematerialised in the backward pass when ``remat`` is set."""
    if remat:
        return jax.checkpoint(lambda blk, *a: blk(*a))(block, *args)
    return block(*args)
