"""Compile-ahead capacity check: will this model, mesh and batch fit the accelerators?

    python -m mim_jax.bench plan --model vit_huge --mesh fsdp=64 --batch-size 4096 \\
        --device-memory-gb 95

lowers and compiles the real train step (model, AdamW, masks, shardings from the rules table)
for a mesh of virtual CPU devices of the requested shape, without allocating any parameter
(everything is abstract), and prints one JSON line::

    {"what": "plan", "model": ..., "mesh": {"data": 1, "fsdp": 64, "tensor": 1},
     "devices": 64, "batch_size": 4096, "params": ...,
     "param_bytes_per_device": ..., "opt_state_bytes_per_device": ...,
     "constants_bytes_per_device": ..., "batch_bytes_per_device": ...,   # from sharded shapes
     "argument_bytes_per_device": ..., "output_bytes_per_device": ...,
     "alias_bytes_per_device": ...,
     "temp_bytes_per_device": ...,        # activations and scratch, from memory_analysis()
     "peak_bytes_per_device": ...,        # argument + output - alias + temp
     "lower_s": ..., "compile_s": ..., "device_memory_gb": ..., "fits": true/false}

The device count is fixed when JAX starts, so the command re-runs itself in a child process
with ``--xla_force_host_platform_device_count`` set unless this process already has exactly that
many CPU devices (or has not started JAX yet). The figures are XLA:CPU's: parameter and
optimizer-state bytes are exact for any backend (they follow from the shardings); temporary
(activation) bytes come from the CPU compiler's buffer assignment, a guide to what TPU/GPU
compilers need (their fusion and rematerialisation differ), so keep a margin (``--headroom``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from typing import Any

from mim_jax.bench.model_args import add_model_arguments, model_kwargs

CHILD_ENV = "MIM_JAX_PLAN_CHILD"
MESH_AXES = ("data", "fsdp", "tensor")


def parse_mesh(text: str) -> dict[str, int]:
    """``"fsdp=64"`` or ``"data=4,fsdp=16"`` -> ``{"data": 1, "fsdp": 64, "tensor": 1}``.

    Raises:
      ValueError: an unknown axis or a size that is not a positive int.
    """
    sizes = dict.fromkeys(MESH_AXES, 1)
    for item in filter(None, (t.strip() for t in text.split(","))):
        axis, _, value = item.partition("=")
        axis = axis.strip()
        if axis not in sizes or not value.strip().isdigit() or int(value) < 1:
            raise ValueError(
                f"--mesh item {item!r}: expected AXIS=SIZE with AXIS one of "
                f"{', '.join(MESH_AXES)} and SIZE a positive int, e.g. --mesh data=2,fsdp=32."
            )
        sizes[axis] = int(value)
    return sizes


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Registers ``plan`` on ``python -m mim_jax.bench``'s subcommands."""
    plan = sub.add_parser(
        "plan", help="compile-ahead memory plan for a model on a mesh of virtual devices"
    )
    plan.add_argument(
        "--config",
        help="plan a training config (configs/X.py[:args]): its model, mask, batch and "
        "accumulation; --config.field=value overrides follow it as in training. Without it, "
        "the model flags below describe the model.",
    )
    add_model_arguments(plan, default_model="vit_base")
    plan.add_argument(
        "--encoder", default="", help="encoder field overrides, e.g. depth=24,width=1024"
    )
    plan.add_argument("--mesh", default="fsdp=8", help="e.g. fsdp=64 or data=4,fsdp=16")
    plan.add_argument("--batch-size", type=int, default=256, help="global batch")
    plan.add_argument("--accum-steps", type=int, default=1)
    plan.add_argument("--mask", default="random", help="registry name or colour name")
    plan.add_argument("--mask-ratio", type=float, default=0.75)
    plan.add_argument("--remat", action="store_true", help="rematerialise encoder blocks")
    plan.add_argument(
        "--device-memory-gb", type=float, default=None, help="per-device memory (GiB) to check"
    )
    plan.add_argument(
        "--headroom", type=float, default=0.9, help="usable share of --device-memory-gb"
    )
    plan.add_argument(
        "--xla-opt-level",
        type=int,
        default=0,
        help="XLA:CPU backend optimisation level of the child (0: fastest compile; the buffer "
        "plan does not depend on it)",
    )
    return plan


