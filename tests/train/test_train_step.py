"""The compiled, sharded train step: meshes agree with one device, masks, accumulation, dtypes."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import TINY_MAE
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from mim_jax import masking, models
from mim_jax.core.optimizer import OptimizerConfig, make_optimizer
from mim_jax.core.sharding import make_mesh
from mim_jax.masking import MaskSpec
from mim_jax.train.step import compile_train_step

BATCH = 16
IMAGES = np.random.default_rng(0).random((BATCH, 32, 32, 3), np.float32)


def optimizer(lr=1e-3, total=50):
    return make_optimizer(OptimizerConfig(learning_rate=lr, warmup_steps=2, total_steps=total))


GREEN = MaskSpec("green")


def run(mesh_shape, steps=2, mask=GREEN, accum_steps=1, images=IMAGES, **model_kw):
    """Params, last metrics and the compiled step after ``steps`` steps on ``mesh_shape``."""
    mesh = make_mesh(*mesh_shape, devices=jax.devices()[: int(np.prod(mesh_shape))])
    model = models.mae_model("vit_tiny", rngs=0, **{**TINY_MAE, **model_kw})
    tx, schedule = optimizer()
    compiled = compile_train_step(model, tx, schedule, mesh, mask, len(images), accum_steps)
    state = compiled.state
    batch = {"image": jax.device_put(images, compiled.batch_sharding)}
    for _ in range(steps):
        state, metrics = compiled.step(state, batch, jax.random.key(1))
    return state, metrics, compiled


@pytest.fixture(scope="module")
def single_device():
    state, metrics, _ = run((1, 1, 1))
    return jax.device_get(state.params), {k: float(v) for k, v in metrics.items()}


def test_eight_virtual_devices_are_available():
    assert jax.device_count() == 8, "tests/conftest.py sets the device count before JAX starts"


@pytest.mark.xdist_group("sharded")
@pytest.mark.parametrize("mesh_shape", [(8, 1, 1), (2, 4, 1), (1, 8, 1), (2, 2, 2)])
def test_sharded_step_matches_one_device(single_device, mesh_shape):
    ref_params, ref_metrics = single_device
    state, metrics, compiled = run(mesh_shape)
    assert float(metrics["loss"]) == pytest.approx(ref_metrics["loss"], rel=1e-5)
    assert float(metrics["grad_norm"]) == pytest.approx(ref_metrics["grad_norm"], rel=1e-4)
    for got, want in zip(
        jax.tree.leaves(jax.device_get(state.params)), jax.tree.leaves(ref_params), strict=True
    ):
        np.testing.assert_allclose(got, want, atol=5e-5, rtol=1e-4)
    # Parameters and their AdamW moments are laid out by the rules table.
    kernel = state.params["encoder"]["blocks"][0]["mlp"]["fc1"]["kernel"]
    expected = PartitionSpec(
        "fsdp" if mesh_shape[1] > 1 else None, "tensor" if mesh_shape[2] > 1 else None
    )
    assert kernel.sharding.spec == expected or kernel.sharding.is_equivalent_to(
        NamedSharding(compiled.mesh, expected), 2
    )
    adam = [s for s in jax.tree.leaves(state.opt_state) if getattr(s, "shape", ()) == kernel.shape]
    assert adam and all(m.sharding.is_equivalent_to(kernel.sharding, 2) for m in adam)


@pytest.mark.xdist_group("sharded")
@pytest.mark.parametrize("mesh_shape", [(8, 1, 1), (2, 2, 2)])
def test_sharded_bfloat16_step_matches_one_device(mesh_shape):
    # The bfloat16 step partitioned over the mesh (its products, and the weight gradients'
    # split row sums of kernels.weight_gradient) agrees with one device, and with float32.
    _, ref, _ = run((1, 1, 1), steps=1, dtype="bfloat16")
    _, got, _ = run(mesh_shape, steps=1, dtype="bfloat16")
    assert float(got["loss"]) == pytest.approx(float(ref["loss"]), rel=1e-3)
    assert float(got["grad_norm"]) == pytest.approx(float(ref["grad_norm"]), rel=1e-2)
    _, f32, _ = run((1, 1, 1), steps=1)
    assert float(got["grad_norm"]) == pytest.approx(float(f32["grad_norm"]), rel=5e-2)


def test_masks_differ_per_sample_on_every_device():
    """One key, a batch sharded over 8 devices: every sample gets its own pattern."""
    mesh = make_mesh(8, 1, 1)
    gen = masking.get("green")
    sharding = NamedSharding(mesh, PartitionSpec("data"))

    @jax.jit
    def draw(key):
        m = gen(key, batch_size=64, grid=(14, 14), mask_ratio=0.75)
        return jax.lax.with_sharding_constraint(m.mask, sharding)

    sharded = draw(jax.random.key(0))
    assert len(sharded.sharding.device_set) == 8
    rows = np.asarray(sharded)
    assert len({r.tobytes() for r in rows}) == 64
    unsharded = gen(jax.random.key(0), batch_size=64, grid=(14, 14), mask_ratio=0.75).mask
    np.testing.assert_array_equal(rows, np.asarray(unsharded))


def smooth_images(n: int, size: int = 32, seed: int = 0) -> np.ndarray:
    """float32[n, size, size, 3]: per-channel gradients plus one shared wave (learnable)."""
    yy, xx = np.meshgrid(np.linspace(0, 1, size), np.linspace(0, 1, size), indexing="ij")
    basis = np.stack([np.ones_like(yy), yy, xx, np.sin(3 * xx + 2 * yy)])  # [4, size, size]
    coef = np.random.default_rng(seed).normal(size=(n, 3, 4))
    return np.einsum("ncb,byx->nyxc", coef, basis).astype(np.float32)


def test_a_few_dozen_steps_drive_the_loss_down():
    mesh = make_mesh(devices=jax.devices()[:1])
    model = models.mae_model("vit_tiny", rngs=0, **TINY_MAE)
    tx, schedule = optimizer(lr=3e-3, total=10**6)  # flat after warmup
    # A fixed batch and a fixed mask ("grid"): the step must be able to overfit them.
    compiled = compile_train_step(model, tx, schedule, mesh, MaskSpec("grid"), 8)
    state = compiled.state
    batch = {"image": jnp.asarray(smooth_images(8))}
    losses = []
    for _ in range(40):
        state, metrics = compiled.step(state, batch, jax.random.key(3))
        losses.append(float(metrics["loss"]))
    assert int(state.step) == 40
    assert np.isfinite(losses).all()
    assert np.mean(losses[-5:]) < 0.5 * losses[0], losses


def test_gradient_accumulation_matches_the_full_batch():
    # A fixed mask makes both runs see the same masked patches, so one update must agree.
    grid_mask = MaskSpec("grid")
    full, full_metrics, _ = run((1, 1, 1), steps=1, mask=grid_mask)
    accum, accum_metrics, _ = run((2, 1, 1), steps=1, mask=grid_mask, accum_steps=4)
    assert float(accum_metrics["loss"]) == pytest.approx(float(full_metrics["loss"]), rel=1e-5)
    for a, b in zip(jax.tree.leaves(accum.params), jax.tree.leaves(full.params), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=2e-5, rtol=1e-4)


def test_bfloat16_compute_keeps_float32_params_and_state_is_donated():
    state, metrics, compiled = run((1, 1, 1), steps=1, dtype="bfloat16")
    assert np.isfinite(float(metrics["loss"]))
    assert {x.dtype for x in jax.tree.leaves(state.params)} == {jnp.dtype(jnp.float32)}
    before = compiled.state  # the initial state was passed to the first step: donated
    assert all(x.is_deleted() for x in jax.tree.leaves(before.params))
    model = compiled.model(state)
    assert isinstance(model, nnx.Module)


def test_bad_batch_and_mask_fail_before_compiling():
    mesh = make_mesh(8, 1, 1)
    model = models.mae_model("vit_tiny", rngs=0, **TINY_MAE)
    tx, schedule = optimizer()
    with pytest.raises(ValueError, match="must divide over the 8 batch-sharded devices"):
        compile_train_step(model, tx, schedule, mesh, MaskSpec("random"), 12)
    with pytest.raises(ValueError, match="must divide into accum_steps=3"):
        compile_train_step(model, tx, schedule, mesh, MaskSpec("random"), 16, accum_steps=3)
    with pytest.raises(ValueError, match="tube"):
        compile_train_step(model, tx, schedule, mesh, MaskSpec("tube"), 16)


def test_mesh_sizes_are_checked():
    assert make_mesh().shape == {"data": 8, "fsdp": 1, "tensor": 1}
    assert make_mesh(2, -1, 2).shape == {"data": 2, "fsdp": 2, "tensor": 2}
    with pytest.raises(ValueError, match="must equal the 8 devices"):
        make_mesh(3, 1, 1)
