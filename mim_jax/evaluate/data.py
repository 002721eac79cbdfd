"""Labelled train/val data for evaluation, deterministic batches and frozen-encoder features.

The pretraining run's config decides the dataset (``config.data.source``), read through
:func:`mim_jax.data.build_source` with its ``train`` and ``val`` splits (digits: train / test;
folders: ``<path>/train`` (or ``<path>``) and ``<path>/val`` or ``val_path``, class subfolders as
labels; TFDS: train / validation, prepared, never downloaded; synthetic: random labels, chance
accuracy expected).

The evaluation transform is MAE's (``util/datasets.py``; :func:`mim_jax.data.eval_transform`):
the shorter side resized (bicubic) to ``int(size / crop_fraction)``, the centre ``size x size``
cropped, ImageNet normalisation. Every protocol uses it for validation images (kNN, the probe,
fine-tuning, the periodic kNN). :func:`default_crop_fraction` is MAE's rule (0.875 up to 224
pixels, 1.0 above) except for digits, whose 8x8 glyphs fill the frame: they keep the whole image
(1.0). Jobs set it with their config's ``crop_fraction``. Video and audio sources
(``video_folder`` / ``audio_folder``) give model inputs already: their evaluation view (the
centred clip's centre square, float32[T, S, S, 3]; the whole fbank, float32[T, F, 1]) is used as
it is, which :class:`EvalData` marks with ``image_size=None``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh

from mim_jax import data
from mim_jax.core.sharding import batch_sharding, make_mesh, replicated
from mim_jax.data.pipeline import RandomAccessSource
from mim_jax.models.vit import ViTEncoder

Pool = Literal["cls", "mean"]
POOLS = ("cls", "mean")
DIGITS_SPLITS = ("train", "test", "all")


class Subset:
    """The records ``indices`` of ``source`` (random access, same record format)."""

    def __init__(self, source: RandomAccessSource, indices: Sequence[int]):
        self.source = source
        self.indices = np.asarray(indices, dtype=np.int64)
        self.num_classes = getattr(source, "num_classes", None)
        labels = getattr(source, "labels", None)
        self.labels = None if labels is None else np.asarray(labels)[self.indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.source[int(self.indices[int(index)])]

    def __repr__(self) -> str:
        # grain compares repr(source) when restoring an iterator: name the records exactly.
        digest = hashlib.sha1(self.indices.tobytes()).hexdigest()[:12]
        return f"Subset({self.source!r}, n={len(self)}, indices={digest})"


def subset(source: RandomAccessSource, limit: int | None, seed: int = 0) -> RandomAccessSource:
    """At most ``limit`` records of ``source``, drawn without replacement with ``seed`` (sorted,
    so reading stays sequential); the source itself when ``limit`` is None or not smaller."""
    if limit is None or limit >= len(source):
        return source
    if limit < 1:
        raise ValueError(f"a subset needs at least one record, got limit={limit}.")
    rng = np.random.default_rng(seed)
    return Subset(source, np.sort(rng.choice(len(source), size=limit, replace=False)))


@dataclasses.dataclass
class EvalData:
    """Labelled ``train`` / ``val`` sources, the class count, the model's input side (None: the
    records are model inputs already, as video and audio records are) and the evaluation
    transform's crop fraction (see :func:`mim_jax.data.eval_transform`)."""

    train: RandomAccessSource
    val: RandomAccessSource
    num_classes: int
    image_size: int | None
    description: str
    crop_fraction: float = data.DEFAULT_CROP_FRACTION


def default_crop_fraction(source_kind: str, image_size: int | None) -> float:
    """The evaluation crop fraction for a dataset kind: 1.0 (whole image) for the bundled digits
    and for sources whose records are model inputs already (``image_size`` None: video clips,
    spectrograms; they make their own evaluation view), else MAE's
    :func:`mim_jax.data.mae_crop_fraction` (0.875 up to 224 pixels, 1.0 above)."""
    if source_kind == "digits" or image_size is None:
        return 1.0
    return data.mae_crop_fraction(image_size)


def check_crop_fraction(crop_fraction: float) -> float:
    """``crop_fraction`` as a float in (0, 1]; raises ValueError otherwise."""
    if not 0.0 < float(crop_fraction) <= 1.0:
        raise ValueError(
            f"crop fraction must be in (0, 1] (MAE: 0.875 = 224/256), got {crop_fraction}."
        )
    return float(crop_fraction)


