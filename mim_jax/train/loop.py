"""The training loop: config -> model, data, compiled step -> checkpointed, resumable run.

``run(config, workdir)`` (and ``python -m mim_jax.train``) trains for ``total_steps`` and leaves in
``workdir``: ``checkpoints/<step>/`` (Orbax: state, iterator state, config), ``metrics.jsonl``,
``tensorboard/`` and ``reconstructions/step_<n>.png``. Running it again on the same workdir
resumes from the last complete checkpoint at the exact step, with the same data order and the same
masks an uninterrupted run would have used: the iterator state is restored and masks come from
``fold_in(key(seed), step)``. SIGTERM (a preemption) saves a checkpoint at the next step boundary
and returns cleanly. A NaN or infinite loss stops the run with a message; the bad state is not
saved, so the last good checkpoint stays the latest.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import json
import math
import os
import signal
import time
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mim_jax import configs, data, distributed, models
from mim_jax.evaluate.periodic import METRIC as EVAL_METRIC
from mim_jax.evaluate.periodic import make_periodic_evaluator
from mim_jax.train import paths, wandb_log
from mim_jax.train.checkpoint import CheckpointStore
from mim_jax.train.metrics import MetricsWriter
from mim_jax.train.optimizer import make_optimizer
from mim_jax.train.reconstruction import (
    reconstruction_fn,
    reconstruction_title,
    save_reconstructions,
)
from mim_jax.train.sharding import make_mesh
from mim_jax.train.step import CompiledStep, MaskSpec, compile_train_step


@dataclasses.dataclass
class RunResult:
    """How a run ended: the last step reached, its loss and why it stopped."""

    step: int
    loss: float | None
    stopped: str  # "finished" | "preempted" | "paused" (max_steps) | "nan"
    workdir: str


PREFETCH = 2  # batches placed on device ahead of the step that consumes them
# One jitted reconstruction per architecture, so a sweep's runs share its compilation.
_recon_fn = functools.lru_cache(maxsize=4)(reconstruction_fn)


def prefetch_to_device(iterator, sharding, size: int = PREFETCH):
    """Yields ``(local_images, global_images, data_state)`` with ``size`` batches in flight.

    Each batch is put on the devices (``jax.make_array_from_process_local_data``, asynchronous)
    ``size`` steps before it is used, so host-to-device copies overlap the running step.
    ``data_state`` is the iterator's state right after that batch was read: the state to
    checkpoint once the batch has been trained on (the iterator itself is ``size`` batches ahead).
    """
    queue: collections.deque = collections.deque()
    while True:
        while len(queue) < size:
            local = next(iterator)["image"]
            placed = jax.make_array_from_process_local_data(sharding, local)
            queue.append((local, placed, iterator.get_state()))
        yield queue.popleft()


class _Preemption:
    """Turns SIGTERM into a flag the loop checks between steps (main thread only)."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def __enter__(self) -> _Preemption:
        try:
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # not the main thread (e.g. a notebook worker): no handler
            self._previous = None
        return self

    def _handle(self, signum, frame) -> None:
        self.requested = True

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


def build_source(config) -> Any:
    """The training data source named by ``config.data`` at the model's image size."""
    source = config.data.source
    size = config.model.image_size
    channels = config.model.channels
    if source == "digits":
        return data.DigitsSource(image_size=_side(size), channels=channels, split=config.data.split)
    if source == "synthetic":
        return data.SyntheticSource(
            num_records=config.data.num_examples or 1024, image_size=_side(size), channels=channels
        )
    if source == "folder":
        return data.FolderSource(config.data.path, channels=channels)
    if source == "tfds":
        return data.TfdsSource(config.data.name, split=config.data.split)
    raise ValueError(
        f"config.data.source={source!r} is not one of digits, folder, tfds, synthetic."
    )


# Fields a compiled step does not depend on: runs differing only in these share one step.
NOT_COMPILED = ("mask", "mask_options", "seed", "log_every", "checkpoint_every",
                "keep_checkpoints", "recon_every", "eval_every",
                "log_all_processes", "wandb")  # fmt: skip


