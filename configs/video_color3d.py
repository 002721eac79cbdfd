r"""ColorMAE-style 3-D noise masks for VideoMAE pretraining (``color3d``, smooth in time).

COMMANDS::

    python -m mim_jax.train --config configs/video_color3d.py --workdir DIR
    python -m mim_jax.train --config configs/video_color3d.py:color=red,ratio=0.9 --workdir DIR
    python -m mim_jax.train --config configs/video_color3d.py:path=/data/ssv2/train.csv,stride=2 \
        --workdir DIR

Same model, grid (16 frames, tubelet 2, 224, patch 16: 8 x 14 x 14) and recipe as
``videomae_tube.py`` (see it for the optimizer and the deviations), with the ``color3d`` mask:
noise of the chosen colour (default green) on the whole T' x H x W grid, top-k kept, so any ratio
works (0.9 -> 157 visible). The ColorMAE journal extension (arXiv 2503.16311) names a "Green3D"
video variant, but its sigmas and results are not published; the mask options here are the library
defaults.

DATA: as ``videomae_tube.py``: ``video_folder`` clips from arg ``path`` (default
``data/kinetics400/train.csv``), ``stride`` 4 (Kinetics) or 2 (Something-Something V2).

EXPECTED RESULT: to be measured (no published number for this exact setup is known to the
project; compare against ``videomae_tube.py`` at equal epochs).
"""

import pathlib

from mim_jax.configs import import_file, parse_arg


def get_config(arg=None):
    video = import_file(pathlib.Path(__file__).with_name("_video.py"))
    arg = parse_arg(
        arg,
        model="vit_base",
        color="green",
        ratio=0.9,
        epochs=800,
        num_examples=240_000,
        path="data/kinetics400/train.csv",
        stride=4,
    )
    c = video.video_config(
        arg.model, "color3d", arg.ratio, arg.epochs, arg.num_examples, arg.path, arg.stride
    )
    c.mask_options.color = arg.color
    return c
