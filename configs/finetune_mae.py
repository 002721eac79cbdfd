r"""MAE's end-to-end fine-tuning recipe (ViT-B on ImageNet-1k), run by the shared loop.

COMMAND::

    python -m mim_jax.evaluate finetune --checkpoint PRETRAIN_WORKDIR --recipe mae

(``--recipe configs/finetune_mae.py`` is the same; ``--recipe.FIELD=VALUE`` overrides a field.)
The job resumes like pretraining: rerun the command after a preemption.

Recipe (``facebookresearch/mae`` FINETUNE.md for ViT-B): batch 1024 (MAE: 32 x 4 GPUs x 8
accumulation), base lr 5e-4 (lr = blr * batch / 256), layer decay 0.65 for ViT-B and 0.75 for
ViT-L/H (unset here: picked by the encoder size), weight decay 0.05, drop path 0.1, 100 epochs
with 5 warmup, min lr 1e-6, mixup 0.8, cutmix 1.0, label smoothing 0.1, global average pooling
with fc_norm, a trained position table. Training images: timm's RandomResizedCrop (scale
0.08-1, bicubic) + flip + RandAugment ``rand-m9-mstd0.5-inc1`` + normalise + RandomErasing
(p 0.25, pixel mode, one box); validation images: shorter side to 256, centre crop 224 (crop
fraction 0.875, ``util/datasets.py``). Every one of these is ``eval_job_config``'s default.
Expected: 83.6% top-1 for MAE's ViT-B/16 (MAE paper, Table 3).
"""

from mim_jax.configs import eval_job_config, parse_arg


def get_config(arg=None):
    arg = parse_arg(arg, epochs=100)
    c = eval_job_config("finetune")
    c.recipe = "mae"
    c.epochs = arg.epochs
    return c
