"""Fine-tuning and linear probing as jobs of the core loop, driven by a job config.

``run_classification(job_config, pretrained, eval_data, workdir)`` builds the job a config file
(``configs/finetune_*.py``, ``configs/linprobe_*.py``; fields in
:func:`mim_jax.configs.eval_job_config`) describes and runs it with
:func:`mim_jax.core.loop.run_job`, so these jobs resume, stop cleanly on SIGTERM, show progress
and write ``metrics.jsonl``, TensorBoard events and Orbax checkpoints exactly as pretraining does.
Validation accuracy is a hook: every ``eval_every_epochs`` epochs, at every checkpoint and at the
end; the best checkpoint is kept by ``val_top1``.

- ``finetune``: :class:`~mim_jax.evaluate.classifier.Classifier` (the whole encoder trains,
  its position table too with ``train_pos_embed``), AdamW with layer-wise lr decay, drop path,
  mixup / cutmix, label smoothing (:mod:`mim_jax.evaluate.finetune`); at the end the classifier
  is also saved in its export layout (:func:`~mim_jax.evaluate.classifier.save_classifier`).
- ``linear``: :class:`~mim_jax.evaluate.linear_probe.LinearProbe` (frozen encoder, BatchNorm +
  linear head), MAE's LARS; only the head trains.

Transforms (:func:`train_transform`, :func:`job_crop_fraction`): validation images, and training
images when ``augment`` is off, get the evaluation transform at the job's crop fraction; with
``augment`` the linear probe trains on MAE's one-draw RandomResizedCrop + flip
(:class:`mim_jax.data.LinearProbeAugment`) and fine-tuning on RandomResizedCrop + flip +
RandAugment + RandomErasing (:class:`mim_jax.data.FinetuneAugment`), both in the input
pipeline's workers (``data_workers``) with grain's per-record generator.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mim_jax import data
from mim_jax.core import paths
from mim_jax.core.loop import Hook, Job, RunResult, run_job
from mim_jax.core.optimizer import OptimizerConfig, warmup_cosine
from mim_jax.core.sharding import batch_sharding, make_mesh
from mim_jax.core.state import StateLayout, TrainState, state_layout
from mim_jax.core.workdir import Pretrained
from mim_jax.evaluate import classifier as classifier_lib
from mim_jax.evaluate import finetune as finetune_lib
from mim_jax.evaluate import linear_probe as probe_lib
from mim_jax.evaluate.data import EvalData, check_crop_fraction, iterate_batches, progress
from mim_jax.evaluate.lars import mae_lars
from mim_jax.evaluate.mixup import MixupConfig

BEST_METRIC = "val_top1"


@dataclasses.dataclass
class ClassificationResult:
    """How a job ended and its validation accuracy (after the last step)."""

    run: RunResult
    top1: float | None
    top5: float | None
    best_top1: float | None
    history: list[float]
    lr: float
    batch_size: int
    steps: int
    extra: dict[str, Any]


def _batch_size(job_config: Any, num_train: int, ways: int) -> int:
    batch = min(int(job_config.batch_size), num_train)
    batch -= batch % ways
    if batch < ways:
        raise ValueError(
            f"batch {job_config.batch_size} (clipped to the {num_train} training images) must be "
            f"at least the {ways} batch-sharded devices (data x fsdp)."
        )
    return batch


def job_crop_fraction(job_config: Any, image_size: int) -> float:
    """The job's evaluation crop fraction: ``crop_fraction``, or MAE's rule for ``image_size``
    (:func:`mim_jax.data.mae_crop_fraction`) when it is None. Raises ValueError outside (0, 1]."""
    value = job_config.get("crop_fraction")
    return check_crop_fraction(data.mae_crop_fraction(image_size) if value is None else value)


def _policy(job_config: Any) -> data.RandAugment | None:
    aa = job_config.get("aa")
    if not aa or str(aa).lower() == "none":
        return None
    return data.RandAugment.from_spec(str(aa))


def train_transform(
    job_config: Any, image_size: int
) -> data.EvalTransform | data.LinearProbeAugment | data.FinetuneAugment:
    """The grain record transform for a job's training images (see the module docstring).

    Raises:
      ValueError: a bad ``crop_fraction``, RandAugment policy or RandomErasing setting.
    """
    crop = job_crop_fraction(job_config, image_size)
    if not job_config.augment:
        return data.EvalTransform(image_size, crop_fraction=crop)
    if job_config.job == "linear":
        return data.LinearProbeAugment(image_size)
    erasing = None
    if float(job_config.reprob) > 0:
        erasing = data.RandomErasing(
            float(job_config.reprob), mode=str(job_config.remode), max_count=int(job_config.recount)
        )
    return data.FinetuneAugment(image_size, _policy(job_config), erasing)


def _accuracy(
    logits_fn: Callable,
    state: TrainState,
    source,
    image_size: int,
    batch_size: int,
    ways: int,
    crop_fraction: float,
) -> tuple[float, float]:
    """(top-1, top-5) of ``logits_fn(params, constants, images)`` on every record of ``source``
    (evaluation transform at ``crop_fraction``)."""
    batch_size = -(-batch_size // ways) * ways
    top1 = top5 = total = 0
    batches = iterate_batches(source, batch_size, image_size, crop_fraction=crop_fraction)
    for images, labels in batches:
        b = len(labels)
        padded = np.zeros((batch_size, *images.shape[1:]), np.float32)
        padded[:b] = images
        logits = np.asarray(logits_fn(state.params, state.constants, padded))[:b]
        c1, c5 = probe_lib.accuracy_counts(jnp.asarray(logits), jnp.asarray(labels))
        top1, top5, total = top1 + int(c1), top5 + int(c5), total + b
    return top1 / total, top5 / total


def _model_and_step(
    job_config: Any, pretrained: Pretrained, num_classes: int, schedule, mesh
) -> tuple[StateLayout, nnx.Module, Callable, dict[str, Any]]:
    """The job's model, its state layout and its (uncompiled) step."""
    if job_config.job == "finetune":
        model = classifier_lib.classifier_from_pretrained(
            pretrained,
            num_classes,
            drop_path=float(job_config.drop_path),
            global_pool=bool(job_config.global_pool),
            train_pos_embed=bool(job_config.train_pos_embed),
            seed=int(job_config.seed),
        )
        depth = pretrained.model.config.encoder.depth
        decay = job_config.layer_decay
        if decay is None:
            decay = finetune_lib.LAYER_DECAY.get(
                str(pretrained.config.model.name), finetune_lib.DEFAULT_LAYER_DECAY
            )
        _, params, _ = nnx.split(model, nnx.Param, ...)
        tx = finetune_lib.finetune_optimizer(params, job_config, depth, decay, schedule)
        layout = state_layout(model, tx, mesh)
        mixup = MixupConfig(
            mixup_alpha=float(job_config.mixup),
            cutmix_alpha=float(job_config.cutmix),
            prob=float(job_config.mixup_prob),
            switch_prob=float(job_config.switch_prob),
            label_smoothing=float(job_config.smoothing),
        )
        step = finetune_lib.build_finetune_step(layout.graphdef, tx, schedule, num_classes, mixup)
        return layout, model, step, {"layer_decay": decay}
    if job_config.job == "linear":
        model = probe_lib.LinearProbe(
            pretrained.encoder, num_classes, str(job_config.pool), seed=int(job_config.seed)
        )
        tx = mae_lars(
            schedule, weight_decay=float(job_config.weight_decay), momentum=job_config.momentum
        )
        layout = state_layout(model, tx, mesh, trainable=probe_lib.PROBE_TRAINABLE)
        step = probe_lib.build_probe_step(
            layout.graphdef, tx, schedule, float(job_config.bn_momentum)
        )
        return layout, model, step, {}
    raise ValueError(f"job config's job={job_config.job!r}; valid: finetune, linear.")


