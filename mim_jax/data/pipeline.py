"""grain input pipeline: shard per host, shuffle, augment, batch; checkpointable and deterministic.

``make_pipeline`` builds a ``grain.DataLoader`` over a random-access source and returns its
iterator.
The sampler's global order, each process's shard and every record's augmentation generator are
functions of ``seed`` and the record's position only, so the stream is reproducible; the iterator's
``get_state()`` (JSON bytes) / ``set_state()`` resume it exactly (save the bytes next to the model
checkpoint, or use ``grain.checkpoint.CheckpointSave/CheckpointRestore`` with Orbax).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Protocol

import grain
import numpy as np

from mim_jax.data import augment as aug
from mim_jax.data.folder import READ_BUFFER, READ_THREADS
from mim_jax.data.randaugment import RandAugment
from mim_jax.data.random_erasing import RandomErasing


class RandomAccessSource(Protocol):
    """What the pipeline needs from a source: ``len`` and ``[i] -> {"image", "label"}``."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> dict[str, Any]: ...


@dataclasses.dataclass(frozen=True)
class MaeTrainAugment(grain.transforms.RandomMap):
    """grain RandomMap: ``{"image": uint8[H,W,C], "label"}`` -> ``{"image": float32[S,S,C],
    "label": int32[]}`` with the MAE train transform, using grain's per-record generator."""

    image_size: int
    scale: tuple[float, float] = (0.2, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_prob: float = 0.5
    mean: tuple[float, ...] = aug.IMAGENET_MEAN
    std: tuple[float, ...] = aug.IMAGENET_STD

    def random_map(self, element: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        image = aug.mae_train_transform(
            np.asarray(element["image"]),
            rng,
            self.image_size,
            scale=self.scale,
            ratio=self.ratio,
            flip_prob=self.flip_prob,
            mean=self.mean,
            std=self.std,
        )
        return {"image": image, "label": np.int32(element["label"])}


@dataclasses.dataclass(frozen=True)
class LinearProbeAugment(grain.transforms.RandomMap):
    """grain RandomMap: MAE's linear-probe train transform
    (:func:`mim_jax.data.augment.linprobe_train_transform`) with the per-record generator."""

    image_size: int
    mean: tuple[float, ...] = aug.IMAGENET_MEAN
    std: tuple[float, ...] = aug.IMAGENET_STD

    def random_map(self, element: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        image = aug.linprobe_train_transform(
            np.asarray(element["image"]), rng, self.image_size, self.mean, self.std
        )
        return {"image": image, "label": np.int32(element["label"])}


@dataclasses.dataclass(frozen=True)
class FinetuneAugment(grain.transforms.RandomMap):
    """grain RandomMap: MAE's fine-tuning train transform (RandomResizedCrop + flip +
    ``rand_augment`` + normalise + ``erasing``; :func:`mim_jax.data.augment.
    finetune_train_transform`) with the per-record generator. ``None`` switches a stage off."""

    image_size: int
    rand_augment: RandAugment | None = None
    erasing: RandomErasing | None = None
    mean: tuple[float, ...] = aug.IMAGENET_MEAN
    std: tuple[float, ...] = aug.IMAGENET_STD

    def random_map(self, element: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        image = aug.finetune_train_transform(
            np.asarray(element["image"]),
            rng,
            self.image_size,
            rand_augment=self.rand_augment,
            erasing=self.erasing,
            mean=self.mean,
            std=self.std,
        )
        return {"image": image, "label": np.int32(element["label"])}


@dataclasses.dataclass(frozen=True)
class EvalTransform(grain.transforms.Map):
    """grain Map: MAE's evaluation transform (shorter side to ``int(image_size /
    crop_fraction)``, bicubic; centre crop ``image_size``; normalise)."""

    image_size: int
    mean: tuple[float, ...] = aug.IMAGENET_MEAN
    std: tuple[float, ...] = aug.IMAGENET_STD
    crop_fraction: float = aug.DEFAULT_CROP_FRACTION

    def map(self, element: dict[str, Any]) -> dict[str, Any]:
        image = aug.eval_transform(
            np.asarray(element["image"]),
            self.image_size,
            self.mean,
            self.std,
            crop_fraction=self.crop_fraction,
        )
        return {"image": image, "label": np.int32(element["label"])}


def make_pipeline(
    source: RandomAccessSource,
    *,
    batch_size: int,
    image_size: int | None,
    seed: int,
    shuffle: bool = True,
    num_epochs: int | None = None,
    process_index: int = 0,
    process_count: int = 1,
    augment: bool = True,
    worker_count: int = 0,
    worker_buffer_size: int = 1,
    mean: Sequence[float] = aug.IMAGENET_MEAN,
    std: Sequence[float] = aug.IMAGENET_STD,
    scale: tuple[float, float] = (0.2, 1.0),
    transform: grain.transforms.Map | grain.transforms.RandomMap | None = None,
    read_threads: int = READ_THREADS,
    read_buffer: int = READ_BUFFER,
) -> grain.DataLoaderIterator:
    """Iterator over per-host batches ``{"image": float32[B, S, S, C], "label": int32[B]}``.

    Args:
        source: random-access source (``DigitsSource``, ``FolderSource``, ``TfdsSource``, ...);
            one with ``grain_parts(augment)`` (``VideoFolderSource``, ``AudioFolderSource``)
            brings its own records and transform, and ``image_size``/``mean``/``std``/``scale``
            are its own.
        batch_size: per-process batch size ``B`` (the global batch is ``B * process_count``);
            incomplete batches are dropped.
        image_size: output side length ``S`` (None for a source with ``grain_parts``).
        seed: drives the shuffle order and every record's augmentation.
        shuffle: global shuffle each epoch (a fresh permutation per epoch).
        num_epochs: ``None`` repeats forever; otherwise stop after that many passes.
        process_index / process_count: this host's shard (``jax.process_index()`` /
            ``jax.process_count()``); each host reads only its ``len // process_count`` records
            (the remainder is dropped so hosts stay in step).
        augment: MAE train augmentation (RandomResizedCrop + flip + normalise); ``False`` gives
            the deterministic evaluation transform (:class:`EvalTransform`).
        worker_count: grain worker processes (0 = in this process).
        worker_buffer_size: batches each worker prepares ahead.
        mean / std: normalisation constants (per channel, in [0, 1] units).
        scale: RandomResizedCrop area range.
        transform: a record transform replacing the ``augment`` choice (e.g.
            :class:`LinearProbeAugment`, :class:`FinetuneAugment`); it runs in the workers, a
            ``RandomMap`` with grain's per-record generator.
        read_threads / read_buffer: records decoded at once and read ahead: at most their sum
            of full-size decoded images is in memory (grain's default, 16 + 500, let large
            images exhaust memory); see :func:`mim_jax.data.folder.read_plan`.

    Returns:
        a ``grain.DataLoaderIterator``: ``next(it)``, ``it.get_state() -> bytes``,
        ``it.set_state(bytes)``. To resume, build the same pipeline and call ``set_state``.
    """
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index {process_index} not in [0, {process_count})")
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive: {batch_size}")
    if len(source) // process_count < batch_size:
        raise ValueError(
            f"shard of {len(source) // process_count} records is smaller than batch {batch_size}"
        )
    shard = grain.sharding.ShardOptions(
        shard_index=process_index, shard_count=process_count, drop_remainder=True
    )
    sampler = grain.samplers.IndexSampler(
        num_records=len(source),
        shard_options=shard,
        shuffle=shuffle,
        num_epochs=num_epochs,
        seed=seed,
    )
    records: Any = source
    if hasattr(source, "grain_parts"):  # video/audio: decoding and clip sampling in the transform
        records, transform = source.grain_parts(augment)
    elif image_size is None:
        raise ValueError(f"make_pipeline needs image_size for the image source {source!r}.")
    elif transform is None and augment:
        transform = MaeTrainAugment(image_size, scale=scale, mean=tuple(mean), std=tuple(std))
    elif transform is None:
        transform = EvalTransform(image_size, mean=tuple(mean), std=tuple(std))
    if worker_count:
        _ensure_absl_flags_parsed()
    loader = grain.DataLoader(
        data_source=records,
        sampler=sampler,
        operations=[transform, grain.transforms.Batch(batch_size, drop_remainder=True)],
        worker_count=worker_count,
        worker_buffer_size=worker_buffer_size,
        shard_options=shard,
        read_options=grain.ReadOptions(num_threads=read_threads, prefetch_buffer_size=read_buffer),
    )
    return iter(loader)


def _ensure_absl_flags_parsed() -> None:
    """grain's worker processes read absl flags; outside ``absl.app.run`` (pytest, notebooks) they
    are unparsed and grain raises ``UnparsedFlagAccessError``. Mark them parsed (with defaults)."""
    from absl import flags

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()