def step_signature(config) -> str:
    """The config without :data:`NOT_COMPILED` fields (and with mask_ratio): equal signatures
    can share one compiled step (mask strategies of one ratio through ``lax.switch``)."""
    fields = {k: v for k, v in config.to_dict().items() if k not in NOT_COMPILED}
    return json.dumps(fields, sort_keys=True, default=str)


def compile_step(
    config, mask_specs: Sequence[MaskSpec] | None = None, num_examples: int | None = None
) -> CompiledStep:
    """Builds the model, optimizer and mesh of ``config`` and compiles its train step.

    Args:
      config: a validated run config.
      mask_specs: compile one step for several mask strategies of ``config.mask_ratio`` (a
        sweep's runs then share it through ``run(..., compiled=...)``); None: just the config's.
      num_examples: the training set's size (default: the size of the config's source).
    """
    if num_examples is None:
        num_examples = len(build_source(config))
    steps_per_epoch = configs.steps_per_epoch(config, num_examples)
    opt_config = configs.to_optimizer_config(config, steps_per_epoch)
    mesh = make_mesh(config.mesh.data, config.mesh.fsdp, config.mesh.tensor)
    model = models.mae_model(rngs=config.seed, **configs.to_model_kwargs(config))
    tx, schedule = make_optimizer(opt_config)
    masks = configs.to_mask_spec(config) if mask_specs is None else tuple(mask_specs)
    compiled = compile_train_step(
        model, tx, schedule, mesh, masks, config.batch_size, config.accum_steps
    )
    compiled.signature = step_signature(config)
    return compiled


