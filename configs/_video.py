"""Shared VideoMAE settings for ``videomae_tube.py`` and ``video_color3d.py`` (not a config)."""

from mim_jax.configs import base_config

# Tube masking on the 8 x 14 x 14 grid: VideoMAE masks int(0.9 * 196) = 176 patches per frame,
# i.e. 1408 of 1568 (K = 160 visible, a multiple of T' = 8). 0.9 itself gives K = 157.
TUBE_RATIO = 1408 / 1568


def video_config(
    model: str,
    mask: str,
    ratio: float,
    epochs: int,
    num_examples: int,
    path: str = "data/kinetics400/train.csv",
    stride: int = 4,
):
    c = base_config()
    c.model.name = model
    c.model.image_size = 224
    c.model.patch_size = 16
    c.model.num_frames = 16
    c.model.tubelet_size = 2
    c.model.decoder = "mae"
    c.model.decoder_width = 384
    c.model.decoder_depth = 4
    c.model.decoder_num_heads = 6
    c.model.norm_pix_loss = True
    c.model.dtype = "bfloat16"

    c.mask = mask
    c.mask_ratio = ratio

    # VideoMAE clips decoded from data.path (a folder of class folders, or a "<file> <label>"
    # list as VideoMAE's Kinetics/SSv2 train.csv); README "Video and audio data" for the layout.
    c.data.source = "video_folder"
    c.data.path = path
    c.data.frame_stride = stride  # VideoMAE: 4 on Kinetics-400, 2 on Something-Something V2
    c.data.flip_prob = 0.0  # VideoMAE's pretraining crop does not flip (SSv2 labels need it off)
    c.data.name = "kinetics400"
    c.data.split = "train"
    c.data.num_examples = num_examples

    c.batch_size = 1024
    c.epochs = epochs
    c.warmup_epochs = 40
    c.blr = 1.5e-4
    c.lr = None
    c.b1, c.b2 = 0.9, 0.95
    c.weight_decay = 0.05
    c.log_every = 50
    c.checkpoint_every = 1000
    c.recon_every = 5000
    return c
