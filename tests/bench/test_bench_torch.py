"""The PyTorch reference step of ``mim_jax.bench.torch_ref`` on a tiny ViTMAE (optional deps)."""

from __future__ import annotations

import sys

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from mim_jax.bench import torch_ref as bench_torch

TINY = dict(
    width=64,
    depth=2,
    num_heads=2,
    mlp_dim=128,
    decoder_width=32,
    decoder_depth=1,
    decoder_num_heads=2,
    decoder_mlp_dim=64,
    image_size=32,
    patch_size=8,
    channels=3,
)


def block_params(d: int, m: int) -> int:
    """Pre-LN transformer block: q/k/v/o with biases, two LayerNorms, fc1/fc2 with biases."""
    return 4 * (d * d + d) + 2 * 2 * d + (d * m + m) + (m * d + d)


def mae_trainable_params(
    *,
    width,
    depth,
    num_heads,
    mlp_dim,
    decoder_width,
    decoder_depth,
    decoder_num_heads,
    decoder_mlp_dim,
    image_size,
    patch_size,
    channels,
) -> int:
    """Trainable parameters of MAE by hand (the sin-cos position tables are frozen)."""
    d, dd, p = width, decoder_width, patch_size
    encoder = (
        channels * p * p * d + d  # patch embedding (conv) + bias
        + d  # cls token
        + depth * block_params(d, mlp_dim)
        + 2 * d  # final LayerNorm
    )  # fmt: skip
    decoder = (
        d * dd + dd  # decoder_embed
        + dd  # mask token
        + decoder_depth * block_params(dd, decoder_mlp_dim)
        + 2 * dd  # decoder norm
        + dd * p * p * channels + p * p * channels  # decoder_pred
    )  # fmt: skip
    return encoder + decoder


def test_tiny_step_fields_and_params():
    out = bench_torch.time_torch_mae_step(
        **TINY, batch_size=4, mask_ratio=0.75, repeats=2, warmup=1, threads=1
    )
    assert out["what"] == "torch_train_step"
    assert out["impl"] == "transformers.ViTMAEForPreTraining"
    import torch
    import transformers

    assert out["torch"] == torch.__version__
    assert out["transformers"] == transformers.__version__
    assert out["threads"] == 1
    assert out["repeats"] == 2
    assert out["step_ms"] > 0
    assert out["img_per_s"] == pytest.approx(4 / (out["step_ms"] / 1e3))
    assert out["params"] == mae_trainable_params(**TINY) == 96_544
    assert out["num_visible"] == 4  # int(16 * 0.25)
    assert out["attn_implementation"] == "sdpa"


def test_measured_matmul_rate_is_reported_only_when_asked():
    kwargs = dict(**TINY, batch_size=2, mask_ratio=0.75, repeats=1, warmup=0, threads=1)
    assert "matmul_peak_tflops" not in bench_torch.time_torch_mae_step(**kwargs)
    rate = bench_torch.time_torch_mae_step(**kwargs, measure_matmul=True)["matmul_peak_tflops"]
    assert 1e-3 < rate < 1e3  # TFLOP/s of one thread: anything from a slow CPU to an H100


def test_bfloat16_is_autocast_and_other_dtypes_are_refused():
    kwargs = dict(**TINY, batch_size=2, mask_ratio=0.75, repeats=1, warmup=0, threads=1)
    out = bench_torch.time_torch_mae_step(**kwargs, dtype="bfloat16", measure_matmul=True)
    assert out["dtype"] == "bfloat16" and out["step_ms"] > 0
    assert out["params"] == mae_trainable_params(**TINY)  # float32 weights, same model
    assert 1e-3 < out["matmul_peak_tflops"] < 1e3
    with pytest.raises(ValueError, match=r"float32.*bfloat16"):
        bench_torch.time_torch_mae_step(**kwargs, dtype="float16")


def test_threads_restored():
    import torch

    before = torch.get_num_threads()
    bench_torch.time_torch_mae_step(
        **TINY, batch_size=2, mask_ratio=0.75, repeats=1, warmup=0, threads=1
    )
    assert torch.get_num_threads() == before


def test_rejects_bad_repeats():
    with pytest.raises(ValueError, match="repeats"):
        bench_torch.time_torch_mae_step(**TINY, batch_size=2, mask_ratio=0.75, repeats=0)


def test_a_misspelt_model_argument_is_named_before_torch_runs(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)  # the check comes before the import
    with pytest.raises(TypeError, match=r"time_torch_mae_step: .*'decoder_heads'"):
        bench_torch.time_torch_mae_step(
            **TINY, batch_size=2, mask_ratio=0.75, repeats=1, decoder_heads=4
        )
    missing = {k: v for k, v in TINY.items() if k != "width"}
    with pytest.raises(TypeError, match=r"time_torch_mae_step: .*'width'"):
        bench_torch.time_torch_mae_step(**missing, batch_size=2, mask_ratio=0.75, repeats=1)


def test_available():
    assert bench_torch.torch_available()


def test_missing_dependency_message(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)  # makes `import transformers` fail
    assert not bench_torch.torch_available()
    cpu_wheel = r"pip install torch --index-url https://download\.pytorch\.org/whl/cpu"
    with pytest.raises(RuntimeError, match=cpu_wheel + r".*torch-export"):
        bench_torch.time_torch_mae_step(**TINY, batch_size=2, mask_ratio=0.75, repeats=1)