def run(
    config, workdir: str, max_steps: int | None = None, compiled: CompiledStep | None = None
) -> RunResult:
    """Trains ``config`` (a ConfigDict from :func:`mim_jax.configs.load`) in ``workdir``.

    Args:
      config: the run's config.
      workdir: where checkpoints, metrics and pictures go; an existing checkpoint is resumed.
      max_steps: stop (with a checkpoint) after this many steps in this invocation, e.g. to fit
        a job's time limit; rerunning continues. None runs to ``total_steps``.
      compiled: a step from :func:`compile_step` for several masks, shared by runs whose configs
        differ only in :data:`NOT_COMPILED` fields (no recompilation); None compiles one here.
    """
    configs.validate(config, num_devices=jax.device_count())
    workdir = os.fspath(workdir)  # a path or a URL: every file goes through train.paths
    paths.makedirs(workdir)
    process_count, process_index = jax.process_count(), jax.process_index()

    source = build_source(config)
    num_examples = len(source)
    steps_per_epoch = configs.steps_per_epoch(config, num_examples)
    total_steps = configs.to_optimizer_config(config, steps_per_epoch).total_steps
    mask_spec = configs.to_mask_spec(config)
    if compiled is None:
        compiled = compile_step(config, num_examples=num_examples)
        initial_state = compiled.state
    else:
        if getattr(compiled, "signature", None) != step_signature(config):
            raise ValueError(
                "run(compiled=...): the step was compiled for a config that differs from this one "
                f"in more than {', '.join(NOT_COMPILED)}; compile it with compile_step(config)."
            )
        compiled = compiled.for_mask(mask_spec)
        initial_state = compiled.init_state(
            models.mae_model(rngs=config.seed, **configs.to_model_kwargs(config))
        )
    model_config = models.mae_config(**configs.to_model_kwargs(config))
    iterator = data.make_pipeline(
        source,
        batch_size=config.batch_size // process_count,
        image_size=_side(config.model.image_size),
        seed=config.seed,
        process_index=process_index,
        process_count=process_count,
        scale=tuple(config.data.get("crop_scale", (0.2, 1.0))),
    )

    evaluator = make_periodic_evaluator(  # None when config.eval_every == 0
        config, compiled.graphdef, lambda text: print(text, flush=True)
    )
    store = CheckpointStore(
        paths.join(workdir, "checkpoints"),
        keep=config.keep_checkpoints,
        **(dict(best_metric=EVAL_METRIC, best_mode="max") if evaluator else {}),
    )
    # Process 0 writes the run's metrics; others keep their own copy (they must agree).
    own_dir = workdir if process_index == 0 else paths.join(workdir, f"process_{process_index}")
    progress = process_index == 0 or bool(config.get("log_all_processes", False))
    wandb_run = wandb_log.start(config, workdir) if process_index == 0 else None
    writer = MetricsWriter(
        own_dir, total_steps, config.batch_size, progress=progress, wandb_run=wandb_run
    )
    if process_index == 0:  # the resolved config, readable, at every start (resumes too)
        paths.write_text(paths.join(workdir, "config.json"), configs.to_json(config))
    if process_count > 1:
        writer.message(
            f"process {process_index}/{process_count} reads data shard {process_index} of "
            f"{process_count} ({num_examples // process_count} of {num_examples} records)"
        )
    state = initial_state
    if store.latest_step() is not None:
        restored = store.restore(state)
        state = restored.state
        if restored.data_state is not None:
            iterator.set_state(_own_data_state(restored.data_state, process_index))
        writer.message(f"resumed from {store.directory} at step {restored.step}")
    else:
        writer.message(
            f"training {config.model.name} with {config.mask} masks for {total_steps} steps "
            f"({num_examples} images, {steps_per_epoch} steps/epoch) in {workdir}"
        )
    key = jax.random.key(config.seed)
    recon_args = (_recon_fn(compiled.graphdef), model_config)  # compiled on first use
    step = int(state.step)
    recon_batch = None
    last_loss: float | None = None
    stopped = "finished"

    batches = prefetch_to_device(iterator, compiled.batch_sharding)
    data_state = iterator.get_state()

    def save(at_step: int, metrics: dict[str, float] | None = None) -> None:
        store.save(
            at_step,
            state,
            data_state=_all_data_states(data_state, process_count),
            config=config.to_dict(),
            metrics=metrics,
        )

    first_step = step
    with _Preemption() as preemption:
        while step < total_steps:
            local, images, data_state = next(batches)
            if recon_batch is None:
                recon_batch = local[:8]
            if step == first_step:
                compiling = _needs_compiling(compiled)
                started = time.perf_counter()
                if compiling:
                    writer.message("compiling the train step ...", progress=True)
            state, metrics = compiled.step(state, {"image": images}, key)
            step += 1
            if step == first_step + 1:  # timing starts after the step compiled
                jax.block_until_ready(metrics)
                seconds = time.perf_counter() - started
                what = "compiled the train step and ran" if compiling else "ran"
                writer.message(f"{what} step {step} in {seconds:.1f} s", progress=True)
                writer.start(step)
            due_log = step % config.log_every == 0 or step == total_steps
            pause = max_steps is not None and step - first_step >= max_steps
            due_save = step % config.checkpoint_every == 0 or step == total_steps or pause
            if process_count > 1:  # stop together: a SIGTERM seen by any process, at a log step
                preempted = (due_log or due_save) and distributed.any_process(preemption.requested)
            else:
                preempted = preemption.requested
            due_eval = evaluator is not None and (
                step % config.eval_every == 0 or due_save or preempted
            )
            if due_log or due_save or preempted:
                values = {k: float(v) for k, v in jax.device_get(metrics).items()}
                if not math.isfinite(values["loss"]):
                    writer.message(_nan_message(step, values["loss"], store))
                    stopped = "nan"
                    break
                last_loss = values["loss"]
                if due_log:
                    writer.write(step, values)
                evaluated = evaluator.log(state, step, writer) if due_eval else {}
                due_eval = False
                if due_save or preempted:
                    save(step, {"loss": values["loss"], **evaluated})
            if due_eval:  # kNN accuracy in metrics.jsonl; the best checkpoint is kept by it
                evaluator.log(state, step, writer)
            if config.recon_every and step % config.recon_every == 0:
                _write_reconstructions(
                    *recon_args, state, recon_batch, mask_spec, key, step, workdir, last_loss
                )
                writer.start(step)  # img/s measures training, not the pictures
            if preempted:
                writer.message(f"SIGTERM: saved a checkpoint at step {step}; exiting cleanly")
                stopped = "preempted"
                break
            if pause and step < total_steps:
                writer.message(f"paused after {max_steps} steps at step {step}; rerun to resume")
                stopped = "paused"
                break
    store.wait()
    store.close()
    skipped = getattr(source, "skipped", None)
    if skipped:
        writer.message(
            f"skipped {len(skipped)} unreadable image(s), each replaced by the next readable one: "
            + "; ".join(f"{path} ({error})" for path, error in list(skipped.items())[:10])
        )
    if stopped == "finished":
        _write_reconstructions(
            *recon_args, state, recon_batch, mask_spec, key, step, workdir, last_loss
        )
        loss_text = "no new steps" if last_loss is None else f"loss {last_loss:.4f}"
        writer.message(f"done: step {step}, {loss_text}; outputs in {workdir}")
    writer.close()
    return RunResult(step=step, loss=last_loss, stopped=stopped, workdir=workdir)


