"""The model flags shared by ``bench train-step``, ``bench floor`` and ``bench plan``."""

from __future__ import annotations

import argparse


def add_model_arguments(parser: argparse.ArgumentParser, default_model: str) -> None:
    """The MAE architecture flags shared by ``train-step`` and ``plan``."""
    parser.add_argument("--model", default=default_model, help="vit_tiny ... vit_giant")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--patch-size", type=int, default=16)
    parser.add_argument("--decoder", default="mae", choices=("mae", "crossmae"))
    parser.add_argument("--decoder-width", type=int, default=512)
    parser.add_argument("--decoder-depth", type=int, default=8)
    parser.add_argument("--decoder-heads", type=int, default=16)
    parser.add_argument("--dtype", default="float32", help="compute dtype (float32 or bfloat16)")


def model_kwargs(args: argparse.Namespace) -> dict:
    """``mim_jax.models.mae_model`` keyword arguments from :func:`add_model_arguments`' flags."""
    return dict(
        image_size=args.image_size,
        patch_size=args.patch_size,
        decoder=args.decoder,
        decoder_width=args.decoder_width,
        decoder_depth=args.decoder_depth,
        decoder_num_heads=args.decoder_heads,
        dtype=args.dtype,
    )