def run_classification(
    job_config: Any,
    pretrained: Pretrained,
    eval_data: EvalData,
    workdir: str,
    *,
    max_steps: int | None = None,
    classifier_dir: str | None = None,
    log: Callable[[str], None] = progress,
) -> ClassificationResult:
    """Trains the job ``job_config`` describes on ``eval_data`` in ``workdir`` (resuming).

    Args:
      job_config: a fine-tuning or linear-probe job config.
      pretrained: the encoder to start from (:func:`mim_jax.core.workdir.load_pretrained`, or
        ``random_init`` for a baseline); its config's mesh is used.
      eval_data: labelled train / val sources.
      workdir: the job's checkpoints and metrics.
      max_steps: stop (with a checkpoint) after this many steps of this invocation.
      classifier_dir: fine-tuning only: where the finished classifier is saved in its export
        layout (None: not saved).

    Raises:
      ValueError: a batch that cannot be split over the devices, an unknown job.
    """
    run_config = pretrained.config
    crop = job_crop_fraction(job_config, eval_data.image_size)
    transform = train_transform(job_config, eval_data.image_size)  # a bad setting fails here
    m = run_config.mesh
    mesh = make_mesh(m.data, m.fsdp, m.tensor)
    ways = mesh.shape["data"] * mesh.shape["fsdp"]
    process_count = jax.process_count()
    batch = _batch_size(job_config, len(eval_data.train), ways)
    steps_per_epoch = max(len(eval_data.train) // batch, 1)
    total = int(job_config.epochs) * steps_per_epoch
    lr = float(job_config.lr) if job_config.lr is not None else job_config.blr * batch / 256
    end_lr = min(float(job_config.get("min_lr", 0.0)), lr)
    schedule = warmup_cosine(
        OptimizerConfig(
            learning_rate=lr,
            warmup_steps=round(float(job_config.warmup_epochs) * steps_per_epoch),
            total_steps=total,
            end_learning_rate=end_lr,
        )
    )
    layout, model, step_fn, extra = _model_and_step(
        job_config, pretrained, eval_data.num_classes, schedule, mesh
    )
    image_sh, label_sh = batch_sharding(mesh, 4), batch_sharding(mesh, 1)
    step = layout.jit(step_fn, {"image": image_sh, "label": label_sh})
    graphdef = layout.graphdef

    @jax.jit
    def logits_fn(params, constants, images):
        return nnx.merge(graphdef, params, constants)(images)

    history: list[float] = []
    latest: dict[str, float] = {}

    def validate(state: TrainState, at_step: int) -> dict[str, float]:
        top1, top5 = _accuracy(
            logits_fn,
            state,
            eval_data.val,
            eval_data.image_size,
            job_config.eval_batch_size,
            ways,
            crop,
        )
        history.append(top1)
        latest.update(val_top1=top1, val_top5=top5)
        return dict(latest)

    every = int(job_config.eval_every_epochs or 0) * steps_per_epoch
    hooks = [Hook("validation", validate, every=every, at_save=True, at_finish=True)]
    iterator = data.make_pipeline(
        eval_data.train,
        batch_size=batch // process_count,
        image_size=eval_data.image_size,
        seed=int(job_config.seed),
        transform=transform,
        worker_count=int(job_config.data_workers),
        process_index=jax.process_index(),
        process_count=process_count,
    )
    name = "fine-tuning" if job_config.job == "finetune" else "linear probe"
    start = (
        f"{name} of {run_config.model.name} ({job_config.recipe} recipe) for {total} steps of "
        f"{batch} images ({steps_per_epoch} steps/epoch), peak lr {lr:.3g}; "
        f"train transform {type(transform).__name__}, eval crop {crop:g}; "
        f"{eval_data.description}; outputs in {workdir}"
    )
    job = Job(
        name=name,
        step=step,
        state=layout.place(model),
        iterator=_LabelledBatches(iterator),
        batch_shardings={"image": image_sh, "label": label_sh},
        total_steps=total,
        batch_size=batch,
        config=job_config,
        hooks=hooks,
        best_metric=BEST_METRIC,
        start_message=start,
        stream=sys.stderr,
    )
    final_state: dict[str, TrainState] = {}
    if classifier_dir is not None and job_config.job == "finetune":

        def keep_state(state: TrainState, at_step: int) -> None:
            final_state["state"] = state

        job.hooks = [*hooks, Hook("keep", keep_state, at_finish=True)]
    result = run_job(job, workdir, max_steps=max_steps)
    if "state" in final_state:
        classifier_lib.save_classifier(
            classifier_dir,
            final_state["state"],
            run_config,
            job_config.to_dict(),
            eval_data.num_classes,
        )
        log(f"saved the fine-tuned classifier to {classifier_dir}")
    return ClassificationResult(
        run=result,
        top1=latest.get("val_top1"),
        top5=latest.get("val_top5"),
        best_top1=max(history) if history else None,
        history=history,
        lr=lr,
        batch_size=batch,
        steps=total,
        extra=extra,
    )


class _LabelledBatches:
    """The pipeline's batches with int32 labels (the step's label sharding wants int32)."""

    def __init__(self, iterator: Any):
        self._iterator = iterator

    def __next__(self) -> dict[str, np.ndarray]:
        record = next(self._iterator)
        return {"image": record["image"], "label": np.asarray(record["label"], np.int32)}

    def get_state(self) -> Any:
        return self._iterator.get_state()

    def set_state(self, state: Any) -> None:
        self._iterator.set_state(state)


def job_workdir(out_dir: str, job: str) -> str:
    """Where a job's checkpoints go under an evaluation output folder."""
    return paths.join(out_dir, "finetune" if job == "finetune" else "linear")
