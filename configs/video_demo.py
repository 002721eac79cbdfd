r"""Tiny VideoMAE on small generated (or your own) video clips: the video smoke run on CPU.

COMMANDS::

    python -m mim_jax.data.toy_media video /tmp/motion          # writes 4 x 40 small mp4 clips
    python -m mim_jax.train --config configs/video_demo.py:path=/tmp/motion --workdir DIR
    python -m mim_jax.train --config configs/video_demo.py:path=/tmp/motion,mask=color3d \
        --workdir DIR

Model: encoder width 64, depth 4, 4 heads, decoder 32 x 2; clips of 8 frames (``frame_stride``
1) at 32 x 32, tubelet 2, patch 8: a 4 x 4 x 4 grid (64 tokens). ``mask=tube`` (default) keeps
4 patches per frame slice (ratio 0.75, K = 16 divisible by T' = 4); ``color3d`` takes any ratio.
Batch 32, ``steps`` optimizer steps (default 300), lr 1e-3.

EXPECTED RESULT (the moving-square clips of ``mim_jax.data.toy_media``, direction = class): the
masked-patch loss falls. kNN on the frozen encoder: ``python -m mim_jax.evaluate knn
--checkpoint DIR`` (``--random-init`` for the baseline). No kNN margin over random init is
shown on these toy clips yet (issue #17).
"""

from mim_jax.configs import base_config, parse_arg


def get_config(arg=None):
    arg = parse_arg(arg, path="", mask="tube", steps=300, stride=1, ratio=0.75)
    c = base_config()
    c.model.name = "vit_tiny"
    c.model.encoder_overrides = dict(width=64, depth=4, num_heads=4, mlp_dim=256)
    c.model.image_size = 32
    c.model.patch_size = 8
    c.model.num_frames = 8
    c.model.tubelet_size = 2
    c.model.decoder_width = 32
    c.model.decoder_depth = 2
    c.model.decoder_num_heads = 4
    c.model.norm_pix_loss = True

    c.mask = arg.mask
    c.mask_ratio = arg.ratio

    c.data.source = "video_folder"
    c.data.name = "toy_motion"
    c.data.path = arg.path or None
    c.data.num_examples = 160  # the toy_media train split (4 classes x 40)
    c.data.frame_stride = arg.stride
    c.data.flip_prob = 0.0  # left/right motion is the label the demo probes

    c.batch_size = 32
    c.epochs = 60
    c.warmup_epochs = 4
    c.total_steps = arg.steps
    c.blr = None
    c.lr = 1e-3
    c.weight_decay = 0.05
    c.clip_norm = 1.0
    c.log_every = 10
    c.checkpoint_every = 100
    c.keep_checkpoints = 2
    c.recon_every = 0
    return c
