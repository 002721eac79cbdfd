r"""Fine-tuning recipe for the bundled digits (the demo's encoder), run by the shared loop.

COMMAND::

    python -m mim_jax.evaluate finetune --checkpoint out/demo     # --recipe digits is the default

MAE's recipe scaled to 1437 8 x 8 digits: batch 64, base lr 1e-3, 30 epochs with 3 warmup,
drop path 0.1, label smoothing 0.1, and no mixup / cutmix (mixing two digits makes a third
digit, not a blend of two classes). The transforms differ from MAE's on purpose: the whole
8 x 8 glyph is kept (crop fraction 1.0; a centre crop cuts off its border strokes) and training
images are not augmented (no RandomResizedCrop, flip, RandAugment or RandomErasing: an 8% crop,
a mirrored 2 or 5, an inverted or solarised glyph, or an erased box changes or hides the digit).
The position table trains, as in MAE.
"""

from mim_jax.configs import eval_job_config, parse_arg


def get_config(arg=None):
    arg = parse_arg(arg, epochs=30)
    c = eval_job_config("finetune")
    c.recipe = "digits"
    c.epochs = arg.epochs
    c.warmup_epochs = 3.0
    c.batch_size = 64
    c.blr = 1e-3
    c.mixup = 0.0
    c.cutmix = 0.0
    c.crop_fraction = 1.0
    c.augment = False
    c.aa = None
    c.reprob = 0.0
    c.log_every = 20
    c.checkpoint_every = 200
    return c