def _needs_compiling(compiled: CompiledStep) -> bool:
    """Whether the step's first call compiles (False when a sweep's earlier run compiled it)."""
    cache_size = getattr(compiled.jitted, "_cache_size", None)
    return cache_size is None or cache_size() == 0


def _all_data_states(data_state, process_count: int):
    """What to checkpoint as the iterator state: this process's, or every process's (each reads
    its own shard, and only process 0 writes the JSON item)."""
    if process_count == 1 or not isinstance(data_state, bytes):
        return data_state
    return {"per_process": distributed.gather_strings(data_state.decode("utf-8"))}


def _own_data_state(data_state, process_index: int):
    """This process's entry of a state saved by :func:`_all_data_states`."""
    if isinstance(data_state, dict) and "per_process" in data_state:
        states = data_state["per_process"]
        if process_index >= len(states):
            raise ValueError(
                f"the checkpoint holds iterator states of {len(states)} processes, this is "
                f"process {process_index}: resume with the same number of processes."
            )
        return states[process_index].encode("utf-8")
    return data_state


def _side(image_size) -> int:
    return image_size if isinstance(image_size, int) else int(image_size[0])


def _nan_message(step: int, loss: float, store: CheckpointStore) -> str:
    last = store.latest_step()
    where = f"the last good checkpoint is step {last}" if last is not None else "no checkpoint"
    return (
        f"loss is {loss} at step {step}: stopping. Nothing was saved from this state; {where}. "
        f"Lower the learning rate (config.lr / config.blr) or set config.clip_norm."
    )


def _write_reconstructions(
    recon_fn, model_config, state, images, mask_spec, key, step, workdir, loss=None
):
    """PNG of (original | masked | reconstruction) for a fixed batch, MAE decoder only; the title
    names the mask, its ratio, the step and the last logged training loss."""
    if images is None or model_config.decoder.kind != "mae":
        return
    masks = mask_spec.generator()(
        jax.random.fold_in(key, 2**32 - 1),  # a fixed key no training step uses
        batch_size=len(images),
        grid=model_config.tokens.grid,
        mask_ratio=mask_spec.ratio,
    )
    pictures = recon_fn(state.params, state.constants, jnp.asarray(images), masks)
    if jax.process_index() == 0:
        path = paths.join(workdir, "reconstructions", f"step_{step:06d}.png")
        grid = model_config.tokens.grid
        n = int(np.prod(grid))
        title = reconstruction_title(
            mask_spec.name, mask_spec.ratio, step, loss, "train loss",
            (n - masks.keep.shape[-1], n),
        )  # fmt: skip
        mask = np.asarray(masks.mask).reshape(-1, *grid) if len(grid) == 2 else None
        save_reconstructions(path, *(np.asarray(p) for p in pictures), mask=mask, title=title)