def run_plan(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Plans in this process when it can have the right device count, else in a child."""
    import jax
    from jax._src import xla_bridge

    mesh = parse_mesh(args.mesh)
    devices = math.prod(mesh.values())
    if not xla_bridge.backends_are_initialized() and os.environ.get(CHILD_ENV) != "1":
        return _in_child(args, devices)
    if jax.default_backend() != "cpu" or jax.device_count() != devices:
        if os.environ.get(CHILD_ENV) == "1":
            raise ValueError(
                f"the planning process has {jax.device_count()} {jax.default_backend()} devices, "
                f"not {devices} CPU devices; is XLA_FLAGS overridden?"
            )
        return _in_child(args, devices)
    return [plan(args, mesh)]


def _in_child(args: argparse.Namespace, devices: int) -> list[dict[str, Any]]:
    """Re-runs the plan in a fresh interpreter with ``devices`` virtual CPU devices."""
    flags = [
        f
        for f in os.environ.get("XLA_FLAGS", "").split()
        if not f.startswith(
            ("--xla_force_host_platform_device_count", "--xla_backend_optimization_level")
        )
    ]
    flags += [
        f"--xla_force_host_platform_device_count={devices}",
        f"--xla_backend_optimization_level={args.xla_opt_level}",
    ]
    env = {**os.environ, "XLA_FLAGS": " ".join(flags), "JAX_PLATFORMS": "cpu", CHILD_ENV: "1"}
    argv = [sys.executable, "-m", "mim_jax.bench", "plan", *_as_argv(args)]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        message = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ""
        raise ValueError(f"planning subprocess failed ({done.returncode}): {message}")
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def _as_argv(args: argparse.Namespace) -> list[str]:
    argv = []
    for name, value in vars(args).items():
        if name == "config_overrides":
            argv += list(value or ())
            continue
        if name == "command" or value is None or value is False:
            continue
        flag = "--" + name.replace("_", "-")
        argv += [flag] if value is True else [flag, str(value)]
    return argv


def _shard_bytes(shape_dtype, sharding) -> int:
    shard = sharding.shard_shape(shape_dtype.shape)
    return math.prod(shard) * shape_dtype.dtype.itemsize


def plan(args: argparse.Namespace, mesh_sizes: dict[str, int]) -> dict[str, Any]:
    """Lowers and compiles the train step on abstract inputs; the memory plan as a dict."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from mim_jax import masking, models
    from mim_jax.core.optimizer import OptimizerConfig, make_optimizer
    from mim_jax.core.sharding import batch_sharding, make_mesh
    from mim_jax.core.state import state_layout
    from mim_jax.train.step import build_train_step

    config = _load_config(args) if args.config else None
    mesh = make_mesh(mesh_sizes["data"], mesh_sizes["fsdp"], mesh_sizes["tensor"])
    data_ways = mesh_sizes["data"] * mesh_sizes["fsdp"]
    if args.batch_size % args.accum_steps or (args.batch_size // args.accum_steps) % data_ways:
        raise ValueError(
            f"--batch-size {args.batch_size} must split into --accum-steps {args.accum_steps} "
            f"micro-batches that divide over data x fsdp = {data_ways} devices."
        )
    if config is not None:
        kwargs = models.mae_kwargs(config)
        spec = masking.mask_spec_from_config(config)
    else:
        kwargs = dict(
            name=args.model,
            **model_kwargs(args),
            remat=args.remat,
            encoder_overrides=parse_overrides(args.encoder) or None,
        )
        spec = masking.MaskSpec(args.mask, args.mask_ratio)
    abstract_model = nnx.eval_shape(lambda: models.mae_model(**kwargs, rngs=0))
    tx, schedule = make_optimizer(OptimizerConfig(learning_rate=1.5e-4, total_steps=10_000))
    layout = state_layout(abstract_model, tx, mesh)  # exactly as training places it
    state, state_sh = layout.abstract, layout.shardings
    params, constants, opt_state = state.params, state.constants, state.opt_state
    params_sh, constants_sh, opt_sh = state_sh.params, state_sh.constants, state_sh.opt_state
    config_ = abstract_model.config
    grid = config_.tokens.grid
    images = jax.ShapeDtypeStruct((args.batch_size, *config_.tokens.input_shape), jnp.float32)
    image_sh = batch_sharding(mesh, len(grid) + 2)
    step_fn = build_train_step(layout.graphdef, tx, schedule, spec, grid, args.accum_steps, mesh)
    jitted = layout.jit(step_fn, {"image": image_sh})
    key = jax.eval_shape(lambda: jax.random.key(0))
    start = time.perf_counter()
    lowered = jitted.lower(state, {"image": images}, key)
    lower_s = time.perf_counter() - start
    start = time.perf_counter()
    executable = lowered.compile()
    compile_s = time.perf_counter() - start

    def per_device(tree, shardings) -> int:
        """Bytes one device holds of ``tree`` laid out by ``shardings`` (a prefix tree)."""
        sizes: list[int] = []
        jax.tree.map(
            lambda s, x: sizes.extend(_shard_bytes(leaf, s) for leaf in jax.tree.leaves(x)),
            shardings,
            tree,
        )
        return sum(sizes)

    result: dict[str, Any] = {
        "what": "plan",
        "config": args.config,
        "model": kwargs["name"],
        "image_size": kwargs.get("image_size"),
        "patch_size": kwargs.get("patch_size"),
        "decoder": kwargs.get("decoder"),
        "dtype": kwargs.get("dtype"),
        "remat": bool(kwargs.get("remat")),
        "mask": spec.name,
        "mask_ratio": spec.ratio,
        "mesh": mesh_sizes,
        "devices": jax.device_count(),
        "batch_size": args.batch_size,
        "accum_steps": args.accum_steps,
        "params": sum(math.prod(x.shape) for x in jax.tree.leaves(params)),
        "param_bytes_per_device": per_device(params, params_sh),
        "opt_state_bytes_per_device": per_device(opt_state, opt_sh),
        "constants_bytes_per_device": per_device(constants, constants_sh),
        "batch_bytes_per_device": _shard_bytes(images, image_sh),
    }
    memory = executable.memory_analysis()
    if memory is not None:
        result.update(
            argument_bytes_per_device=memory.argument_size_in_bytes,
            output_bytes_per_device=memory.output_size_in_bytes,
            alias_bytes_per_device=memory.alias_size_in_bytes,
            temp_bytes_per_device=memory.temp_size_in_bytes,
            code_bytes=memory.generated_code_size_in_bytes,
            peak_bytes_per_device=(
                memory.argument_size_in_bytes
                + memory.output_size_in_bytes
                - memory.alias_size_in_bytes
                + memory.temp_size_in_bytes
            ),
        )
    result.update(lower_s=lower_s, compile_s=compile_s, backend="cpu (virtual devices)")
    if args.device_memory_gb is not None:
        result.update(decide(result, args.device_memory_gb, args.headroom))
    return result


def _load_config(args: argparse.Namespace):
    """The training config named by ``--config`` with its ``--config.*`` overrides; the batch
    and accumulation flags take the config's values."""
    from mim_jax import configs

    config = configs.load(args.config, list(getattr(args, "config_overrides", None) or ()))
    args.batch_size, args.accum_steps = int(config.batch_size), int(config.accum_steps)
    return config


def decide(result: dict[str, Any], device_memory_gb: float, headroom: float) -> dict[str, Any]:
    """``{"device_memory_gb", "headroom", "fits"}``: whether the planned per-device peak fits
    ``headroom`` of ``device_memory_gb`` GiB (None when XLA gave no memory analysis)."""
    if device_memory_gb <= 0 or not 0 < headroom <= 1:
        raise ValueError(
            f"--device-memory-gb must be > 0 and --headroom in (0, 1]; got {device_memory_gb}, "
            f"{headroom}."
        )
    peak = result.get("peak_bytes_per_device")
    budget = device_memory_gb * 2**30 * headroom
    return {
        "device_memory_gb": device_memory_gb,
        "headroom": headroom,
        "fits": None if peak is None else bool(peak <= budget),
    }


def parse_overrides(text: str) -> dict[str, int]:
    """``"depth=2,width=64"`` -> ``{"depth": 2, "width": 64}`` (ViTConfig integer fields)."""
    out = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        key, _, value = item.partition("=")
        if not value.strip().lstrip("-").isdigit():
            raise ValueError(f"--encoder item {item!r}: expected FIELD=INT, e.g. depth=24.")
        out[key.strip()] = int(value)
    return out
