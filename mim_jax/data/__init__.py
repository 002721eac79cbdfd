"""mim_jax.data: random-access image sources, MAE augmentation and the grain input pipeline.

Sources return ``{"image": uint8[H, W, C], "label": int}`` per index:
``DigitsSource`` (bundled scikit-learn digits, offline default), ``FolderSource`` (users' image
folders, Pillow), ``TfdsSource`` (prepared TFDS datasets via ``tfds.data_source``) and
``SyntheticSource`` (deterministic noise for benchmarks). ``VideoFolderSource`` (VideoMAE clips,
PyAV) and ``AudioFolderSource`` (AudioMAE log-mel spectrograms, soundfile) return model-ready
``float32[T, S, S, 3]`` / ``float32[T, F, 1]`` records instead. ``make_pipeline`` turns one into a
sharded, checkpointable grain iterator of ``{"image": float32[B, S, S, C], "label": int32[B]}``.
The evaluation protocols' transforms (MAE's eval crop, the linear probe's and fine-tuning's train
augmentation with RandAugment and RandomErasing) live in ``augment``, ``randaugment`` and
``random_erasing`` and run as grain record transforms (``LinearProbeAugment``,
``FinetuneAugment``, ``EvalTransform``).
"""

from mim_jax.data.audio_folder import AudioFolderSource
from mim_jax.data.augment import (
    DEFAULT_CROP_FRACTION,
    IMAGENET_MEAN,
    IMAGENET_STD,
    eval_crop,
    eval_transform,
    finetune_train_transform,
    linprobe_train_transform,
    mae_crop_fraction,
    mae_train_transform,
    normalize,
    random_resized_crop_params,
    resize,
)
from mim_jax.data.digits import DigitsSource
from mim_jax.data.folder import FolderSource
from mim_jax.data.media_config import MEDIA_SOURCES, media_split_path
from mim_jax.data.pipeline import (
    EvalTransform,
    FinetuneAugment,
    LinearProbeAugment,
    MaeTrainAugment,
    make_pipeline,
)
from mim_jax.data.randaugment import MAE_POLICY, RandAugment
from mim_jax.data.random_erasing import RandomErasing
from mim_jax.data.sources import SOURCES, build_source, folder_split_path, square_side
from mim_jax.data.synthetic import SyntheticSource
from mim_jax.data.tfds_source import TfdsSource
from mim_jax.data.video_folder import VideoFolderSource

__all__ = [
    "DEFAULT_CROP_FRACTION",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MAE_POLICY",
    "MEDIA_SOURCES",
    "SOURCES",
    "AudioFolderSource",
    "DigitsSource",
    "EvalTransform",
    "FinetuneAugment",
    "FolderSource",
    "LinearProbeAugment",
    "MaeTrainAugment",
    "RandAugment",
    "RandomErasing",
    "SyntheticSource",
    "TfdsSource",
    "VideoFolderSource",
    "build_source",
    "eval_crop",
    "eval_transform",
    "finetune_train_transform",
    "folder_split_path",
    "linprobe_train_transform",
    "mae_crop_fraction",
    "mae_train_transform",
    "make_pipeline",
    "media_split_path",
    "normalize",
    "random_resized_crop_params",
    "resize",
    "square_side",
]
