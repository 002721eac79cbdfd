"""Analytic FLOP count: hand computation, and every dot_general in the traced forward pass."""

import math

import jax
import jax.numpy as jnp
import pytest
from flax import nnx
from jax.extend.core import ClosedJaxpr, Jaxpr

from mim_jax import masking, models
from mim_jax.models import PatchSpec

TINY = PatchSpec.image(4, 2, channels=1)  # grid 2x2 (N = 4), patch_dim P = 4


def tiny_config(**kwargs):
    kw = dict(
        tokens=TINY,
        decoder_width=4,
        decoder_depth=1,
        decoder_num_heads=1,
        decoder_mlp_dim=8,
        encoder_overrides=dict(width=8, depth=1, num_heads=2, mlp_dim=16),
    )
    kw.update(kwargs)
    return models.mae_config("vit_tiny", **kw)


def test_mae_by_hand():
    # N = 4 patches, K = 1 visible, cls -> encoder on 2 tokens; decoder on 1 + 4 = 5 tokens.
    parts = models.mae_forward_flops(tiny_config(), num_visible=1)
    assert parts["patch_embed"] == 2 * 1 * 4 * 8  # 64
    # Encoder block, T=2, D=8, M=16: qkv 2*2*8*24=768, QK^T 2*2*2*8=64, AV 64, proj 2*2*8*8=256,
    # MLP 2*2*8*16*2 = 1024.
    assert parts["encoder_blocks"] == 768 + 64 + 64 + 256 + 1024
    assert parts["decoder_embed"] == 2 * 2 * 8 * 4  # 128
    # Decoder block, T=5, D=4, M=8: qkv 2*5*4*12=480, QK^T 2*5*5*4=200, AV 200, proj 160, MLP 640.
    assert parts["decoder_blocks"] == 480 + 200 + 200 + 160 + 640
    assert parts["pred"] == 2 * 4 * 4 * 4  # all N patches
    assert parts["total"] == 64 + 2176 + 128 + 1680 + 128 == 4176
    assert models.mae_train_flops(tiny_config(), 1) == 3 * 4176
    assert models.mae_train_flops(tiny_config(), 1, batch_size=8) == 8 * 3 * 4176
    with pytest.raises(ValueError, match="decodes all 4 patches or the 3 masked ones"):
        models.mae_forward_flops(tiny_config(), 1, num_decoded=2)
    # masked_only: Q = 3; last block kv 2*5*4*8=320, q 2*3*4*4=96, QK^T + AV 2*(2*3*5*4)=240,
    # proj 96, MLP 2*3*4*8*2=384; pred 2*3*4*4=96.
    masked = models.mae_forward_flops(tiny_config(), 1, num_decoded=3)
    assert masked["decoder_blocks"] == 320 + 96 + 240 + 96 + 384
    assert masked["pred"] == 96


def test_crossmae_by_hand():
    cfg = tiny_config(decoder="crossmae", pred_fraction=2 / 3)  # 3 masked -> 2 queries
    parts = models.mae_forward_flops(cfg, num_visible=1)
    # q 2*2*4*4=64, kv 2*2*8*8=256 (2 context tokens), QK^T + AV 2*(2*2*2*4)=64, proj 64,
    # MLP 2*2*4*8*2=256.
    assert parts["decoder_blocks"] == 64 + 256 + 64 + 64 + 256
    assert parts["decoder_embed"] == 0 and parts["feature_mix"] == 0
    assert parts["pred"] == 2 * 2 * 4 * 4
    assert parts["total"] == 64 + 2176 + 704 + 64
    assert models.mae_forward_flops(cfg, 1, num_decoded=3)["pred"] == 2 * 3 * 4 * 4


def _dot_flops(jaxpr) -> int:
    total = 0
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            lhs, rhs = (v.aval.shape for v in eqn.invars)
            (_, rc), (_, rb) = eqn.params["dimension_numbers"]
            rhs_free = [d for i, d in enumerate(rhs) if i not in rc and i not in rb]
            total += 2 * math.prod(lhs) * math.prod(rhs_free)
        for param in eqn.params.values():
            for sub in param if isinstance(param, tuple | list) else (param,):
                if isinstance(sub, ClosedJaxpr):
                    total += _dot_flops(sub.jaxpr)
                elif isinstance(sub, Jaxpr):
                    total += _dot_flops(sub)
    return total


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(),
        dict(cls_token=False),
        dict(decoder="crossmae", pred_fraction=0.5),
        dict(decoder="crossmae", self_attn=True, weight_fm=True, use_input=True, decoder_depth=2),
        dict(num_frames=4, tubelet_size=2),
    ],
    ids=["mae", "mae-nocls", "crossmae", "crossmae-fm-sa", "video"],
)
@pytest.mark.parametrize("masked_only", [False, True], ids=["all", "masked-only"])
def test_count_matches_traced_matmuls(kwargs, masked_only):
    kwargs = dict(kwargs)
    cfg = models.mae_config(
        "vit_small",
        image_size=32,
        patch_size=8,
        decoder_width=64,
        decoder_depth=kwargs.pop("decoder_depth", 1),
        decoder_num_heads=4,
        encoder_overrides=dict(depth=2),
        **kwargs,
    )
    model = nnx.eval_shape(lambda: models.MAE(cfg, rngs=nnx.Rngs(0)))
    graphdef, state = nnx.split(model)
    b = 2
    masks = jax.eval_shape(
        lambda k: masking.get("random")(k, batch_size=b, grid=cfg.tokens.grid, mask_ratio=0.75),
        jax.random.key(0),
    )
    x = jax.ShapeDtypeStruct((b, *cfg.tokens.input_shape), jnp.float32)
    key = jax.ShapeDtypeStruct((), jax.random.key(0).dtype)
    fwd = jax.make_jaxpr(
        lambda s, x, m, k: nnx.merge(graphdef, s)(x, m, key=k, masked_only=masked_only)[0]
    )
    traced = _dot_flops(fwd(state, x, masks, key).jaxpr)
    k = masks.keep.shape[1]
    n = cfg.tokens.num_patches
    decoded = n - k if masked_only and cfg.decoder.kind == "mae" else None
    assert traced == b * models.mae_forward_flops(cfg, num_visible=k, num_decoded=decoded)["total"]
