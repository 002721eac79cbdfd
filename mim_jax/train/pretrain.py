"""MAE pretraining as a job of the core loop: config -> model, data, compiled step -> run.

``run(config, workdir)`` trains for ``total_steps`` through :func:`mim_jax.core.loop.run_job`
(resume, SIGTERM, NaN guard, progress, ``metrics.jsonl``, TensorBoard, Orbax) and adds
``reconstructions/step_<n>.png`` every ``config.recon_every`` steps and at the end. Masks come
from ``fold_in(key(seed), step)`` inside the step, so a resumed run redraws the same masks.

Evaluators are hooks the caller passes (``make_hooks``): the training command adds the periodic
kNN evaluator that ``config.eval_every`` asks for (:mod:`mim_jax.evaluate.periodic`), so this
package never imports ``evaluate``.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mim_jax import configs, data, masking, models
from mim_jax.core import paths
from mim_jax.core.loop import Hook, Job, RunResult, run_job
from mim_jax.core.optimizer import make_optimizer, optimizer_config, steps_per_epoch
from mim_jax.core.reconstruction import (
    reconstruction_fn,
    reconstruction_title,
    save_reconstructions,
)
from mim_jax.core.sharding import make_mesh
from mim_jax.core.state import StateLayout
from mim_jax.train.step import CompiledStep, compile_train_step

# One jitted reconstruction per architecture, so a sweep's runs share its compilation.
_recon_fn = functools.lru_cache(maxsize=4)(reconstruction_fn)
RECON_IMAGES = 8


def build_source(config) -> Any:
    """The training source of a run config (``config.data`` at the model's size and frames)."""
    return data.build_source(
        config.data,
        image_size=config.model.image_size,
        channels=config.model.channels,
        num_frames=config.model.get("num_frames"),
    )


def model_inputs(config, source, count: int) -> np.ndarray:
    """The deterministic model inputs of the source's first ``count`` records: images through
    ``data.eval_transform`` (float32[B, S, S, C]), or a video / audio source's own evaluation
    view (float32[B, T, S, S, 3] clips, float32[B, T, F, 1] spectrograms)."""
    records = [source[i]["image"] for i in range(count)]
    if hasattr(source, "grain_parts"):  # decoded media records are model-ready
        return np.stack(records).astype(np.float32)
    side = data.square_side(config.model.image_size)
    # The whole image (crop fraction 1): the pictures show what the model is trained on.
    return np.stack([data.eval_transform(np.asarray(r), side, crop_fraction=1.0) for r in records])


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
    config, mask_specs: Sequence[masking.MaskSpec] | None = None, num_examples: int | None = None
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
    opt_config = optimizer_config(config, steps_per_epoch(config, num_examples))
    mesh = make_mesh(config.mesh.data, config.mesh.fsdp, config.mesh.tensor)
    model = models.mae_model(rngs=config.seed, **models.mae_kwargs(config))
    tx, schedule = make_optimizer(opt_config)
    masks = masking.mask_spec_from_config(config) if mask_specs is None else tuple(mask_specs)
    compiled = compile_train_step(
        model, tx, schedule, mesh, masks, config.batch_size, config.accum_steps
    )
    compiled.signature = step_signature(config)
    return compiled


def reconstruction_hook(config, layout: StateLayout, source, workdir: str) -> Hook | None:
    """PNGs of (original | masked | reconstruction) of the source's first images (of a video's
    middle frame), every ``config.recon_every`` steps and at the end (MAE decoder only; None
    otherwise)."""
    model_config = models.mae_config(**models.mae_kwargs(config))
    if model_config.decoder.kind != "mae" or len(model_config.tokens.grid) not in (2, 3):
        return None
    count = min(RECON_IMAGES, len(source))
    images = model_inputs(config, source, count)
    recon = _recon_fn(layout.graphdef)
    spec = masking.mask_spec_from_config(config)
    key = jax.random.fold_in(jax.random.key(config.seed), 2**32 - 1)  # no training step uses it
    masks = spec.generator()(
        key, batch_size=count, grid=model_config.tokens.grid, mask_ratio=spec.ratio
    )

    grid = model_config.tokens.grid
    n = int(np.prod(grid))
    mask = np.asarray(masks.mask).reshape(-1, *grid)
    pixel_mask = np.kron(mask, np.ones(model_config.tokens.patch, bool))[..., None]

    def write(state, step: int) -> None:
        original, masked, recon_images = (
            np.asarray(p) for p in recon(state.params, state.constants, jnp.asarray(images), masks)
        )
        # Masked-patch MSE of the pictured images in input units (the training loss when
        # norm_pix_loss is off), so the title says how good what is shown is.
        squared = np.broadcast_to(pixel_mask, original.shape) * (recon_images - original) ** 2
        mse = float(squared.sum() / (pixel_mask.sum() * original.shape[-1]))
        title = reconstruction_title(
            spec.name, spec.ratio, step, mse, "masked-patch MSE", (n - masks.keep.shape[-1], n)
        )
        shown_mask = mask
        if original.ndim == 5:  # clips [B, T, H, W, C]: the middle frame of each
            middle = original.shape[1] // 2
            original, masked, recon_images = (
                p[:, middle] for p in (original, masked, recon_images)
            )
            shown_mask = mask[:, middle // model_config.tokens.patch[0]]
        if jax.process_index() == 0:
            path = paths.join(workdir, "reconstructions", f"step_{step:06d}.png")
            save_reconstructions(path, original, masked, recon_images, mask=shown_mask, title=title)

    return Hook("reconstructions", write, every=int(config.recon_every or 0), at_finish=True)


def run(
    config,
    workdir: str,
    max_steps: int | None = None,
    compiled: CompiledStep | None = None,
    make_hooks: Callable[[StateLayout], Sequence[Hook]] | None = None,
    best_metric: str | None = None,
    allow_config_change: bool = False,
) -> RunResult:
    """Pretrains ``config`` (a ConfigDict from :func:`mim_jax.configs.load`) in ``workdir``.

    Args:
      config: the run's config.
      workdir: where checkpoints, metrics and pictures go; an existing checkpoint is resumed.
      max_steps: stop (with a checkpoint) after this many steps in this invocation; rerunning
        continues. None runs to ``total_steps``.
      compiled: a step from :func:`compile_step` for several masks, shared by runs whose configs
        differ only in :data:`NOT_COMPILED` fields (no recompilation); None compiles one here.
      make_hooks: extra hooks (evaluators) built from the step's state layout.
      best_metric: keep the best checkpoint by this hook metric (higher is better).
      allow_config_change: resume even when ``config`` differs from the checkpoint's in fields
        not safe to change (:mod:`mim_jax.core.resume`).
    """
    configs.validate(config, num_devices=jax.device_count())
    process_count, process_index = jax.process_count(), jax.process_index()
    source = build_source(config)
    num_examples = len(source)
    per_epoch = steps_per_epoch(config, num_examples)
    total_steps = optimizer_config(config, per_epoch).total_steps
    if compiled is None:
        compiled = compile_step(config, num_examples=num_examples)
        initial_state = compiled.state
    else:
        if getattr(compiled, "signature", None) != step_signature(config):
            raise ValueError(
                "run(compiled=...): the step was compiled for a config that differs from this one "
                f"in more than {', '.join(NOT_COMPILED)}; compile it with compile_step(config)."
            )
        compiled = compiled.for_mask(masking.mask_spec_from_config(config))
        initial_state = compiled.init_state(
            models.mae_model(rngs=config.seed, **models.mae_kwargs(config))
        )
    media = hasattr(source, "grain_parts")  # video/audio records bring their own geometry
    iterator = data.make_pipeline(
        source,
        batch_size=config.batch_size // process_count,
        image_size=None if media else data.square_side(config.model.image_size),
        seed=config.seed,
        process_index=process_index,
        process_count=process_count,
        scale=tuple(config.data.get("crop_scale", (0.2, 1.0))),
    )
    workdir = os.fspath(workdir)  # a path or a URL: files go through mim_jax.core.paths
    paths.makedirs(workdir)
    hooks = [reconstruction_hook(config, compiled.layout, source, workdir)]
    hooks += list(make_hooks(compiled.layout)) if make_hooks else []
    start = (
        f"training {config.model.name} with {config.mask} masks for {total_steps} steps "
        f"({num_examples} images, {per_epoch} steps/epoch) in {workdir}"
    )
    if process_count > 1:
        start += (
            f"; process {process_index}/{process_count} reads data shard {process_index} of "
            f"{process_count} ({num_examples // process_count} of {num_examples} records)"
        )
    job = Job(
        name="pretraining",
        step=compiled.step,
        state=initial_state,
        iterator=iterator,
        batch_shardings={"image": compiled.batch_sharding},
        total_steps=total_steps,
        batch_size=config.batch_size,
        config=config,
        hooks=[h for h in hooks if h is not None],
        best_metric=best_metric,
        start_message=start,
        finish_notes=lambda: _skipped_note(source),
    )
    return run_job(job, workdir, max_steps=max_steps, allow_config_change=allow_config_change)


def _skipped_note(source) -> list[str]:
    skipped = getattr(source, "skipped", None)
    if not skipped:
        return []
    return [
        f"skipped {len(skipped)} unreadable {getattr(source, 'what', 'image')}(s), each replaced "
        "by the next readable one: "
        + "; ".join(f"{path} ({error})" for path, error in list(skipped.items())[:10])
    ]
