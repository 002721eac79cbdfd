r"""MAE / ColorMAE pretraining on ImageNet-1K (ViT-B/16, ViT-L/16, ViT-H/14).

COMMANDS::

    # MAE (He et al. 2022), random masking 0.75, 800 epochs:
    python -m mim_jax.train --config configs/mae_in1k.py:model=vit_base --workdir DIR
    python -m mim_jax.train --config configs/mae_in1k.py:model=vit_large,epochs=1600 --workdir DIR
    python -m mim_jax.train --config configs/mae_in1k.py:model=vit_huge,epochs=1600 --workdir DIR
    # ColorMAE (Hinojosa et al., ECCV 2024): red | blue | green | purple noise masks:
    python -m mim_jax.train --config configs/mae_in1k.py:model=vit_base,mask=green,epochs=800 \
        --workdir DIR

Args: ``model`` (vit_base | vit_large | vit_huge; ViT-H uses patch 14, a 16x16 grid),
``mask`` (random, or a ColorMAE colour; any other registry name keeps the MAE recipe),
``epochs`` (MAE: 800 or 1600; ColorMAE: 100 / 300 / 800 / 1600).

Data: ``tfds`` ``imagenet2012`` train split (1,281,167 images); RandomResizedCrop(0.2-1,
bicubic) + flip is the input pipeline's job.

MAE recipe (facebookresearch/mae; docs/mae_recipes.md): AdamW (0.9, 0.95), wd 0.05,
lr = blr * batch / 256 with blr 1.5e-4 and batch 4096 (lr 2.4e-3), 40 warmup epochs then
half-cycle cosine per step, norm_pix loss, decoder 8 x 512 (16 heads), cls/mask tokens decayed.
ColorMAE recipe (ColorMAE paper and its mmpretrain MAE recipe): batch 4096, absolute lr
2.4e-3, betas (0.9, 0.95), wd 0.05, 40 warmup epochs, cosine, norm_pix, decoder 8 x 512, no
weight decay on cls/mask tokens (``decay_tokens=False``), mask ratio 0.75 (49 of 196 visible).

EXPECTED RESULTS (ImageNet-1K top-1 after the papers' fine-tuning recipes; this config only
pretrains):
- MAE, facebookresearch/mae repo results (1600 epochs, fine-tuned): ViT-B 83.66, ViT-L 85.95,
  ViT-H 86.93; linear probe B 67.8 / L 76.0 / H 77.2 (paper, TF: 68.0 / 75.8 / 76.6).
- ColorMAE paper, Table 1 (ViT-B): random / blue / green / purple / red =
  800 ep: 83.17 / 83.02 / 83.57 / 82.92 / 82.41; 1600 ep: 83.43 / 83.26 / 83.77 / 83.20 / 82.73;
  ADE20K mIoU (UperNet) at 800 ep: random 46.46, green 49.18 (the abstract's +2.72).
"""

from mim_jax.configs import base_config, parse_arg

_COLORS = ("red", "blue", "green", "purple")
_PATCH = {"vit_base": 16, "vit_large": 16, "vit_huge": 14}


def get_config(arg=None):
    arg = parse_arg(arg, model="vit_base", mask="random", epochs=800)
    if arg.model not in _PATCH:
        raise ValueError(f"model={arg.model!r}; valid: {', '.join(_PATCH)}.")
    c = base_config()

    c.model.name = arg.model
    c.model.image_size = 224
    c.model.patch_size = _PATCH[arg.model]
    c.model.decoder = "mae"
    c.model.decoder_width = 512
    c.model.decoder_depth = 8
    c.model.decoder_num_heads = 16
    c.model.norm_pix_loss = True
    c.model.dtype = "bfloat16"

    c.mask = arg.mask
    c.mask_ratio = 0.75

    c.data.source = "tfds"
    c.data.name = "imagenet2012"
    c.data.split = "train"
    c.data.num_examples = 1_281_167

    c.batch_size = 4096
    c.epochs = arg.epochs
    c.warmup_epochs = 40
    c.b1, c.b2 = 0.9, 0.95
    c.weight_decay = 0.05
    c.clip_norm = None
    if arg.mask in _COLORS:  # ColorMAE's mmpretrain recipe
        c.blr = None
        c.lr = 2.4e-3
        c.decay_tokens = False
    else:  # MAE
        c.blr = 1.5e-4
        c.lr = None
        c.decay_tokens = True

    c.log_every = 100
    c.checkpoint_every = 2000
    c.recon_every = 5000
    return c