def eval_sources(
    config,
    *,
    train_split: str | None = None,
    val_split: str | None = None,
    val_path: str | None = None,
    data_dir: str | None = None,
    num_classes: int | None = None,
    train_limit: int | None = None,
    val_limit: int | None = None,
    seed: int = 0,
    crop_fraction: float | None = None,
) -> EvalData:
    """The labelled train/val sources for a run's ``config`` (see the module docstring).

    Args:
      config: the pretraining config (``config.data``, ``config.model.image_size/channels``).
      train_split / val_split: split names (digits: train/test/all; TFDS split strings).
      val_path: folder (or list file) for validation (folder, video_folder, audio_folder).
      data_dir: TFDS data directory.
      num_classes: overrides the class count read from the sources.
      train_limit / val_limit: keep a random subset of this many records (seeded by ``seed``).
      crop_fraction: the evaluation crop fraction (None: :func:`default_crop_fraction`).

    Raises:
      ValueError: an unknown source or split, unlabelled data, or no validation set.
    """
    kind = config.data.source
    media = kind in data.MEDIA_SOURCES
    side = None if media else data.square_side(config.model.image_size)
    kw = dict(
        image_size=config.model.image_size if media else side,
        channels=int(config.model.channels),
        data_dir=data_dir,
        num_frames=config.model.get("num_frames"),
    )
    if kind == "digits":
        for split in (train_split, val_split):
            if split is not None and split not in DIGITS_SPLITS:
                raise ValueError(f"digits split {split!r}; valid: {', '.join(DIGITS_SPLITS)}.")
    train = data.build_source(config.data, train_split or "train", **kw)
    if kind == "folder" and val_path is not None:
        val = data.FolderSource(val_path, channels=kw["channels"])
    elif media and val_path is not None:
        val_data = config.data.copy_and_resolve_references()
        with val_data.unlocked():
            val_data.path = val_path
        val = data.build_source(val_data, "train", **kw)
    else:
        val = data.build_source(config.data, val_split or "val", **kw)
    if kind == "folder" or (media and (train.class_names or val.class_names)):
        if not train.class_names or not val.class_names:
            raise ValueError(
                f"folders {train.root} and {val.root} must both hold class subfolders "
                "(root/<class>/<file>) for labelled evaluation."
            )
        if train.class_names != val.class_names:
            raise ValueError(
                f"train classes {train.class_names[:5]}... differ from val classes "
                f"{val.class_names[:5]}...; both folders need the same class subfolders."
            )
    what = {
        "digits": f"digits {train_split or 'train'}/{val_split or 'test'}",
        "synthetic": "synthetic noise (random labels)",
        "folder": f"folders {getattr(train, 'root', '')} / {getattr(val, 'root', '')}",
        "video_folder": f"videos {getattr(train, 'root', '')} / {getattr(val, 'root', '')}",
        "audio_folder": f"audio {getattr(train, 'root', '')} / {getattr(val, 'root', '')}",
        "tfds": f"tfds {config.data.get('name')} {train_split or 'train'}/"
        f"{val_split or 'validation'}",
    }.get(kind, kind)
    classes = num_classes or _num_classes(train)
    train = subset(train, train_limit, seed)
    val = subset(val, val_limit, seed + 1)
    if crop_fraction is None:
        crop_fraction = default_crop_fraction(kind, side)
    crop_fraction = check_crop_fraction(crop_fraction)
    unit = {"video_folder": "clips", "audio_folder": "files"}.get(kind, "images")
    what = f"{what} ({len(train)}/{len(val)} {unit}, eval crop {crop_fraction:g})"
    return EvalData(train, val, int(classes), side, what, crop_fraction)


def _num_classes(source: Any) -> int:
    """The class count a source declares (attribute, folder names or TFDS info)."""
    if getattr(source, "num_classes", None):
        return int(source.num_classes)
    if getattr(source, "class_names", None):
        return len(source.class_names)
    info = getattr(getattr(source, "_source", None), "dataset_info", None)
    label_key = getattr(source, "label_key", "label")
    feature = None if info is None else info.features.get(label_key)
    if getattr(feature, "num_classes", None):
        return int(feature.num_classes)
    raise ValueError(f"cannot tell the number of classes of {source!r}; pass --num-classes.")


def _transform(
    image_size: int | None, crop_fraction: float
) -> Callable[[dict[str, Any]], tuple[np.ndarray, int]]:
    def apply(record: dict[str, Any]) -> tuple[np.ndarray, int]:
        if image_size is None:  # a model input already (video clip, spectrogram)
            return np.asarray(record["image"], np.float32), int(record["label"])
        image = data.eval_transform(
            np.asarray(record["image"]), image_size, crop_fraction=crop_fraction
        )
        return image, int(record["label"])

    return apply


def iterate_batches(
    source: RandomAccessSource,
    batch_size: int,
    image_size: int | None,
    threads: int = 4,
    *,
    crop_fraction: float = data.DEFAULT_CROP_FRACTION,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Every record of ``source`` once, in order, in batches (the last may be smaller).

    Yields ``(images float32[b, S, S, C], labels int32[b])`` with the evaluation transform
    (:func:`mim_jax.data.eval_transform` at ``crop_fraction``), or with ``image_size=None`` the
    records' own model inputs (``float32[b, T, S, S, 3]`` clips, ``float32[b, T, F, 1]``
    spectrograms).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}.")
    apply = _transform(image_size, crop_fraction)
    with ThreadPoolExecutor(max(1, threads)) as pool:
        for start in range(0, len(source), batch_size):
            records = [source[i] for i in range(start, min(start + batch_size, len(source)))]
            pairs = list(pool.map(apply, records))
            images = np.stack([p[0] for p in pairs]).astype(np.float32)
            labels = np.asarray([p[1] for p in pairs], np.int32)
            yield images, labels


