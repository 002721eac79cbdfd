r"""Tiny AudioMAE on small generated (or your own) audio files: the audio demo on CPU.

COMMANDS::

    python -m mim_jax.data.toy_media audio /tmp/timbre          # writes 4 x 40 short notes
    python -m mim_jax.train --config configs/audio_demo.py:path=/tmp/timbre --workdir DIR
    python -m mim_jax.evaluate knn --checkpoint DIR --k 5 --pool mean   # on /tmp/timbre/val
    python -m mim_jax.evaluate knn --checkpoint DIR --k 5 --pool mean --random-init  # baseline
    python -m mim_jax.train --config configs/audio_demo.py:path=/tmp/timbre,mask=random \
        --workdir DIR

Model: encoder width 64, depth 4, 4 heads, decoder 32 x 2; a 64-frame (0.64 s) x 64-mel Kaldi
fbank (AudioMAE's pipeline with fewer frames and bins), one channel, patch 8: an 8 x 8 (time x
frequency) grid. ``mask=color_tf`` (default, green) or any other mask, ratio 0.75. Batch 16,
``steps`` optimizer steps (default 1200), lr 1e-3. The 160 spectrograms are computed once and
kept in memory (``data.cache_decoded``).

EXPECTED RESULT (the notes of ``mim_jax.data.toy_media.write_timbre_audio``: class = harmonic
profile, at a random pitch over two octaves): kNN top-1 (k 5, mean pool) on 4 x 25 held-out
files, 3 seeds: 0.93 / 0.93 / 0.99 pretrained against 0.79 / 0.81 / 0.86 for the same encoder at
random init (chance 0.25). README, "Video and audio data", has the commands.
"""

from mim_jax.configs import base_config, parse_arg


def get_config(arg=None):
    arg = parse_arg(arg, path="", mask="color_tf", color="green", steps=1200, ratio=0.75)
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
    c.data.name = "toy_timbre"
    c.data.path = arg.path or None
    c.data.num_examples = 160  # the toy_media train split (4 classes x 40)
    c.data.cache_decoded = True  # 160 short files: one fbank each

    c.batch_size = 16
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
