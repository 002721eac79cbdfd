"""python -m mim_jax.bench floor: the step's matmuls, counted and timed at their own shapes."""

from __future__ import annotations

import json
import subprocess
import sys

import jax
import pytest

from mim_jax import masking, models
from mim_jax.bench.floor import Attention, Dense, jax_products, step_matmuls
from mim_jax.bench.hlo_dots import dots


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("vit_tiny", dict()),
        ("vit_base", dict(image_size=64, patch_size=8, cls_token=False, decoder_depth=3)),
        ("vit_small", dict(num_frames=4, tubelet_size=2, image_size=32, patch_size=8)),
    ],
)
@pytest.mark.parametrize("ratio", [0.75, 0.9])
def test_the_timed_matmuls_are_exactly_the_counted_step_flops(name, kwargs, ratio):
    config = models.mae_config(name, **kwargs)
    n = config.tokens.num_patches
    k = masking.num_visible(n, ratio)
    ops = step_matmuls(config, batch_size=3, mask_ratio=ratio)
    assert sum(op.flops for op in ops) == models.mae_train_flops(config, k, n - k, batch_size=3)


@pytest.mark.parametrize(
    "op", [Dense("decoder", rows=96, fan_in=64, fan_out=48), Attention(2, 3, 17, 17, 8)]
)
def test_every_product_the_bfloat16_floor_times_takes_bfloat16_operands(op):
    # XLA:CPU runs a product whose operand is an explicit transpose (``dy @ w.T``) in float32:
    # the floor must time the forms the bfloat16 step compiles, not that one.
    products, _ = jax_products(op, "bfloat16")
    for fn, a, b in products:
        compiled = jax.jit(fn).lower(a, b).compile().as_text()
        types = {(dot.lhs_type, dot.rhs_type) for dot in dots(compiled)}
        assert types == {("bf16", "bf16")}, (fn, types)


def test_crossmae_is_refused_with_the_reason():
    config = models.mae_config("vit_tiny", decoder="crossmae")
    with pytest.raises(ValueError, match="MAE decoder only"):
        step_matmuls(config, batch_size=2, mask_ratio=0.75)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_floor_command_prints_a_line_per_framework(dtype):
    args = [
        "floor", "--model", "vit_tiny", "--image-size", "32", "--patch-size", "8",
        "--batch-size", "4", "--decoder-width", "32", "--decoder-depth", "2",
        "--decoder-heads", "2", "--repeats", "1", "--dtype", dtype,
    ]  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "mim_jax.bench", *args], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    (line,) = [json.loads(text) for text in done.stdout.strip().splitlines()]
    assert line["what"] == "matmul_floor" and line["framework"] == "jax"
    assert line["dtype"] == dtype
    config = models.mae_config(
        "vit_tiny", image_size=32, patch_size=8, decoder_width=32, decoder_depth=2,
        decoder_num_heads=2,
    )  # fmt: skip
    assert line["flops"] == models.mae_train_flops(config, 4, 12, batch_size=4)
    assert set(line["parts"]) == {"patch_embed", "encoder", "attention", "decoder", "pred"}
    assert line["floor_ms"] == pytest.approx(sum(line["parts"].values()), abs=0.5)
    assert line["floor_ms"] > 0 and line["tflops_per_s"] > 0
