r"""MAE's linear-probe recipe (ImageNet-1k), run by the shared loop.

COMMAND::

    python -m mim_jax.evaluate linear --checkpoint PRETRAIN_WORKDIR --recipe mae

Recipe (``facebookresearch/mae`` ``main_linprobe.py`` and LINPROBE.md): the frozen encoder's
cls token through BatchNorm (no affine) and a linear head, LARS (momentum 0.9, weight decay 0),
batch 16384, base lr 0.1 (lr = blr * batch / 256), 90 epochs with 10 warmup, every batch encoded
after MAE's one-draw RandomResizedCrop (scale 0.08-1, ``util/crop.py``) + flip; validation images
resized to 256 and centre-cropped to 224 (crop fraction 0.875). Expected: 68.0% top-1 for MAE's
ViT-B/16 (MAE paper).
"""

from mim_jax.configs import eval_job_config, parse_arg


def get_config(arg=None):
    arg = parse_arg(arg, epochs=90)
    c = eval_job_config("linear")
    c.recipe = "mae"
    c.epochs = arg.epochs
    return c
