"""Experiment configs: big_vision-style config files, their schema, overrides and validation.

One module per job: :mod:`~mim_jax.configs.schema` (``base_config``: every field and its default),
:mod:`~mim_jax.configs.loading` (config files, ``file.py:arg`` specs, typed overrides) and
:mod:`~mim_jax.configs.validation` (every problem of a config, with the field to change). The
conversions into domain objects live with the types they build:
``mim_jax.models.mae_kwargs(config)``, ``mim_jax.masking.mask_spec_from_config(config)`` and
``mim_jax.core.optimizer.optimizer_config(config, steps_per_epoch)``.

A config file (see ``configs/*.py``) defines ``get_config(arg: str | None) -> ConfigDict``; it is
named on the command line as ``path/to/file.py[:arg]`` where ``arg`` is ``key=value,key=value``
(a bare ``key`` means ``key=True``), e.g.::

    python -m mim_jax.train --config configs/mae_in1k.py:model=vit_base,mask=green \\
        --workdir DIR --config.batch_size=1024 --config.model.dtype=bfloat16

>>> from mim_jax import configs
>>> cfg = configs.load("configs/demo.py", ["config.mask=random", "epochs=2"])
>>> configs.validate(cfg, num_devices=1)       # fails early, saying which field to change

The returned config is locked: a typo in an override or in code raises instead of adding a field.

Schema (every shipped config has all of these fields; ``None`` = optional/unset)::

    config.model                 kwargs of mim_jax.models.mae.mae_config
      .name                      encoder size: vit_tiny | vit_small | vit_base | vit_large | ...
      .image_size                int, or (H, W) (a spectrogram is (T, F) with channels=1)
      .patch_size                int, or (p, q)
      .channels                  3 (1 for audio)
      .num_frames, .tubelet_size video: frames (None = image model) and tubelet length
      .decoder                   "mae" | "crossmae"
      .decoder_width/_depth/_num_heads
      .pred_fraction, .weight_fm, .use_input, .self_attn   CrossMAE options
      .cls_token, .norm_pix_loss, .dtype ("float32" | "bfloat16"), .param_dtype, .remat
      .encoder_overrides         ConfigDict of ViTConfig fields (width, depth, num_heads, mlp_dim);
                                 an override may add any of these four keys
    config.mask                  registry name (masking.names()) or a colour shorthand
    config.mask_ratio            fraction of patches masked (K = N - floor(N * r + 1/2) visible)
    config.mask_options          ConfigDict of the generator's options (a None value is dropped;
                                 an override may add a key the configured mask accepts)
    config.data
      .source                    "digits" | "folder" | "tfds" | "synthetic" | "video_folder" |
                                 "audio_folder"
      .name, .path, .split       tfds name / image, video or audio folder (or list file) / split
                                 (image size is model.image_size)
      .num_examples              training-set size (for steps per epoch), None if unknown
      .memory_mb                 budget for decoded images in flight (image folders): an image
                                 too large to decode within its share is skipped and reported
      .crop_scale                RandomResizedCrop area range, (0.2, 1.0) as MAE
      .frame_stride, .flip_prob  video_folder: frames between sampled frames (4; SSv2: 2) and the
                                 chance of flipping a clip
      .fbank_mean, .fbank_std    audio_folder: fbank normalisation (AudioMAE's AudioSet values)
      .cache_decoded             video/audio_folder: keep each file's decoded frames / fbank in
                                 memory after its first read (small sets; False)
    config.batch_size            global batch (divisible by accum_steps; micro-batch by devices)
    config.accum_steps           gradient accumulation micro-steps per optimizer step
    config.epochs, .warmup_epochs
    config.total_steps           optional: overrides epochs * steps_per_epoch
    config.lr | config.blr       absolute peak lr, or MAE's base lr (lr = blr * batch_size / 256);
                                 exactly one of them is set
    config.lr_scale              multiplies the peak lr (CrossMAE: kept_mask_ratio / mask_ratio)
    config.b1, .b2, .weight_decay, .end_lr, .clip_norm (None = no clipping), .decay_tokens
    config.seed
    config.log_every, .checkpoint_every, .keep_checkpoints, .recon_every, .eval_every   (steps)
    config.log_all_processes     progress lines from every process (default: process 0 only)
    config.wandb.enabled, .project, .entity, .mode, .run_name   Weights & Biases logging
                                 (off by default; mode online | offline | disabled)
    config.mesh.data, .fsdp, .tensor   mesh axis sizes; -1 = all remaining devices
"""

from mim_jax.configs.loading import (
    CONFIG_DIR,
    apply_override,
    import_file,
    load,
    parse_arg,
    split_top_level,
)
from mim_jax.configs.schema import ConfigDict, base_config, eval_job_config, to_json
from mim_jax.configs.validation import mask_grid, validate

__all__ = [
    "CONFIG_DIR",
    "ConfigDict",
    "apply_override",
    "base_config",
    "eval_job_config",
    "import_file",
    "load",
    "mask_grid",
    "parse_arg",
    "split_top_level",
    "to_json",
    "validate",
]
