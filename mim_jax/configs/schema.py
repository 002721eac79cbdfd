"""The run config's schema: :func:`base_config` holds every field with its default.

Config files (``configs/*.py``) start from :func:`base_config` and edit it; the fields are listed
in :mod:`mim_jax.configs`.
"""

from __future__ import annotations

import json
from typing import Any

import ml_collections
from ml_collections import config_dict

from mim_jax.data.fbank import AUDIOSET_MEAN, AUDIOSET_STD

ConfigDict = ml_collections.ConfigDict


def base_config(image_size: int | tuple[int, int] = 224) -> ConfigDict:
    """Every schema field with MAE ViT-B/16 ImageNet defaults (unlocked; files edit it).

    ``image_size`` fixes the field's type: an int (square images) or an (H, W) / (T, F) tuple.
    """
    c = ConfigDict()
    c.model = ConfigDict(
        dict(
            name="vit_base",
            image_size=image_size,
            patch_size=16,
            channels=3,
            num_frames=config_dict.placeholder(int),
            tubelet_size=2,
            decoder="mae",
            decoder_width=512,
            decoder_depth=8,
            decoder_num_heads=16,
            pred_fraction=1.0,
            self_attn=False,
            weight_fm=False,
            use_input=False,
            cls_token=True,
            norm_pix_loss=True,
            dtype="float32",
            param_dtype="float32",
            remat=False,
            encoder_overrides=ConfigDict(),
        )
    )
    c.mask = "random"
    c.mask_ratio = 0.75
    c.mask_options = ConfigDict()
    c.data = ConfigDict(
        dict(
            source="tfds",
            name="imagenet2012",
            path=config_dict.placeholder(str),
            split="train",
            num_examples=config_dict.placeholder(int),
            memory_mb=8192,
            crop_scale=(0.2, 1.0),  # RandomResizedCrop's area range (MAE: 0.2-1)
            frame_stride=4,  # video_folder: frames between sampled frames
            flip_prob=0.5,  # video_folder: chance of flipping a clip
            fbank_mean=AUDIOSET_MEAN,  # audio_folder: fbank normalisation
            fbank_std=AUDIOSET_STD,
            cache_decoded=False,  # video/audio_folder: keep decoded files in memory
        )
    )
    c.data.num_examples = 1_281_167
    c.batch_size = 4096
    c.accum_steps = 1
    c.epochs = 800
    c.warmup_epochs = 40
    c.total_steps = config_dict.placeholder(int)
    c.lr = config_dict.placeholder(float)
    c.blr = config_dict.placeholder(float)
    c.blr = 1.5e-4
    c.lr_scale = 1.0
    c.b1 = 0.9
    c.b2 = 0.95
    c.weight_decay = 0.05
    c.end_lr = 0.0
    c.clip_norm = config_dict.placeholder(float)
    c.decay_tokens = True
    c.seed = 0
    c.log_every = 50
    c.checkpoint_every = 1000
    c.keep_checkpoints = 3
    c.recon_every = 1000
    c.eval_every = 0
    c.log_all_processes = False  # progress lines from every process, not just process 0
    c.wandb = ConfigDict(  # optional Weights & Biases logging (mim_jax.core.wandb_log)
        dict(
            enabled=False,
            project="mim_jax",
            entity=config_dict.placeholder(str),
            mode="online",
            run_name=config_dict.placeholder(str),
        )
    )
    c.mesh = ConfigDict(dict(data=-1, fsdp=1, tensor=1))
    return c


