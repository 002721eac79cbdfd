r"""AudioMAE-geometry pretraining with time-frequency colour masks (``color_tf``).

COMMANDS::

    python -m mim_jax.train --config configs/audio_color_tf.py --workdir DIR
    python -m mim_jax.train --config configs/audio_color_tf.py:mask=random --workdir DIR  # AudioMAE
    python -m mim_jax.train --config configs/audio_color_tf.py:path=/data/audioset/train.csv \
        --workdir DIR

Geometry (docs/mae_recipes.md, ``facebookresearch/AudioMAE``): a 1024 x 128 log-mel
fbank (time x mel), one channel, 16 x 16 patches: a 64 x 8 grid, L = 512; mask ratio 0.8 (the
AudioMAE pretraining default; K = 102 visible), norm_pix loss, MAE's 2-D sin-cos table on the
rectangular grid. ``mask=random`` is AudioMAE's unstructured pretraining mask; the default
``color_tf`` draws coloured noise on the (T, F) grid (arg ``color``, default green).

Deviations: AudioMAE's default decoder (``decoder_mode=1``) is 16 Swin blocks with 4 x 4 windows;
mim_jax has the global MAE decoder only (AudioMAE's ``decoder_mode=0``): 8 x 512 here.
Optimizer [from memory, unverified]: AdamW (0.9, 0.95), wd 0.05, blr 2e-4, batch 512, 32 epochs
with 3 warmup epochs on AudioSet-2M.

DATA: ``audio_folder`` (``mim_jax.data.AudioFolderSource``): arg ``path`` (default
``data/audioset/train.csv``) is a folder of class folders or a ``<file> <label>`` list of wav /
flac / ogg files at any sample rate (resampled to 16 kHz). ``data.num_examples`` (arg, 2,000,000,
AudioSet-2M, approximate) is the config-time estimate; the run counts the files.

EXPECTED RESULT: AudioMAE (Huang et al., NeurIPS 2022) reports 47.3 mAP
on AudioSet-2M after fine-tuning with random pretraining masks [from memory; not verified here];
the colour-mask result is to be measured.
"""

from mim_jax.configs import base_config, parse_arg

_COLOR_MASKS = ("color_tf", "color")


def get_config(arg=None):
    arg = parse_arg(
        arg,
        mask="color_tf",
        color="green",
        ratio=0.8,
        epochs=32,
        num_examples=2_000_000,
        path="data/audioset/train.csv",
    )
    c = base_config(image_size=(1024, 128))  # (time frames, mel bins)
    c.model.name = "vit_base"
    c.model.patch_size = 16
    c.model.channels = 1
    c.model.decoder = "mae"
    c.model.decoder_width = 512
    c.model.decoder_depth = 8
    c.model.decoder_num_heads = 16
    c.model.norm_pix_loss = True
    c.model.dtype = "bfloat16"

    c.mask = arg.mask
    c.mask_ratio = arg.ratio
    if arg.mask in _COLOR_MASKS:
        c.mask_options.color = arg.color

    # AudioMAE's inputs from data.path: 16 kHz, 128-bin Kaldi fbank, 1024 frames, AudioSet
    # mean/std (data.fbank_mean / fbank_std); README "Video and audio data" for the layout.
    c.data.source = "audio_folder"
    c.data.path = arg.path
    c.data.fbank_mean = -4.2677393
    c.data.fbank_std = 4.5689974
    c.data.name = "audioset"
    c.data.split = "train"
    c.data.num_examples = arg.num_examples

    c.batch_size = 512
    c.epochs = arg.epochs
    c.warmup_epochs = 3
    c.blr = 2e-4
    c.lr = None
    c.b1, c.b2 = 0.9, 0.95
    c.weight_decay = 0.05
    c.log_every = 50
    c.checkpoint_every = 2000
    c.recon_every = 5000
    return c
