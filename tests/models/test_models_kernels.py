"""The hand-written backward passes of mim_jax.models.kernels against plain autodiff."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from hypothesis import given, settings
from hypothesis import strategies as st

from mim_jax.bench import hlo_dots
from mim_jax.models import kernels, layers


def _grads(fn, *args):
    """Value and gradient of sum(fn(*args) * w) for a fixed random cotangent w."""
    out = fn(*args)
    w = jax.random.normal(jax.random.key(99), out.shape, jnp.float32)
    loss = lambda *a: jnp.sum(fn(*a).astype(jnp.float32) * w)
    return out, jax.grad(loss, argnums=tuple(range(len(args))))(*args)


def _close(a, b, tol):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        x, y = np.asarray(x, np.float32), np.asarray(y, np.float32)
        assert x.shape == y.shape
        np.testing.assert_allclose(x, y, rtol=tol, atol=tol * max(1.0, np.abs(y).max()))


def _reference_layer_norm(x, scale, bias, eps=1e-6):
    x = x.astype(jnp.float32)
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / jnp.sqrt(var + eps) * scale + bias


@settings(deadline=None, max_examples=15)
@given(
    rows=st.lists(st.integers(1, 5), min_size=1, max_size=3),
    width=st.integers(8, 40),  # tiny widths: var ~ 0 amplifies rounding
    offset=st.floats(-50, 50),
    seed=st.integers(0, 2**16),
)
def test_layer_norm_value_and_grads_match_autodiff(rows, width, offset, seed):
    ks = jax.random.split(jax.random.key(seed), 3)
    x = jax.random.normal(ks[0], (*rows, width)) * 3 + offset
    scale = 1 + 0.1 * jax.random.normal(ks[1], (width,))
    bias = 0.1 * jax.random.normal(ks[2], (width,))
    got = _grads(kernels.layer_norm, x, scale, bias)
    want = _grads(_reference_layer_norm, x, scale, bias)
    _close(got, want, 2e-4)


def test_layer_norm_module_equals_flax_layer_norm_with_the_same_tree():
    ours = layers.layer_norm(24, dtype=jnp.float32, param_dtype=jnp.float32, rngs=nnx.Rngs(0))
    flax_ln = nnx.LayerNorm(24, epsilon=1e-6, use_fast_variance=False, rngs=nnx.Rngs(0))
    keys = jax.random.split(jax.random.key(1), 3)
    for module in (ours, flax_ln):
        module.scale[...] = 1 + jax.random.normal(keys[0], (24,))
        module.bias[...] = jax.random.normal(keys[1], (24,))
    x = jax.random.normal(keys[2], (3, 7, 24)) * 5 + 2
    shapes = [
        jax.tree.map(jnp.shape, nnx.to_pure_dict(nnx.state(m, nnx.Param))) for m in (ours, flax_ln)
    ]
    assert shapes[0] == shapes[1] == {"scale": (24,), "bias": (24,)}

    def run(module):
        graphdef, params = nnx.split(module, nnx.Param)
        return _grads(lambda p, x: nnx.merge(graphdef, p)(x), params, x)

    _close(run(ours), run(flax_ln), 1e-5)


def test_layer_norm_in_bfloat16_keeps_float32_statistics_and_dtypes():
    module = layers.layer_norm(64, dtype=jnp.bfloat16, param_dtype=jnp.float32, rngs=nnx.Rngs(0))
    x = (jax.random.normal(jax.random.key(0), (4, 64)) * 2 + 300).astype(jnp.bfloat16)
    out = module(x)
    assert out.dtype == jnp.bfloat16
    want = _reference_layer_norm(x, module.scale[...], module.bias[...])
    np.testing.assert_allclose(np.asarray(out, np.float32), want, atol=0.05)
    dx = jax.grad(lambda x: jnp.sum(kernels.layer_norm(x, module.scale[...], module.bias[...])))(x)
    assert dx.dtype == jnp.bfloat16


@pytest.mark.parametrize("dtype, tol", [(jnp.float32, 1e-5), (jnp.bfloat16, 2e-2)])
def test_gelu_value_and_grad_match_exact_gelu(dtype, tol):
    x = (jax.random.normal(jax.random.key(0), (5, 300)) * 4).astype(dtype)
    got = _grads(kernels.gelu, x)
    want = _grads(lambda x: jax.nn.gelu(x.astype(jnp.float32), approximate=False), x)
    assert got[0].dtype == dtype and got[1][0].dtype == dtype
    _close(got, want, tol)


def _reference_attention(q, k, v):
    q, k, v = (t.astype(jnp.float32) for t in (q, k, v))
    logits = jnp.einsum("bhqd,bhkd->bhqk", q, k) / np.sqrt(q.shape[-1])
    return jnp.einsum("bhqk,bhkd->bhqd", jax.nn.softmax(logits, -1), v)


@settings(deadline=None, max_examples=12)
@given(
    batch=st.integers(1, 3),
    heads=st.integers(1, 4),
    lq=st.integers(1, 17),
    lk=st.integers(1, 17),
    head_dim=st.sampled_from([1, 4, 8]),
    seed=st.integers(0, 2**16),
)
def test_attention_value_and_grads_match_autodiff(batch, heads, lq, lk, head_dim, seed):
    ks = jax.random.split(jax.random.key(seed), 3)
    q = jax.random.normal(ks[0], (batch, heads, lq, head_dim)) * 2
    k = jax.random.normal(ks[1], (batch, heads, lk, head_dim)) * 2
    v = jax.random.normal(ks[2], (batch, heads, lk, head_dim))
    _close(_grads(kernels.attention, q, k, v), _grads(_reference_attention, q, k, v), 2e-4)


def test_attention_in_bfloat16_is_close_to_float32():
    ks = jax.random.split(jax.random.key(3), 3)
    q, k, v = (jax.random.normal(key, (2, 3, 9, 8)) for key in ks)
    got = _grads(kernels.attention, *(t.astype(jnp.bfloat16) for t in (q, k, v)))
    assert all(g.dtype == jnp.bfloat16 for g in got[1])
    _close(got, _grads(_reference_attention, q, k, v), 5e-2)


def test_the_cpu_attention_path_equals_jax_dot_product_attention():
    ks = jax.random.split(jax.random.key(4), 3)
    q, k, v = (jax.random.normal(key, (2, 11, 4, 8)) for key in ks)  # [B, L, H, hd]
    _close(_grads(layers._attend, q, k, v), _grads(jax.nn.dot_product_attention, q, k, v), 2e-4)


def _reference_self_attention(qkv):
    """Slices, heads in front, :func:`_reference_attention`, heads back: [B, L, 3, H, hd]."""
    q, k, v = (qkv[:, :, i].transpose(0, 2, 1, 3) for i in range(3))
    return _reference_attention(q, k, v).transpose(0, 2, 1, 3)


@settings(deadline=None, max_examples=10)
@given(
    batch=st.integers(1, 3),
    length=st.integers(1, 13),
    heads=st.integers(1, 4),
    head_dim=st.sampled_from([1, 4, 8]),
    seed=st.integers(0, 2**16),
)
def test_self_attention_from_a_packed_projection_matches_autodiff(
    batch, length, heads, head_dim, seed
):
    qkv = jax.random.normal(jax.random.key(seed), (batch, length, 3, heads, head_dim)) * 2
    got = _grads(kernels.self_attention, qkv)
    assert got[0].shape == (batch, length, heads, head_dim)
    _close(got, _grads(_reference_self_attention, qkv), 2e-4)


def test_self_attention_in_bfloat16_runs_its_products_in_bfloat16():
    qkv = jax.random.normal(jax.random.key(5), (2, 9, 3, 3, 8))
    out, (d_qkv,) = _grads(kernels.self_attention, qkv.astype(jnp.bfloat16))
    assert out.dtype == d_qkv.dtype == jnp.bfloat16
    _close((out, d_qkv), _grads(_reference_self_attention, qkv), 5e-2)
    # The whole layer, as the model runs it: fused projection, attention, output projection.
    layer = layers.SelfAttention(
        24, 3, dtype=jnp.bfloat16, param_dtype=jnp.float32, rngs=nnx.Rngs(0)
    )
    graphdef, params = nnx.split(layer)
    x = jax.random.normal(jax.random.key(6), (4, 17, 24)).astype(jnp.bfloat16)

    def loss(params, x):
        return jnp.sum(nnx.merge(graphdef, params)(x).astype(jnp.float32) ** 2)

    dots = _compiled_dot_operand_dtypes(jax.grad(loss, argnums=(0, 1)), params, x)
    assert len(dots) == 3 * 2 + 6  # two dense layers, attention's 2 forward + 4 backward
    # XLA:CPU upcasts batched bfloat16 products whose operands are transposes to float32:
    # slicing q, k, v out of the projection and transposing each left all 6 attention products
    # in float32. With the heads moved once, both forward products and dQ run in bfloat16;
    # dV, dK (contracting the query rows) and dP (from the transposed dO) still do not.
    assert dots.count(("bf16", "bf16")) >= 9, dots


def _reference_linear(x, kernel, bias):
    n_in = kernel.ndim - bias.ndim
    return jnp.tensordot(x, kernel, axes=n_in) + bias


@settings(deadline=None, max_examples=10)
@given(
    rows=st.integers(1, 9),
    fan_in=st.lists(st.integers(1, 6), min_size=1, max_size=2),
    fan_out=st.lists(st.integers(1, 6), min_size=1, max_size=3),
    seed=st.integers(0, 2**16),
)
def test_linear_value_and_grads_match_autodiff(rows, fan_in, fan_out, seed):
    ks = jax.random.split(jax.random.key(seed), 3)
    x = jax.random.normal(ks[0], (rows, *fan_in))
    kernel = jax.random.normal(ks[1], (*fan_in, *fan_out))
    bias = jax.random.normal(ks[2], tuple(fan_out))
    got = _grads(lambda x, k, b: kernels.linear(x, k, b, jnp.dtype(jnp.float32)), x, kernel, bias)
    want = _grads(_reference_linear, x, kernel, bias)
    _close(got, want, 1e-5)


def test_linear_in_bfloat16_returns_float32_parameter_grads_close_to_float32():
    ks = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(ks[0], (64, 48))
    kernel = jax.random.normal(ks[1], (48, 3, 4, 8)) * 0.1
    bias = jax.random.normal(ks[2], (3, 4, 8))
    bf16 = jnp.dtype(jnp.bfloat16)
    out, (d_x, d_kernel, d_bias) = _grads(
        lambda x, k, b: kernels.linear(x, k, b, bf16), x.astype(bf16), kernel, bias
    )
    assert (out.dtype, d_x.dtype, d_kernel.dtype, d_bias.dtype) == (
        bf16,
        bf16,
        jnp.float32,
        jnp.float32,
    )
    want = _grads(_reference_linear, x, kernel, bias)
    _close((out, d_x, d_kernel, d_bias), want, 3e-2)


@settings(deadline=None, max_examples=10)
@given(
    rows=st.integers(1, 12),
    fan_in=st.lists(st.integers(1, 5), min_size=1, max_size=2),
    fan_out=st.lists(st.integers(1, 5), min_size=1, max_size=2),
    seed=st.integers(0, 2**16),
)
def test_the_bfloat16_weight_gradient_is_the_float32_sum_over_every_row(
    rows, fan_in, fan_out, seed
):
    # Even row counts take the split [2, R/2] form, odd ones the plain form: both must sum
    # every row once, in float32, from the bfloat16 operands.
    ks = jax.random.split(jax.random.key(seed), 2)
    x = jax.random.normal(ks[0], (rows, *fan_in)).astype(jnp.bfloat16)
    grad = jax.random.normal(ks[1], (rows, *fan_out)).astype(jnp.bfloat16)
    got = kernels.weight_gradient(x, grad)
    want = np.asarray(x, np.float32).reshape(rows, -1).T @ np.asarray(grad, np.float32).reshape(
        rows, -1
    )
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-5)


def _compiled_dot_operand_dtypes(fn, *args) -> list[tuple[str, str]]:
    """(lhs, rhs) element types of every ``dot`` in ``fn``'s compiled (optimised) HLO."""
    text = jax.jit(fn).lower(*args).compile().as_text()
    return [(dot.lhs_type, dot.rhs_type) for dot in hlo_dots.dots(text)]


