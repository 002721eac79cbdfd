r"""Tiny AudioMAE on small generated (or your own) audio files: the audio smoke run on CPU.

COMMANDS::

    python -m mim_jax.data.toy_media audio /tmp/pitch           # writes 4 x 40 short tone files
    python -m mim_jax.train --config configs/audio_demo.py:path=/tmp/pitch --workdir DIR
    python -m mim_jax.train --config configs/audio_demo.py:path=/tmp/pitch,mask=random \
        --workdir DIR

Model: encoder width 64, depth 4, 4 heads, decoder 32 x 2; a 64-frame (0.64 s) x 64-mel Kaldi
fbank (AudioMAE's pipeline with fewer frames and bins), one channel, patch 8: an 8 x 8 (time x
frequency) grid. ``mask=color_tf`` (default, green) or any other mask, ratio 0.75. Batch 32,
``steps`` optimizer steps (default 300), lr 1e-3.

EXPECTED RESULT (the tones and chirps of ``mim_jax.data.toy_media``, pitch class = label): the
masked-patch loss falls. kNN on the frozen encoder: ``python -m mim_jax.evaluate knn
--checkpoint DIR`` (``--random-init`` for the baseline). No kNN margin over random init is
shown on these toy clips yet (issue #17).
"""

from mim_jax.configs import base_config, parse_arg


def get_config(arg=None):
    arg = parse_arg(arg, path="", mask="color_tf", color="green", steps=300, ratio=0.75)
    c = base_config(image_size=(64, 64))  # (fbank frames, mel bins)
    c.model.name = "vit_tiny"
    c.model.encoder_overrides = dict(width=64, depth=4, num_heads=4, mlp_dim=256)
    c.model.patch_size = 8
    c.model.channels = 1
    c.model.decoder_width = 32
    c.model.decoder_depth = 2
    c.model.decoder_num_heads = 4
    c.model.norm_pix_loss = True

    c.mask = arg.mask
    c.mask_ratio = arg.ratio
    if arg.mask in ("color_tf", "color"):
        c.mask_options.color = arg.color

    c.data.source = "audio_folder"
    c.data.name = "toy_pitch"
    c.data.path = arg.path or None
    c.data.num_examples = 160  # the toy_media train split (4 classes x 40)

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
