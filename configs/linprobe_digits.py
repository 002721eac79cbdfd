r"""Linear-probe recipe for the bundled digits (the demo's encoder), run by the shared loop.

COMMAND::

    python -m mim_jax.evaluate linear --checkpoint out/demo        # --recipe digits is the default

MAE's probe on 1437 digits: batch 256, 90 epochs with 10 warmup, and base lr 20. MAE's LARS moves
each weight matrix by about lr * 0.001 * |W| per step, so the 32x fewer steps per epoch than
ImageNet need a proportionally larger lr. No augmentation: a random crop of an 8 x 8 digit often
cuts off what makes it that digit; and the evaluation transform keeps the whole glyph (crop
fraction 1.0, where MAE's 0.875 centre crop would cut its border strokes).
"""

from mim_jax.configs import eval_job_config, parse_arg


def get_config(arg=None):
    arg = parse_arg(arg, epochs=90)
    c = eval_job_config("linear")
    c.recipe = "digits"
    c.epochs = arg.epochs
    c.batch_size = 256
    c.blr = 20.0
    c.augment = False
    c.crop_fraction = 1.0
    c.log_every = 100
    c.checkpoint_every = 200
    return c