def to_json(config: ConfigDict) -> str:
    """The resolved config (after overrides) as indented JSON with sorted keys: what
    ``--print-config`` prints and what a run writes to ``WORKDIR/config.json``."""
    return json.dumps(_jsonable(config.to_dict()), indent=2, sort_keys=True) + "\n"


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def eval_job_config(job: str) -> ConfigDict:
    """Every field of a fine-tuning (``job="finetune"``) or linear-probe (``"linear"``) job.

    The job reads a pretraining run (``pretrained``: its workdir; unset with ``random_init``
    for a baseline) and trains on that run's dataset (``config.data``) unless the split fields
    say otherwise. Defaults are MAE's ImageNet recipes (``facebookresearch/mae``
    ``main_linprobe.py``, ``main_finetune.py``, ``util/datasets.py``); ``configs/finetune_*.py``
    and ``configs/linprobe_*.py`` are the shipped recipes.

    Transform fields (the transforms are in :mod:`mim_jax.data.augment`):

    - ``crop_fraction``: evaluation transform of validation images (and of training images
      when ``augment`` is off): shorter side to ``int(size / crop_fraction)`` (bicubic), centre
      crop ``size``. ``None``: MAE's rule, 224/256 = 0.875 up to 224 pixels, 1.0 above.
    - ``augment``: training images augmented. Linear probe: MAE's one-draw RandomResizedCrop
      (scale 0.08-1) + flip; fine-tuning: timm's RandomResizedCrop (scale 0.08-1) + flip +
      RandAugment ``aa`` + normalise + RandomErasing (``reprob``, ``remode``, ``recount``).
    - ``aa``: timm RandAugment policy string (None, ``""`` or ``"none"``: off); ``reprob``: erasing
      probability (0: off); ``remode``: ``pixel`` | ``rand`` | ``const``; ``recount``: boxes.
    - ``train_pos_embed``: the position table trains (timm's ``pos_embed`` parameter).
    - ``data_workers``: grain worker processes preparing training batches (0: in-process).
    """
    if job not in ("finetune", "linear"):
        raise ValueError(f"eval job {job!r}; valid: finetune, linear.")
    c = ConfigDict()
    c.job = job
    c.recipe = "mae"
    c.pretrained = config_dict.placeholder(str)
    c.step = config_dict.placeholder(int)
    c.random_init = False
    c.init_seed = 0
    c.train_split = config_dict.placeholder(str)
    c.val_split = config_dict.placeholder(str)
    c.val_path = config_dict.placeholder(str)
    c.data_dir = config_dict.placeholder(str)
    c.num_classes = config_dict.placeholder(int)
    c.train_limit = config_dict.placeholder(int)
    c.val_limit = config_dict.placeholder(int)
    c.epochs = 90 if job == "linear" else 100
    c.warmup_epochs = 10.0 if job == "linear" else 5.0
    c.batch_size = 16384 if job == "linear" else 1024
    c.blr = 0.1 if job == "linear" else 5e-4
    c.lr = config_dict.placeholder(float)
    c.weight_decay = 0.0 if job == "linear" else 0.05
    c.crop_fraction = config_dict.placeholder(float)  # None: MAE's rule for the input size
    c.augment = True
    c.data_workers = 0
    c.eval_every_epochs = 0  # 0: evaluate after the last epoch only (and at checkpoints)
    c.eval_batch_size = 256
    c.seed = 0
    c.log_every = 50
    c.checkpoint_every = 1000
    c.keep_checkpoints = 2
    if job == "linear":
        c.pool = "cls"
        c.momentum = 0.9
        c.bn_momentum = 0.1
    else:
        c.global_pool = True
        c.min_lr = 1e-6
        c.layer_decay = config_dict.placeholder(float)
        c.b1 = 0.9
        c.b2 = 0.999
        c.drop_path = 0.1
        c.mixup = 0.8
        c.cutmix = 1.0
        c.mixup_prob = 1.0
        c.switch_prob = 0.5
        c.smoothing = 0.1
        c.aa = config_dict.placeholder(str)  # None (or "none"): no RandAugment
        c.aa = "rand-m9-mstd0.5-inc1"
        c.reprob = 0.25
        c.remode = "pixel"
        c.recount = 1
        c.train_pos_embed = True
    return c
