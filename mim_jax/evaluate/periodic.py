"""The cheap evaluator the training loop runs every ``config.eval_every`` steps.

kNN (DINO protocol, k = 20, T = 0.07) on cls features of a fixed labelled subset: at most
``train_examples`` images of the evaluation train split as the memory bank and ``val_examples``
of the val split as queries (random but fixed subsets, seed 0). The images get the evaluation
transform's resize and centre crop (:func:`mim_jax.evaluate.data.default_crop_fraction`: MAE's
0.875 up to 224 pixels, the whole image for digits) once, at
construction, and kept as uint8 on the host; each evaluation encodes them with the train state's
current encoder (one jit-compiled forward, batches of ``batch_size``) and votes. On the demo
(1000 + 360 digits at 32x32, a 4-block width-64 encoder) one evaluation takes well under a second.

:func:`knn_hook` wraps it as a hook of the core loop (every ``eval_every`` steps and at every
checkpoint save): the loop logs ``knn_top1`` / ``knn_top5`` in ``metrics.jsonl`` and keeps the
best checkpoint by ``knn_top1``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from flax import nnx

from mim_jax import data
from mim_jax.core.loop import Hook, RunResult
from mim_jax.core.state import StateLayout
from mim_jax.evaluate.data import eval_sources, pool_tokens
from mim_jax.evaluate.knn import knn_classify
from mim_jax.train import pretrain

METRIC = "knn_top1"


def _resized(source, image_size: int | None, crop_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """(uint8[N, S, S, C] images, int32[N] labels) of every record of ``source``, resized and
    centre-cropped as the evaluation transform does (normalised later, per batch); with
    ``image_size=None`` the records' own float32 model inputs (video clips, spectrograms)."""
    images, labels = [], []
    for i in range(len(source)):
        record = source[i]
        image = np.asarray(record["image"])
        images.append(
            image if image_size is None else data.eval_crop(image, image_size, crop_fraction)
        )
        labels.append(int(record["label"]))
    return np.stack(images), np.asarray(labels, np.int32)


class PeriodicEvaluator:
    """kNN accuracy of a train state's encoder on a small labelled subset.

    Args:
      config: the run's config (decides the dataset, see :func:`eval_sources`).
      graphdef: the MAE graph definition of the train step (``compiled.graphdef``).
      train_examples / val_examples: subset sizes (memory bank / queries).
      k: neighbours (clipped to the bank size).
      batch_size: images per forward pass.

    Raises:
      ValueError: the config's data has no labelled train/val splits (e.g. an unlabelled image
        folder).
    """

    def __init__(
        self,
        config,
        graphdef: nnx.GraphDef,
        *,
        train_examples: int = 1000,
        val_examples: int = 500,
        k: int = 20,
        batch_size: int = 256,
    ):
        splits = eval_sources(config, train_limit=train_examples, val_limit=val_examples)
        self.image_size = splits.image_size
        self.num_classes = splits.num_classes
        self.k = k
        self.batch_size = batch_size
        crop = splits.crop_fraction
        self.train_images, self.train_labels = _resized(splits.train, self.image_size, crop)
        self.val_images, self.val_labels = _resized(splits.val, self.image_size, crop)
        for name, labels in (("train", self.train_labels), ("val", self.val_labels)):
            if labels.min() < 0 or labels.max() >= self.num_classes:
                raise ValueError(
                    f"the {name} split has labels outside [0, {self.num_classes}) (unlabelled "
                    "data?); the periodic kNN evaluator needs labelled images."
                )
        self.description = splits.description

        @jax.jit
        def features(params, constants, images):
            encoder = nnx.merge(graphdef, params, constants).encoder
            return pool_tokens(encoder.encode(images), "cls", encoder.num_prefix_tokens)

        self._features = features

    def _encode(self, state: Any, images: np.ndarray) -> np.ndarray:
        out = []
        for start in range(0, len(images), self.batch_size):
            chunk = images[start : start + self.batch_size]
            b = len(chunk)
            batch = np.zeros((self.batch_size, *chunk.shape[1:]), np.float32)
            batch[:b] = chunk if self.image_size is None else data.normalize(chunk)
            out.append(np.asarray(self._features(state.params, state.constants, batch))[:b])
        return np.concatenate(out)

    def __call__(self, state: Any) -> dict[str, float]:
        """``{"knn_top1", "knn_top5"}`` (k = ``self.k``) for ``state`` (a TrainState)."""
        train = self._encode(state, self.train_images)
        val = self._encode(state, self.val_images)
        result = knn_classify(
            train,
            self.train_labels,
            val,
            self.val_labels,
            num_classes=self.num_classes,
            ks=(self.k,),
        )
        return {"knn_top1": result["knn_top1"], "knn_top5": result["knn_top5"]}


def knn_hook(config, layout: StateLayout, message: Callable[[str], None]) -> Hook | None:
    """The periodic kNN evaluator as a core-loop hook when ``config.eval_every > 0`` and the
    data allows one; otherwise None (saying why through ``message`` when it was asked for)."""
    if not config.get("eval_every"):
        return None
    try:
        evaluator = PeriodicEvaluator(config, layout.graphdef)
    except (ValueError, FileNotFoundError) as err:
        message(f"eval_every={config.eval_every} but no kNN evaluation is possible: {err}")
        return None
    message(
        f"kNN evaluation (k={evaluator.k}) every {config.eval_every} steps and at each "
        f"checkpoint on {evaluator.description}; best checkpoint by {METRIC}"
    )

    def evaluate(state: Any, step: int) -> dict[str, float]:
        start = time.perf_counter()
        return {**evaluator(state), "eval_s": time.perf_counter() - start}

    return Hook("kNN", evaluate, every=int(config.eval_every), at_save=True)


def run_pretraining(
    config,
    workdir: str,
    *,
    max_steps: int | None = None,
    compiled: Any = None,
    message: Callable[[str], None] = lambda text: print(text, flush=True),
    allow_config_change: bool = False,
) -> RunResult:
    """Pretrains ``config`` (:func:`mim_jax.train.run`) with the evaluators its config declares:
    the periodic kNN evaluator when ``config.eval_every > 0``, best checkpoint by ``knn_top1``.

    The training command, sweeps and notebooks call this; ``mim_jax.train.run`` alone trains
    without evaluation.
    """

    def evaluators(layout: StateLayout) -> list[Hook]:
        hook = knn_hook(config, layout, message)
        return [hook] if hook is not None else []

    return pretrain.run(
        config,
        workdir,
        max_steps=max_steps,
        compiled=compiled,
        make_hooks=evaluators,
        best_metric=METRIC if config.get("eval_every") else None,
        allow_config_change=allow_config_change,
    )
