"""Benchmarks, printed as JSON lines (one per measurement).

Machines are noisy, so every figure comes with a baseline timed in the same process, interleaved
with the measurement, and the ratio between the two.

  python -m mim_jax.bench masks --mask green --grid 14,14 --batch-size 4096
      {"what": "masks", "mask": "green", "masks_per_s": ..., "batch_size": 4096,
       "grid": [14, 14], "baseline": "random", "baseline_masks_per_s": ...,
       "speed_vs_baseline": ..., ...}

  python -m mim_jax.bench train-step --model vit_tiny --image-size 224 --patch-size 16 \
      --batch-size 32 --mask green [--baseline-mask random] [--vs-torch] [--peak-tflops X]
      [--dtype bfloat16 --baseline-dtype float32]
      one line per step measured: {"what": "train_step", "mask": ..., "img_per_s", "step_ms",
      "compile_s", "devices", "peak_memory_bytes", "model_flops_per_step", "model_tflops_per_s",
      "mfu" (with --peak-tflops), "dot_flop_shares" ({"bf16": 0.97, "f32": 0.03}: the share
      of the compiled step's dot FLOPs by operand type, see mim_jax.bench.hlo_dots), ...};
      the baseline mask's line carries "step_time_vs_baseline";
      with --vs-torch a "torch_train_step" line and "speed_vs_torch", transformers' step timed
      in the same interleaved rounds (with --dtype bfloat16 it runs under
      torch.autocast("cpu", dtype=torch.bfloat16), its mixed precision);
      --baseline-dtype float32 times the same step in float32, interleaved, and the measured
      line carries "speed_vs_float32" (float32 step time / bfloat16 step time). Each speed-up
      also comes per round ("speed_vs_torch_per_round", "speed_vs_float32_per_round"): the
      ratio within each round, whose spread shows how much the machine's noise moves it.
      --peak-tflops measure times a dense matmul in the compute dtype on one device first and
      uses that as the peak: lines then also carry "matmul_peak_tflops" and "matmul_bound_ms",
      the step's model FLOPs at that rate (no step computing these FLOPs can be faster); the
      torch line gets torch's own matmul rate and bound.

  python -m mim_jax.bench floor --model vit_tiny --batch-size 32 [--vs-torch]
      the step's matmul floor at its own shapes (see mim_jax.bench.floor).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from collections.abc import Sequence

import jax
import numpy as np

from mim_jax import masking
from mim_jax.bench import floor as bench_floor
from mim_jax.bench import plan as bench_plan
from mim_jax.bench.hlo_dots import dot_flop_shares
from mim_jax.bench.model_args import add_model_arguments, model_kwargs
from mim_jax.bench.timing import (
    matmul_peak_tflops,
    medians,
    peak_tflops_arg,
    per_round_ratios,
    time_interleaved,
    time_interleaved_rounds,
)


def mask_step(name: str, batch_size: int, grid: tuple[int, ...], mask_ratio: float):
    """A jitted ``i -> Masks`` for the strategy ``name`` and its compile time in seconds."""
    gen = masking.get(name)
    base_key = jax.random.key(0)

    @jax.jit
    def step(i):
        return gen(
            jax.random.fold_in(base_key, i), batch_size=batch_size, grid=grid, mask_ratio=mask_ratio
        )

    start = time.perf_counter()
    jax.block_until_ready(step(0))
    return step, time.perf_counter() - start


def bench_masks(args: argparse.Namespace) -> list[dict]:
    grid = tuple(int(g) for g in args.grid.split(","))
    step, compile_s = mask_step(args.mask, args.batch_size, grid, args.mask_ratio)
    fns = {"target": step}
    baseline = None if args.baseline == "none" else args.baseline
    if baseline:
        fns["baseline"], _ = mask_step(baseline, args.batch_size, grid, args.mask_ratio)
    seconds = time_interleaved(fns, args.repeats, args.inner)
    result = {
        "what": "masks",
        "mask": args.mask,
        "masks_per_s": args.batch_size / seconds["target"],
        "ms_per_batch": 1e3 * seconds["target"],
        "batch_size": args.batch_size,
        "grid": list(grid),
        "mask_ratio": args.mask_ratio,
        "compile_s": compile_s,
        "devices": jax.device_count(),
        "backend": jax.default_backend(),
    }
    if baseline:
        result.update(
            baseline=baseline,
            baseline_masks_per_s=args.batch_size / seconds["baseline"],
            speed_vs_baseline=seconds["baseline"] / seconds["target"],
        )
    return [result]


def train_step_runner(args: argparse.Namespace, mask: str, dtype: str | None = None):
    """Builds and compiles the train step for ``mask`` in ``dtype`` (default ``args.dtype``);
    returns (run, info, model config) for timing.

    ``run(i)`` performs one step (the state is carried between calls); ``info`` holds the
    compile time, the compiled memory estimate and the analytic FLOPs per step.
    """
    from mim_jax import models
    from mim_jax.core.optimizer import OptimizerConfig, make_optimizer
    from mim_jax.core.sharding import make_mesh
    from mim_jax.masking import MaskSpec
    from mim_jax.train.step import compile_train_step

    kwargs = {**model_kwargs(args), "dtype": dtype or args.dtype}
    model = models.mae_model(args.model, **kwargs, pred_fraction=args.pred_fraction, rngs=0)
    mesh = make_mesh(args.data, args.fsdp, args.tensor)
    tx, schedule = make_optimizer(OptimizerConfig(learning_rate=1.5e-4, total_steps=10_000))
    compiled = compile_train_step(
        model, tx, schedule, mesh, MaskSpec(mask, args.mask_ratio), args.batch_size
    )
    images = np.random.default_rng(0).random(
        (args.batch_size, *model.config.tokens.input_shape), np.float32
    )
    batch = {"image": jax.device_put(images, compiled.batch_sharding)}
    key = jax.random.key(0)
    start = time.perf_counter()
    executable = compiled.step.lower(compiled.state, batch, key).compile()
    compile_s = time.perf_counter() - start
    memory = executable.memory_analysis()
    peak = None
    if memory is not None:
        peak = (
            memory.argument_size_in_bytes
            + memory.output_size_in_bytes
            + memory.temp_size_in_bytes
            - memory.alias_size_in_bytes
        )
    holder = {"state": compiled.state}

    def run(_):
        holder["state"], metrics = executable(holder["state"], batch, key)
        return metrics

    jax.block_until_ready(run(0))  # first execution (allocations) untimed
    n = model.config.tokens.num_patches
    k = masking.num_visible(n, args.mask_ratio)
    # The step decodes only the masked patches in the decoder's last block (masked_only).
    decoded = n - k if model.config.decoder.kind == "mae" else None
    flops = models.mae_train_flops(model.config, k, decoded, batch_size=args.batch_size)
    params = sum(x.size for x in jax.tree.leaves(compiled.state.params))
    info = {
        "compile_s": compile_s,
        "peak_memory_bytes": peak,
        "flops": flops,
        "params": params,
        "dot_flop_shares": dot_flop_shares(executable.as_text()),
    }
    return run, info, model.config


def bench_train_step(args: argparse.Namespace) -> list[dict]:
    # (mask, dtype) of every step timed; the first is the measured one, the others its baselines.
    steps = [(args.mask, args.dtype)]
    if args.baseline_mask not in ("none", args.mask):
        steps.append((args.baseline_mask, args.dtype))
    if args.baseline_dtype not in ("none", args.dtype):
        steps.append((args.mask, args.baseline_dtype))
    runners = {s: train_step_runner(args, *s) for s in steps}
    peak = args.peak_tflops
    if peak == "measure":
        peak = matmul_peak_tflops(args.dtype)
    fns = {f"{m} {d}": runner for (m, d), (runner, _, _) in runners.items()}
    with contextlib.ExitStack() as stack:
        if args.vs_torch:  # timed in the same rounds as the JAX steps
            torch_step = stack.enter_context(torch_reference_step(args, runners[steps[0]][2]))
            fns["torch"] = lambda _: torch_step.run()
        rounds = time_interleaved_rounds(fns, args.repeats, args.inner)
        timed = medians(rounds)
        torch_peak = None
        if args.vs_torch and args.peak_tflops == "measure":
            from mim_jax.bench.torch_ref import torch_matmul_peak_tflops

            torch_peak = torch_matmul_peak_tflops(args.dtype)  # with torch's step threads
    seconds = {(m, d): timed[f"{m} {d}"] for m, d in steps}
    results = []
    for mask, dtype in steps:
        _, info, _ = runners[mask, dtype]
        step_s = seconds[mask, dtype]
        tflops = info["flops"] / step_s / 1e12
        result = {
            "what": "train_step",
            "model": args.model,
            "mask": mask,
            "image_size": args.image_size,
            "patch_size": args.patch_size,
            "batch_size": args.batch_size,
            "decoder": args.decoder,
            "dtype": dtype,
            "img_per_s": args.batch_size / step_s,
            "step_ms": 1e3 * step_s,
            "compile_s": info["compile_s"],
            "peak_memory_bytes": info["peak_memory_bytes"],
            "params": info["params"],
            "model_flops_per_step": info["flops"],
            "model_tflops_per_s": tflops,
            # What the compiled products really run in (a backend may upcast bfloat16 ones).
            "dot_flop_shares": {k: round(v, 4) for k, v in info["dot_flop_shares"].items()},
            "devices": jax.device_count(),
            "mesh": {"data": args.data, "fsdp": args.fsdp, "tensor": args.tensor},
            "backend": jax.default_backend(),
        }
        if peak and dtype == args.dtype:  # the measured peak is the compute dtype's
            result["mfu"] = tflops / (peak * jax.device_count())
            if args.peak_tflops == "measure":
                result["matmul_peak_tflops"] = peak
                result["matmul_bound_ms"] = info["flops"] / (peak * jax.device_count()) / 1e9
        if mask != args.mask:
            result["baseline_for"] = args.mask
            results[0]["step_time_vs_baseline"] = seconds[steps[0]] / step_s
        elif dtype != args.dtype:
            result["baseline_for"] = f"{args.mask} in {args.dtype}"
            results[0][f"speed_vs_{dtype}"] = step_s / seconds[steps[0]]
            results[0][f"speed_vs_{dtype}_per_round"] = per_round_ratios(
                rounds[f"{mask} {dtype}"], rounds[f"{args.mask} {args.dtype}"]
            )
        results.append(result)
    if args.vs_torch:
        from mim_jax.bench.torch_ref import step_result

        result = step_result(torch_step, timed["torch"], args.repeats)
        if torch_peak is not None:
            result["matmul_peak_tflops"] = torch_peak
            result["matmul_bound_ms"] = results[0]["model_flops_per_step"] / (torch_peak * 1e9)
        results[0]["speed_vs_torch"] = results[0]["img_per_s"] / result["img_per_s"]
        results[0]["speed_vs_torch_per_round"] = per_round_ratios(
            rounds["torch"], rounds[f"{args.mask} {args.dtype}"]
        )
        results.append(result)
    return results


def torch_reference_step(args: argparse.Namespace, config):
    """transformers' ViTMAEForPreTraining with the JAX model's configuration (a context manager
    yielding a :class:`~mim_jax.bench.torch_ref.TorchStep`). ``--dtype bfloat16`` runs its
    forward pass under ``torch.autocast`` (bfloat16)."""
    from mim_jax.bench.torch_ref import torch_mae_step

    enc, dec = config.encoder, config.decoder
    return torch_mae_step(
        width=enc.width,
        depth=enc.depth,
        num_heads=enc.num_heads,
        mlp_dim=enc.mlp_dim,
        decoder_width=dec.width,
        decoder_depth=dec.depth,
        decoder_num_heads=dec.num_heads,
        decoder_mlp_dim=dec.mlp_dim,
        image_size=args.image_size,
        patch_size=args.patch_size,
        batch_size=args.batch_size,
        mask_ratio=args.mask_ratio,
        norm_pix_loss=config.norm_pix_loss,
        dtype=args.dtype,
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m mim_jax.bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,  # keep the examples' lines
    )
    sub = parser.add_subparsers(dest="command", required=True)
    masks = sub.add_parser("masks", help="mask generation throughput, jit warm, on device")
    masks.add_argument("--mask", default="random", help="registry name or colour name")
    masks.add_argument(
        "--grid", default="14,14", help="comma-separated grid, e.g. 14,14 or 8,14,14"
    )
    masks.add_argument("--batch-size", type=int, default=4096)
    masks.add_argument("--mask-ratio", type=float, default=0.75)
    masks.add_argument("--baseline", default="random", help="strategy timed alongside, or none")
    masks.add_argument("--repeats", type=int, default=15, help="timed rounds (median reported)")
    masks.add_argument("--inner", type=int, default=3, help="calls per timed round")
    step = sub.add_parser("train-step", help="MAE train step throughput, FLOP/s and MFU")
    add_model_arguments(step, default_model="vit_tiny")
    step.add_argument("--batch-size", type=int, default=32)
    step.add_argument("--mask", default="random", help="registry name or colour name")
    step.add_argument("--mask-ratio", type=float, default=0.75)
    step.add_argument(
        "--baseline-mask", default="random", help="mask timed alongside (same model), or none"
    )
    step.add_argument(
        "--baseline-dtype",
        default="none",
        help="compute dtype timed alongside (same mask), e.g. float32 with --dtype bfloat16; "
        "the measured line then carries speed_vs_<dtype>",
    )
    step.add_argument("--pred-fraction", type=float, default=1.0, help="CrossMAE query share")
    step.add_argument("--data", type=int, default=-1, help="mesh data axis (-1: all devices)")
    step.add_argument("--fsdp", type=int, default=1)
    step.add_argument("--tensor", type=int, default=1)
    step.add_argument("--repeats", type=int, default=10, help="timed rounds (median reported)")
    step.add_argument("--inner", type=int, default=1, help="steps per timed round")
    step.add_argument(
        "--peak-tflops",
        type=peak_tflops_arg,
        default=None,
        help="per-device peak TFLOP/s for MFU, or 'measure' (time a dense matmul here)",
    )
    step.add_argument("--vs-torch", action="store_true", help="also time transformers' ViTMAE")
    bench_plan.add_parser(sub)
    bench_floor.add_parser(sub)
    args, rest = parser.parse_known_args(argv)
    overrides = [r for r in rest if r.startswith("--config.")]
    if len(overrides) != len(rest) or (overrides and not getattr(args, "config", None)):
        parser.error(
            f"unrecognised arguments: {' '.join(rest)} (--config.field=value overrides follow "
            "`plan --config FILE`)"
        )
    args.config_overrides = [r[2:] for r in overrides]
    commands = {
        "masks": bench_masks,
        "train-step": bench_train_step,
        "plan": bench_plan.run_plan,
        "floor": bench_floor.run_floor,
    }
    try:
        results = commands[args.command](args)
    except ValueError as err:
        parser.exit(2, f"error: {err}\n")
    for result in results:
        print(json.dumps(result), flush=True)
