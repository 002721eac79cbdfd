"""mim_jax.data: random-access image sources, MAE augmentation and the grain input pipeline.

Sources return ``{"image": uint8[H, W, C], "label": int}`` per index:
``DigitsSource`` (bundled scikit-learn digits, offline default), ``FolderSource`` (users' image
folders, Pillow), ``TfdsSource`` (prepared TFDS datasets via ``tfds.data_source``) and
``SyntheticSource`` (deterministic noise for benchmarks). ``make_pipeline`` turns one into a
sharded, checkpointable grain iterator of ``{"image": float32[B, S, S, C], "label": int32[B]}``.
"""

from mim_jax.data.augment import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    eval_transform,
    mae_train_transform,
    normalize,
    random_resized_crop_params,
    resize,
)
from mim_jax.data.digits import DigitsSource
from mim_jax.data.folder import FolderSource
from mim_jax.data.pipeline import EvalTransform, MaeTrainAugment, make_pipeline
from mim_jax.data.sources import SOURCES, build_source, folder_split_path, square_side
from mim_jax.data.synthetic import SyntheticSource
from mim_jax.data.tfds_source import TfdsSource

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "SOURCES",
    "DigitsSource",
    "EvalTransform",
    "FolderSource",
    "MaeTrainAugment",
    "SyntheticSource",
    "TfdsSource",
    "build_source",
    "eval_transform",
    "folder_split_path",
    "mae_train_transform",
    "make_pipeline",
    "normalize",
    "random_resized_crop_params",
    "resize",
    "square_side",
]
