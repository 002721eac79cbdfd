r"""Tiny MAE on the bundled scikit-learn digits: the offline smoke run (minutes on 2 CPU cores).

COMMAND::

    python -m mim_jax.train --config configs/demo.py --workdir /tmp/mim_demo
    python -m mim_jax.train --config configs/demo.py:mask=random,steps=300 --workdir /tmp/mim_rnd
    python -m mim_jax.evaluate knn --checkpoint /tmp/mim_demo      # and linear, reconstruct

Model: encoder width 64, depth 4, 4 heads (``model.encoder_overrides`` on ``vit_tiny``), decoder
32 wide, 2 deep; 32x32 inputs (the 8x8 digits upsampled by the loader) cut into 4x4 patches, an
8x8 token grid; green ColorMAE masks at ratio 0.75 (16 of 64 patches visible); batch 64,
``steps`` optimizer steps (default 600, about 27 epochs of the 1437-image digits train split;
22 steps per epoch).

Args (``configs/demo.py:key=value,...``): ``mask`` (any registry or colour name, default green),
``steps`` (default 600), ``patch`` (4 -> 8x8 grid, or 8 -> 4x4 grid; colour masks need >= 8x8),
``channels`` (3 by default; 1 if the digits loader yields grayscale).

EXPECTED RESULT (measured on 2 CPU cores: about 1 minute of training at ~700 img/s): the
masked-patch MSE (pixel targets, ``norm_pix_loss=False``: upsampled digits have near-constant 4x4
patches, whose per-patch normalisation is degenerate) falls from about 2.3 at step 10 to about
1.0 at step 600; reconstructions are mostly a blurred mean digit (the README says what recovers
strokes). On the 360 held-out digits the
frozen encoder reaches linear-probe top-1 92.3 +- 0.8% and kNN (k=20) top-1 76.1 +- 3.5% over
seeds 0, 1, 2, against 84.9 +- 1.3% and 62.7 +- 1.4% for the same encoder at random init
(``python -m mim_jax.evaluate.compare --masks green --steps 600 --seeds 0,1,2 --workdir DIR``).
With 300 steps the kNN accuracy is still at the random-init level.
"""

from mim_jax.configs import base_config, parse_arg


def get_config(arg=None):
    arg = parse_arg(arg, mask="green", steps=600, patch=4, channels=3)
    c = base_config()

    c.model.name = "vit_tiny"
    c.model.encoder_overrides = dict(width=64, depth=4, num_heads=4, mlp_dim=256)
    c.model.image_size = 32
    c.model.patch_size = arg.patch
    c.model.channels = arg.channels
    c.model.decoder_width = 32
    c.model.decoder_depth = 2
    c.model.decoder_num_heads = 4
    c.model.norm_pix_loss = False

    c.mask = arg.mask
    c.mask_ratio = 0.75

    c.data.source = "digits"
    c.data.name = "digits"
    c.data.split = "train"
    c.data.num_examples = 1437  # mim_jax.data.digits train split (first 1437 of 1797)

    c.batch_size = 64
    c.epochs = 27
    c.warmup_epochs = 1
    c.total_steps = arg.steps
    c.blr = None
    c.lr = 1e-3
    c.weight_decay = 0.05
    c.clip_norm = 1.0

    c.log_every = 10
    c.checkpoint_every = 100
    c.keep_checkpoints = 2
    c.recon_every = 100
    c.eval_every = 0
    return c