def load_arrays(
    source: RandomAccessSource,
    image_size: int | None,
    batch_size: int = 256,
    *,
    crop_fraction: float = data.DEFAULT_CROP_FRACTION,
) -> tuple[np.ndarray, np.ndarray]:
    """The whole (small) source as ``(images float32[N, ...], labels int32[N])`` (see
    :func:`iterate_batches`)."""
    batches = iterate_batches(source, batch_size, image_size, crop_fraction=crop_fraction)
    images, labels = zip(*batches, strict=True)
    return np.concatenate(images), np.concatenate(labels)


def pool_tokens(tokens: jax.Array, pool: Pool, num_prefix_tokens: int) -> jax.Array:
    """[B, prefix + N, D] final-normed tokens -> float32[B, D] features (cls or patch mean)."""
    chex.assert_rank(tokens, 3)
    if pool == "cls":
        if num_prefix_tokens < 1:
            raise ValueError("pool='cls' needs a cls token; this encoder has none (use 'mean').")
        return tokens[:, 0].astype(jnp.float32)
    if pool == "mean":
        return tokens[:, num_prefix_tokens:].astype(jnp.float32).mean(axis=1)
    raise ValueError(f"pool must be one of {POOLS}, got {pool!r}.")


class FeatureExtractor:
    """Frozen-encoder features, jit-compiled once, data-parallel over a mesh.

    ``extractor(images float32[B, S, S, C]) -> float32[B, D]`` (or clips ``float32[B, T, S, S,
    3]``, spectrograms ``float32[B, T, F, 1]``): any ``B`` (padded to the fixed
    ``batch_size`` so one program serves every batch). The encoder's parameters are replicated,
    the batch is split over the mesh's data axes (default: every local device).
    """

    def __init__(
        self,
        encoder: ViTEncoder,
        pool: Pool = "cls",
        batch_size: int = 256,
        mesh: Mesh | None = None,
    ):
        if pool not in POOLS:
            raise ValueError(f"pool must be one of {POOLS}, got {pool!r}.")
        pool_tokens(
            jnp.zeros((1, encoder.num_prefix_tokens + 1, 1)), pool, encoder.num_prefix_tokens
        )
        self.mesh = mesh or make_mesh(devices=jax.local_devices())
        ways = self.mesh.shape["data"] * self.mesh.shape["fsdp"]
        self.batch_size = -(-batch_size // ways) * ways
        self.width = encoder.config.width
        graphdef, state = nnx.split(encoder)
        self._state = jax.device_put(state, replicated(self.mesh))
        self._sharding = batch_sharding(self.mesh, 4)
        prefix = encoder.num_prefix_tokens

        @jax.jit
        def features(state, images):
            model = nnx.merge(graphdef, state)
            return pool_tokens(model.encode(images), pool, prefix)

        self._features = features

    def __call__(self, images: np.ndarray) -> np.ndarray:
        images = np.asarray(images, np.float32)
        b = len(images)
        if b > self.batch_size:
            return np.concatenate(
                [self(images[i : i + self.batch_size]) for i in range(0, b, self.batch_size)]
            )
        padded = np.zeros((self.batch_size, *images.shape[1:]), np.float32)
        padded[:b] = images
        sharding = self._sharding if padded.ndim == 4 else batch_sharding(self.mesh, padded.ndim)
        placed = jax.device_put(padded, sharding)
        return np.asarray(self._features(self._state, placed))[:b]


def extract_features(
    extractor: FeatureExtractor,
    source: RandomAccessSource,
    image_size: int | None,
    *,
    name: str = "features",
    log: Callable[[str], None] | None = None,
    crop_fraction: float = data.DEFAULT_CROP_FRACTION,
) -> tuple[np.ndarray, np.ndarray]:
    """``(features float32[N, D], labels int32[N])`` of every record of ``source``, in order
    (evaluation transform at ``crop_fraction``)."""
    log = log or progress
    feats, labels = [], []
    start, last = time.perf_counter(), time.perf_counter()
    done = 0
    batches = iterate_batches(source, extractor.batch_size, image_size, crop_fraction=crop_fraction)
    for images, batch_labels in batches:
        feats.append(extractor(images))
        labels.append(batch_labels)
        done += len(batch_labels)
        if time.perf_counter() - last > 10:
            last = time.perf_counter()
            log(f"{name}: {done}/{len(source)} images ({done / (last - start):.0f} img/s)")
    log(f"{name}: {done} images in {time.perf_counter() - start:.1f}s")
    return np.concatenate(feats), np.concatenate(labels)


def progress(text: str) -> None:
    """A progress line on stderr (stdout carries the JSON result)."""
    print(text, file=sys.stderr, flush=True)
