"""bfloat16 compute: bfloat16 products with float32 accumulation, and a float32-like loss curve."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mim_jax import configs, masking, models
from mim_jax.core.metrics import read_metrics
from mim_jax.train.pretrain import run


def _dot_generals(jaxpr) -> list:
    """Every ``dot_general`` equation of a (closed) jaxpr, sub-jaxprs included."""
    found = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            found.append(eqn)
        for param in eqn.params.values():
            for sub in param if isinstance(param, (list, tuple)) else (param,):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    found.extend(_dot_generals(inner))
    return found


def _loss_grad_jaxpr(dtype: str):
    model = models.mae_model(
        "vit_tiny",
        image_size=32,
        patch_size=8,
        decoder_width=32,
        decoder_depth=2,
        decoder_num_heads=2,
        encoder_overrides=dict(width=32, depth=2, num_heads=2, mlp_dim=64),
        dtype=dtype,
        rngs=0,
    )
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    images = jnp.zeros((2, 32, 32, 3), jnp.float32)
    masks = masking.get("random")(jax.random.key(0), batch_size=2, grid=(4, 4), mask_ratio=0.75)

    def loss(params):
        return nnx.merge(graphdef, params, rest)(images, masks, masked_only=True)[0]

    return jax.make_jaxpr(jax.grad(loss))(params).jaxpr


def test_every_product_of_the_bfloat16_step_is_bfloat16_with_float32_accumulation():
    # XLA:CPU runs a bf16 x bf16 -> bf16 dot as a float32 dot between converts, and float32
    # cotangents would make the backward products float32: both would waste the bf16 FLOPs.
    dots = _dot_generals(_loss_grad_jaxpr("bfloat16"))
    # forward + two backward products for each of the 2 + 2 blocks' 4 dense layers, at least
    assert len(dots) >= 3 * 4 * 4
    for eqn in dots:
        operand_dtypes = {str(v.aval.dtype) for v in eqn.invars}
        assert operand_dtypes == {"bfloat16"}, (eqn, operand_dtypes)
        assert eqn.params["preferred_element_type"] == jnp.float32, eqn
    # The float32 model stays float32 throughout.
    for eqn in _dot_generals(_loss_grad_jaxpr("float32")):
        assert {str(v.aval.dtype) for v in eqn.invars} == {"float32"}


def _loss_curve(dtype: str, workdir: str, steps: int) -> np.ndarray:
    config = configs.load(
        "configs/demo.py",
        [
            "mask=random",
            "batch_size=32",
            f"total_steps={steps}",
            f"model.dtype={dtype}",
            "log_every=10",
            f"checkpoint_every={steps}",
            "recon_every=0",
        ],
    )
    result = run(config, workdir)
    assert result.stopped == "finished" and result.step == steps
    rows = [r for r in read_metrics(workdir) if "loss" in r]
    return np.array([r["loss"] for r in sorted(rows, key=lambda r: r["step"])])


@pytest.mark.timeout(1800)  # two short training runs: ~1 min on 2 idle cores
def test_a_bfloat16_demo_run_follows_the_float32_loss_curve(tmp_path):
    """200 steps of the demo config (batch 32) in float32 and in bfloat16, same init, data and
    masks: the bfloat16 loss curve stays within 3% of the float32 one."""
    steps = 200
    loss32 = _loss_curve("float32", str(tmp_path / "f32"), steps)
    loss16 = _loss_curve("bfloat16", str(tmp_path / "bf16"), steps)
    assert loss32.shape == loss16.shape == (steps // 10,)
    assert loss32[-1] < 0.7 * loss32[0]  # it learns, so the comparison means something
    # 50-step means of the logged losses within 3%, the last one included.
    windows32, windows16 = loss32.reshape(-1, 5).mean(1), loss16.reshape(-1, 5).mean(1)
    np.testing.assert_allclose(windows16, windows32, rtol=0.03)
