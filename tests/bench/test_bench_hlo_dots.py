"""mim_jax.bench.hlo_dots: the compiled program's products, counted by operand type."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest
from conftest import TINY_MAE

from mim_jax import masking, models
from mim_jax.bench.hlo_dots import dot_flop_shares, dot_flops_by_operand_type, dots
from mim_jax.core.optimizer import OptimizerConfig, make_optimizer
from mim_jax.core.sharding import make_mesh
from mim_jax.masking import MaskSpec
from mim_jax.train.step import compile_train_step


def _compiled_text(fn, *args) -> str:
    return jax.jit(fn).lower(*args).compile().as_text()


def test_plain_and_batched_products_are_counted_with_their_contracted_size():
    a, b = jnp.ones((64, 32)), jnp.ones((32, 16))
    x, y = jnp.ones((4, 8, 5)), jnp.ones((4, 5, 3))

    def two_products(a, b, x, y):
        return jnp.sum(a @ b) + jnp.sum(jnp.einsum("bij,bjk->bik", x, y))

    text = _compiled_text(two_products, a, b, x, y)
    found = dots(text)
    assert sorted(dot.flops for dot in found) == [2 * 4 * 8 * 5 * 3, 2 * 64 * 32 * 16]
    assert {(dot.lhs_type, dot.rhs_type) for dot in found} == {("f32", "f32")}
    assert dot_flops_by_operand_type(text) == {"f32": 2 * 64 * 32 * 16 + 2 * 4 * 8 * 5 * 3}
    assert dot_flop_shares(text) == {"f32": 1.0}
    assert dot_flops_by_operand_type(_compiled_text(lambda a: a + 1, a)) == {}
    assert dot_flop_shares(_compiled_text(lambda a: a + 1, a)) == {}


def _train_step_text(dtype: str, batch: int = 8) -> tuple[str, int, models.MAE]:
    model = models.mae_model("vit_tiny", rngs=0, dtype=dtype, **TINY_MAE)
    tx, schedule = make_optimizer(OptimizerConfig(learning_rate=1e-3, total_steps=10))
    mesh = make_mesh(devices=jax.devices()[:1])
    compiled = compile_train_step(model, tx, schedule, mesh, MaskSpec("random", 0.75), batch)
    images = {"image": jnp.zeros((batch, 32, 32, 3))}
    text = compiled.step.lower(compiled.state, images, jax.random.key(0)).compile().as_text()
    return text, batch, model


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_the_compiled_train_step_has_the_analytic_matmul_flops(dtype):
    text, batch, model = _train_step_text(dtype)
    config = model.config
    n = config.tokens.num_patches
    k = masking.num_visible(n, 0.75)
    analytic = models.mae_train_flops(config, k, n - k, batch_size=batch)
    # The analytic count charges every dense layer three products; the patch embedding's
    # input gradient (the pixels') is never computed.
    unused = 2 * batch * k * config.tokens.patch_dim * config.encoder.width
    flops = dot_flops_by_operand_type(text)
    assert sum(flops.values()) == analytic - unused
    shares = dot_flop_shares(text)
    if dtype == "float32":
        assert shares == {"f32": 1.0}
    else:
        # XLA:CPU: every dense product runs natively in bfloat16 (kernels.linear and its
        # weight gradient); attention's batched products are upcast to float32.
        assert set(shares) == {"bf16", "f32"} and shares["bf16"] > 0.9
