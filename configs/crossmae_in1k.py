r"""CrossMAE pretraining on ImageNet-1K (Fu et al. 2024, ``TonyLianLong/CrossMAE``).

COMMANDS::

    python -m mim_jax.train --config configs/crossmae_in1k.py --workdir DIR
    python -m mim_jax.train --config configs/crossmae_in1k.py:model=vit_huge,mask=green \
        --workdir DIR

Recipe (CrossMAE README; docs/mae_recipes.md): MAE's random masking at 0.75, but the
cross-attention decoder only predicts ``kept_mask_ratio = 0.25`` of all patches, i.e.
``pred_fraction = 0.25 / 0.75`` of the masked ones (49 of 147 at 14x14); decoder 12 x 512
(16 heads), ``weight_fm`` with ``use_input`` (each decoder block reads its own mix of encoder
feature maps); norm_pix MSE over the predicted tokens. lr = (kmr / mr) * blr * batch / 256
(``lr_scale`` follows ``model.pred_fraction`` by reference), blr 1.5e-4, batch 4096, AdamW
(0.9, 0.95), wd 0.05, 40 warmup epochs, 800 epochs. ``pred_fraction=1`` (arg) decodes all
masked patches (the released ViT-S/B/L recipe, mr = kmr = 0.75).

Args: ``model`` (vit_small | vit_base | vit_large | vit_huge), ``mask`` (any registry or colour
name), ``pred_fraction`` (default 1/3), ``epochs`` (default 800).

EXPECTED RESULT: not verified here; the CrossMAE paper reports
ImageNet-1K fine-tuning accuracy on par with MAE (ViT-B about 83.5 top-1 at 800 epochs,
[from memory, unverified]) at a lower decoder cost.
"""

from mim_jax.configs import base_config, parse_arg

_PATCH = {"vit_small": 16, "vit_base": 16, "vit_large": 16, "vit_huge": 14}


def get_config(arg=None):
    arg = parse_arg(arg, model="vit_base", mask="random", pred_fraction=0.25 / 0.75, epochs=800)
    if arg.model not in _PATCH:
        raise ValueError(f"model={arg.model!r}; valid: {', '.join(_PATCH)}.")
    c = base_config()

    c.model.name = arg.model
    c.model.image_size = 224
    c.model.patch_size = _PATCH[arg.model]
    c.model.decoder = "crossmae"
    c.model.decoder_width = 512
    c.model.decoder_depth = 12
    c.model.decoder_num_heads = 16
    c.model.pred_fraction = float(arg.pred_fraction)
    c.model.weight_fm = True
    c.model.use_input = True
    c.model.self_attn = False
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
    c.blr = 1.5e-4
    c.lr = None
    c.lr_scale = c.model.get_oneway_ref("pred_fraction")  # CrossMAE: lr *= kmr / mr
    c.b1, c.b2 = 0.9, 0.95
    c.weight_decay = 0.05
    c.decay_tokens = True

    c.log_every = 100
    c.checkpoint_every = 2000
    c.recon_every = 5000
    return c
