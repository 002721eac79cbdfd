"""Checkpoint conversion between mim_jax and PyTorch (timm, transformers, ``facebookresearch/mae``).

Export (needs ``safetensors``; loading the result needs torch + timm / transformers)::

    python -m mim_jax.export timm --checkpoint WORKDIR --out DIR [--step N]
    python -m mim_jax.export timm --checkpoint FINETUNED_DIR --out DIR     # with fc_norm + head
    python -m mim_jax.export transformers --checkpoint WORKDIR --out DIR [--arch vit_mae|vit]
    python -m mim_jax.export init-run --weights FILE.pth --config CFG --workdir NEW_WORKDIR

>>> from mim_jax.export import export_timm, export_transformers, ClassifierHead
>>> export_timm(pretrained, "out/timm")                  # Pretrained, MAE, ViTEncoder or workdir
>>> export_timm(encoder, "out/cls", head=ClassifierHead(kernel, bias, "avg", scale, bias2))
>>> export_transformers(pretrained, "out/hf", arch="vit_mae")

Import of MAE's PyTorch checkpoints (``models_mae.py`` state dicts; .pth needs torch)::

>>> from mim_jax.export import mae_from_state_dict, load_mae_state_dict
>>> model = mae_from_state_dict("mae_visualize_vit_base.pth")        # MAE with the weights
>>> load_mae_state_dict(my_model, "mae_pretrain_vit_base.pth", missing_decoder="keep")

Start pretraining from imported weights: :func:`init_workdir` (``init-run`` above) writes them as
step 0 of a new run. Layout table and conversions: :mod:`mim_jax.export.layout`.
"""

from mim_jax.export.head import ClassifierHead, load_finetuned
from mim_jax.export.init_run import init_workdir
from mim_jax.export.mae import (
    load_mae_state_dict,
    mae_config_from_state_dict,
    mae_from_state_dict,
    mae_state_dict,
)
from mim_jax.export.source import ExportSource, resolve
from mim_jax.export.to_timm import export_timm, timm_config, timm_model_args, timm_state_dict
from mim_jax.export.to_transformers import (
    export_transformers,
    vit_config,
    vit_mae_config,
    vit_mae_state_dict,
    vit_state_dict,
)

__all__ = [
    "ClassifierHead",
    "ExportSource",
    "export_timm",
    "export_transformers",
    "init_workdir",
    "load_finetuned",
    "load_mae_state_dict",
    "mae_config_from_state_dict",
    "mae_from_state_dict",
    "mae_state_dict",
    "resolve",
    "timm_config",
    "timm_model_args",
    "timm_state_dict",
    "vit_config",
    "vit_mae_config",
    "vit_mae_state_dict",
    "vit_state_dict",
]
