r"""VideoMAE tube-masking pretraining (Tong et al., NeurIPS 2022, ``MCG-NJU/VideoMAE``).

COMMANDS::

    python -m mim_jax.train --config configs/videomae_tube.py --workdir DIR
    python -m mim_jax.train --config configs/videomae_tube.py:path=/data/k400/train.csv \
        --workdir DIR
    python -m mim_jax.train --config configs/videomae_tube.py:path=/data/ssv2/train.csv,stride=2 \
        --workdir DIR

Geometry (VideoMAE; docs/mae_recipes.md): 16 frames, tubelet 2, 224 x 224, patch 16: an
8 x 14 x 14 grid, L = 1568. Tube masking tiles one per-frame mask over the 8 time slices;
VideoMAE's ratio 0.9 masks int(0.9 * 196) = 176 per frame, 160 visible in total, so this config
uses ``mask_ratio = 1408/1568`` (the generator needs K divisible by T' = 8; 0.9 would give
K = 157 and fails validation). Decoder 4 x 384 (6 heads), ViT-B encoder.

Recipe [from memory, unverified against the repo]: AdamW (0.9, 0.95), wd 0.05, lr = blr * batch
/ 256 with blr 1.5e-4, 40 warmup epochs, cosine, 800 (SSv2) / 1600 (K400) epochs. Batch 1024 here
(set --config.batch_size to your hardware). Deviation: VideoMAE normalises targets per patch
*and channel* with unbiased std + eps outside the sqrt; mim_jax's norm_pix is MAE's per-patch
all-channel norm.

DATA: ``video_folder`` (``mim_jax.data.VideoFolderSource``): arg ``path`` (default
``data/kinetics400/train.csv``) is a folder of class folders or a ``<file> <label>`` list as
VideoMAE's annotation files; 16 frames every ``stride`` frames (arg, 4 for Kinetics, 2 for
Something-Something V2), VideoMAE's multi-scale crop, no flip. The run counts the files for the
epoch -> step conversion (``data.num_examples``, arg ``num_examples``, is only the config-time
estimate). README "Video and audio data" for the file layout.

EXPECTED RESULT: The VideoMAE paper reports ViT-B fine-tuned top-1 of
about 81.5 on Kinetics-400 (1600 epochs) and 70.8 on Something-Something V2 (800 epochs)
[from memory; not verified here].
"""

import pathlib

from mim_jax.configs import import_file, parse_arg


def get_config(arg=None):
    video = import_file(pathlib.Path(__file__).with_name("_video.py"))
    arg = parse_arg(
        arg,
        model="vit_base",
        mask="tube",
        ratio=video.TUBE_RATIO,
        epochs=800,
        num_examples=240_000,
        path="data/kinetics400/train.csv",
        stride=4,
    )
    return video.video_config(
        arg.model, arg.mask, arg.ratio, arg.epochs, arg.num_examples, arg.path, arg.stride
    )
