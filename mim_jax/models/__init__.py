"""ViT encoders, MAE and CrossMAE decoders, position embeddings, patching, loss and FLOPs.

>>> from mim_jax import masking, models
>>> model = models.mae_model("vit_tiny", image_size=224, patch_size=16, rngs=0)
>>> m = masking.get("random")(key, batch_size=8, grid=model.config.tokens.grid, mask_ratio=0.75)
>>> loss, out = model(images, m)          # images: float[8, 224, 224, 3]
"""

from mim_jax.models.config import (
    VIT_SIZES,
    DecoderConfig,
    MAEConfig,
    ViTConfig,
    vit_config,
)
from mim_jax.models.crossmae import CrossMAEDecoder, num_queries, select_queries
from mim_jax.models.flops import mae_forward_flops, mae_train_flops
from mim_jax.models.layers import FixedEmbed
from mim_jax.models.loss import denormalize_patches, mae_loss, normalize_patches
from mim_jax.models.mae import MAE, MAEDecoder, MAEOutput, mae_config, mae_kwargs, mae_model
from mim_jax.models.patching import (
    PatchSpec,
    patchify,
    patchify_nd,
    patchify_video,
    unpatchify,
    unpatchify_nd,
    unpatchify_video,
)
from mim_jax.models.posembed import sincos_1d, sincos_2d, sincos_3d, sincos_pos_embed
from mim_jax.models.sharding_rules import LOGICAL_AXIS_RULES, rules_for_mesh
from mim_jax.models.tokens import gather_tokens
from mim_jax.models.vit import ViTEncoder, vit_encoder

__all__ = [
    "LOGICAL_AXIS_RULES",
    "MAE",
    "VIT_SIZES",
    "CrossMAEDecoder",
    "DecoderConfig",
    "FixedEmbed",
    "MAEConfig",
    "MAEDecoder",
    "MAEOutput",
    "PatchSpec",
    "ViTConfig",
    "ViTEncoder",
    "denormalize_patches",
    "gather_tokens",
    "mae_config",
    "mae_forward_flops",
    "mae_kwargs",
    "mae_loss",
    "mae_model",
    "mae_train_flops",
    "normalize_patches",
    "num_queries",
    "patchify",
    "patchify_nd",
    "patchify_video",
    "rules_for_mesh",
    "select_queries",
    "sincos_1d",
    "sincos_2d",
    "sincos_3d",
    "sincos_pos_embed",
    "unpatchify",
    "unpatchify_nd",
    "unpatchify_video",
    "vit_config",
    "vit_encoder",
]