def test_every_product_of_the_compiled_bfloat16_linear_gradient_takes_bfloat16_operands():
    # XLA:CPU turns a bfloat16 product it has no native kernel for into a float32 dot between
    # converts (about half the bfloat16 rate). The weight gradient's plain contract-the-rows
    # form was such a product; this fails if any product of forward or backward falls back.
    ks = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(ks[0], (512, 64)).astype(jnp.bfloat16)
    kernel = jax.random.normal(ks[1], (64, 128))
    bias = jnp.zeros((128,))
    bf16 = jnp.dtype(jnp.bfloat16)

    def loss(x, kernel, bias):
        return jnp.sum(kernels.linear(x, kernel, bias, bf16).astype(jnp.float32) ** 2)

    dots = _compiled_dot_operand_dtypes(jax.grad(loss, argnums=(0, 1, 2)), x, kernel, bias)
    assert len(dots) == 3, dots  # forward, d_x, d_kernel
    assert dots == [("bf16", "bf16")] * 3, dots


def test_dense_module_equals_linear_general_with_the_same_tree():
    kw = dict(dtype=jnp.float32, param_dtype=jnp.float32, rngs=nnx.Rngs(0))
    ours = layers.dense((4, 8), 16, ("heads", "kv", "embed"), axis=(-2, -1), **kw)
    stock = nnx.LinearGeneral((4, 8), 16, axis=(-2, -1), **kw)
    stock.kernel[...] = ours.kernel[...]
    stock.bias[...] = jax.random.normal(jax.random.key(3), (16,))
    ours.bias[...] = stock.bias[...]
    x = jax.random.normal(jax.random.key(1), (2, 5, 4, 8))

    def run(module):
        graphdef, params = nnx.split(module, nnx.Param)
        return _grads(lambda p, x: nnx.merge(graphdef, p)(x), params, x)

    assert run(ours)[0].shape == (2, 5, 16)
    _close(run(ours), run(stock), 1e-5)
    with pytest.raises(ValueError, match="contracts its last"):
        layers.dense(5, 16, ("embed", "mlp"), axis=1, **kw)(jnp.ones((2, 5, 3)))
