"""PyTorch reference timing of one MAE training step (``transformers.ViTMAEForPreTraining``).

What it measures
----------------
The wall time of one full training step of the Hugging Face MAE on the CPU (or whatever device
torch runs on by default): forward on a fixed random float32 batch ``[B, C, H, W]`` (NCHW, as HF
expects), ``loss.backward()``, an ``AdamW(lr=1.5e-4, betas=(0.9, 0.95), weight_decay=0.05)``
step and ``zero_grad(set_to_none=True)``. ``warmup`` untimed steps, then ``repeats`` steps timed
one by one with ``time.perf_counter``; the median is reported.

With ``dtype="bfloat16"`` the forward pass runs under ``torch.autocast("cpu",
dtype=torch.bfloat16)``, PyTorch's automatic mixed precision and the counterpart of mim_jax's
``dtype="bfloat16"``: float32 weights and optimizer state, bfloat16 matmuls, float32 LayerNorm,
softmax and loss; ``loss.backward()`` runs outside the context, as PyTorch recommends.

Why
---
``python -m mim_jax.bench train-step ... --vs-torch`` builds this step with
:func:`torch_mae_step` in the same process and times it in the same interleaved rounds as the
JAX step(s) (JAX, torch, JAX, torch, ...), so drift in machine load hits both alike and their
ratio (the targets of the JAX step over this one) is meaningful even on a noisy box. Timing the
two one after the other is not enough there: a load that comes or goes in between moves the
ratio by 1.5x and more. Absolute numbers from different processes or machines are not comparable.
:func:`time_torch_mae_step` times the step on its own.

Config parity with ``mim_jax`` (and ``facebookresearch/mae``)
-------------------------------------------------------------
- Encoder and decoder width, depth, heads and MLP width are taken verbatim from the arguments.
- ``layer_norm_eps=1e-6`` as in MAE's ``partial(nn.LayerNorm, eps=1e-6)`` (HF's default is 1e-12),
  ``qkv_bias=True``, exact (erf) GELU (HF ``hidden_act="gelu"``), dropout 0 everywhere, pre-LN
  blocks, a cls token, fixed 2-D sin-cos position tables that are not trained (HF stores them as
  ``requires_grad=False`` parameters; ``"params"`` counts trainable parameters only, like the JAX
  parameter tree where the tables are constants).
- Mask count: HF's ``ViTMAEEmbeddings.random_masking`` keeps
  ``len_keep = int(seq_len * (1 - mask_ratio))`` patches (truncation of a float expression, as in
  MAE). ``mim_jax.masking`` keeps ``N - floor(N * r + 1/2)``; the two agree for 196 patches at
  0.75 (49 visible) but can differ by one where ``N * (1 - r)`` is not an integer (HF truncates,
  mim_jax rounds: 16 patches at 0.9 give HF 1, mim_jax 2) or carries float error (1568 patches at
  0.9: HF 156, mim_jax 157). The count HF's masking used is returned as ``"num_visible"``.
- Masking noise is drawn with ``torch.rand`` inside every step (per-sample argsort shuffle), so
  the masking cost is part of the step, as in the JAX step.
- ``norm_pix_loss``: HF computes ``(t - mean) / (var + 1e-6) ** 0.5`` with ``Tensor.var``'s
  default **unbiased** variance (ddof=1), the same as MAE and ``mim_jax.models.loss``. The loss
  is the per-patch MSE averaged over the masked patches.
- Attention runs through ``torch.nn.functional.scaled_dot_product_attention`` (HF
  ``attn_implementation="sdpa"``), the fastest stock path on CPU.
- AdamW applies weight decay 0.05 to every trainable tensor (MAE exempts biases, norms and
  tokens); this changes no cost worth measuring. torch picks its default (for-loop on CPU)
  AdamW implementation.

Threads: ``torch.set_num_threads(threads or os.cpu_count())`` for the measurement; the previous
setting is restored afterwards so the rest of the process is unaffected.

torch and transformers are optional: they are imported inside the functions, so importing this
module never fails; :func:`time_torch_mae_step` raises a ``RuntimeError`` naming the install
command when they are missing.
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import os
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

INSTALL_HINT = (
    "pip install torch --index-url https://download.pytorch.org/whl/cpu && "
    "pip install -e '.[torch-export]'"
)


def torch_available() -> bool:
    """True when both ``torch`` and ``transformers`` are installed (found without importing)."""
    try:
        return all(importlib.util.find_spec(name) is not None for name in ("torch", "transformers"))
    except (ImportError, ValueError):  # e.g. a module set to None in sys.modules
        return False


def _import_deps():
    try:
        import torch
        import transformers
    except ImportError as err:
        raise RuntimeError(
            "the PyTorch reference (--vs-torch) needs torch and transformers, which are not "
            f"installed ({err}). Install them with `{INSTALL_HINT}` (the CPU-only torch wheel "
            "first: a plain `pip install torch` may pull a multi-GB CUDA build)."
        ) from err
    return torch, transformers


def _matmul_peak_tflops(torch, dtype: str = "float32", repeats: int = 5) -> float:
    """Best TFLOP/s of a square ``dtype`` matmul in torch (current threads), the JAX size."""
    from mim_jax.bench.timing import MATMUL_SIZE, best_seconds

    operand = torch.ones(MATMUL_SIZE, MATMUL_SIZE, dtype=getattr(torch, dtype))
    return 2 * MATMUL_SIZE**3 / best_seconds(lambda: operand @ operand, repeats) / 1e12


@dataclass(frozen=True)
class TorchStep:
    """One built ``ViTMAEForPreTraining`` training step (see :func:`torch_mae_step`).

    ``run()`` performs one full step (forward, backward, AdamW, zero_grad) and returns when it
    is done; ``fields`` are the result fields that do not depend on timing.
    """

    run: Callable[[], None]
    fields: dict


@contextlib.contextmanager
def torch_mae_step(
    *,
    width: int,
    depth: int,
    num_heads: int,
    mlp_dim: int,
    decoder_width: int,
    decoder_depth: int,
    decoder_num_heads: int,
    decoder_mlp_dim: int,
    image_size: int,
    patch_size: int,
    channels: int = 3,
    batch_size: int,
    mask_ratio: float,
    norm_pix_loss: bool = True,
    warmup: int = 2,
    threads: int | None = None,
    seed: int = 0,
    dtype: str = "float32",
) -> Iterator[TorchStep]:
    """Builds the reference step, runs ``warmup`` untimed steps, and yields it.

    Arguments as :func:`time_torch_mae_step`. torch's intra-op threads are set to ``threads``
    (default ``os.cpu_count()``) inside the ``with`` block and restored when it ends.

    Raises:
      RuntimeError: torch or transformers is not installed.
      ValueError: a non-positive ``batch_size``, a negative ``warmup``, or a ``dtype`` other
        than float32 and bfloat16.
    """
    if dtype not in ("float32", "bfloat16"):
        raise ValueError(f"dtype must be 'float32' or 'bfloat16' (autocast), got {dtype!r}")
    if batch_size < 1 or warmup < 0:
        raise ValueError(
            f"need batch_size >= 1 and warmup >= 0; got batch_size={batch_size}, warmup={warmup}"
        )
    torch, transformers = _import_deps()
    from transformers import ViTMAEConfig, ViTMAEForPreTraining

    n_threads = int(threads or os.cpu_count() or 1)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(n_threads)
    try:
        torch.manual_seed(seed)
        config = ViTMAEConfig(
            hidden_size=width,
            num_hidden_layers=depth,
            num_attention_heads=num_heads,
            intermediate_size=mlp_dim,
            decoder_hidden_size=decoder_width,
            decoder_num_hidden_layers=decoder_depth,
            decoder_num_attention_heads=decoder_num_heads,
            decoder_intermediate_size=decoder_mlp_dim,
            image_size=image_size,
            patch_size=patch_size,
            num_channels=channels,
            mask_ratio=mask_ratio,
            norm_pix_loss=norm_pix_loss,
            layer_norm_eps=1e-6,
            qkv_bias=True,
            hidden_act="gelu",
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
            attn_implementation="sdpa",
        )
        model = ViTMAEForPreTraining(config)
        model.train()
        trainable = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(trainable, lr=1.5e-4, betas=(0.9, 0.95), weight_decay=0.05)
        images = torch.randn(batch_size, channels, image_size, image_size, dtype=torch.float32)

        def step() -> None:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bfloat16"):
                loss = model(pixel_values=images).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        for _ in range(warmup):
            step()
        # HF's own masking code on a dummy sequence: the visible count its steps used.
        num_patches = model.vit.embeddings.patch_embeddings.num_patches
        with torch.no_grad():
            kept, _, _ = model.vit.embeddings.random_masking(torch.zeros(1, num_patches, 1))
        yield TorchStep(
            run=step,
            fields={
                "what": "torch_train_step",
                "impl": "transformers.ViTMAEForPreTraining",
                "torch": torch.__version__,
                "transformers": transformers.__version__,
                "threads": n_threads,
                "params": sum(p.numel() for p in trainable),
                "batch_size": batch_size,
                "num_visible": int(kept.shape[1]),
                "attn_implementation": model.config._attn_implementation,
                "dtype": dtype,
            },
        )
    finally:
        torch.set_num_threads(previous_threads)


def torch_matmul_peak_tflops(dtype: str = "float32", repeats: int = 5) -> float:
    """Best TFLOP/s of a square ``dtype`` matmul in torch (current threads), the JAX size."""
    torch, _ = _import_deps()
    return _matmul_peak_tflops(torch, dtype, repeats)


def step_result(step: TorchStep, median_s: float, repeats: int) -> dict:
    """The ``torch_train_step`` result line for a step whose median time is ``median_s``."""
    timing = {
        "step_ms": median_s * 1e3,
        "img_per_s": step.fields["batch_size"] / median_s,
        "repeats": repeats,
    }
    return {**step.fields, **timing}


def time_torch_mae_step(
    *,
    repeats: int = 10,
    measure_matmul: bool = False,
    **model: object,
) -> dict:
    """Median wall time of one ``ViTMAEForPreTraining`` training step (see the module docstring).

    Args:
      width, depth, num_heads, mlp_dim: encoder stack (ViT-B/16: 768, 12, 12, 3072).
      decoder_width, decoder_depth, decoder_num_heads, decoder_mlp_dim: decoder stack
        (MAE: 512, 8, 16, 2048).
      image_size, patch_size, channels: square images ``[B, channels, image_size, image_size]``.
      batch_size: images per step.
      mask_ratio: fraction of patches hidden from the encoder; HF keeps
        ``int(N * (1 - mask_ratio))`` patches visible.
      norm_pix_loss: per-patch normalised target (unbiased variance, eps 1e-6 inside the sqrt).
      repeats: timed steps (each timed on its own; the median is reported).
      warmup: untimed steps before them (default 2).
      threads: intra-op threads for torch; ``None`` means ``os.cpu_count()``.
      seed: ``torch.manual_seed`` for the weights, the batch and the masking noise.
      measure_matmul: also time a ``dtype`` ``[2048, 2048] @ [2048, 2048]`` with the same
        threads and report its best rate as ``"matmul_peak_tflops"``.
      dtype: ``"float32"``, or ``"bfloat16"`` for the forward pass under ``torch.autocast``.

    Returns:
      ``{"what": "torch_train_step", "impl": "transformers.ViTMAEForPreTraining", "torch",
      "transformers", "threads", "step_ms", "img_per_s", "params", "repeats"}`` plus
      ``"batch_size"``, ``"num_visible"`` (HF's kept-patch count), ``"attn_implementation"``
      and ``"dtype"`` (``"bfloat16"`` means autocast).

    Raises:
      RuntimeError: torch or transformers is not installed.
      ValueError: a non-positive ``repeats`` or ``batch_size``, a negative ``warmup``, or a
        ``dtype`` other than float32 and bfloat16.
    """
    try:  # a misspelt or missing model argument fails here, before torch is imported
        inspect.signature(torch_mae_step).bind(**model)
    except TypeError as error:
        raise TypeError(f"time_torch_mae_step: {error}") from None
    if repeats < 1:
        raise ValueError(f"need repeats >= 1, got repeats={repeats}")
    with torch_mae_step(**model) as step:  # type: ignore[arg-type]
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            step.run()
            times.append(time.perf_counter() - start)
        dtype = step.fields["dtype"]
        matmul = torch_matmul_peak_tflops(dtype) if measure_matmul else None
    result = step_result(step, statistics.median(times), repeats)
    if matmul is not None:
        result["matmul_peak_tflops"] = matmul
    return result
