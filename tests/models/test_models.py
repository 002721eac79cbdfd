"""ViT encoder family and MAE: shapes, masking semantics, dtypes, pure-function use, training."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from mim_jax import masking, models
from mim_jax.models import PatchSpec, posembed

TINY_ENCODER = dict(width=32, depth=2, num_heads=2, mlp_dim=64)


def tiny_mae(**kwargs) -> models.MAE:
    """A 2-block, width-32 MAE on 32x32 images with 8x8 patches (grid 4x4)."""
    kw = dict(
        image_size=32,
        patch_size=8,
        decoder_width=32,
        decoder_depth=1,
        decoder_num_heads=2,
        encoder_overrides=TINY_ENCODER,
        rngs=0,
    )
    kw.update(kwargs)
    return models.mae_model("vit_tiny", **kw)


def random_masks(grid, batch_size=2, ratio=0.75, seed=0, name="random"):
    return masking.get(name)(
        jax.random.key(seed), batch_size=batch_size, grid=grid, mask_ratio=ratio
    )


def images(shape, seed=1):
    return jax.random.normal(jax.random.key(seed), shape, jnp.float32)


@jax.jit
def _apply(graphdef, state, x, masks):
    return nnx.merge(graphdef, state)(x, masks)


@nnx.jit
def _encode(encoder, x):
    return encoder.encode(x)


def run(model, x, masks):
    """Jitted forward (loss, MAEOutput) of ``model`` as a pure function of its split state."""
    graphdef, state = nnx.split(model)
    return _apply(graphdef, state, x, masks)


# ---------------------------------------------------------------------------------------------
# ViT encoder family


def test_named_sizes_are_standard():
    expected = {
        "vit_tiny": (192, 12, 3, 768),
        "vit_small": (384, 12, 6, 1536),
        "vit_base": (768, 12, 12, 3072),
        "vit_large": (1024, 24, 16, 4096),
        "vit_huge": (1280, 32, 16, 5120),
        "vit_giant": (1408, 40, 16, 6144),
    }
    for name, (width, depth, heads, mlp) in expected.items():
        cfg = models.vit_config(name)
        assert (cfg.width, cfg.depth, cfg.num_heads, cfg.mlp_dim) == (width, depth, heads, mlp)
    assert models.VIT_SIZES["vit_giant"].mlp_dim / 1408 == pytest.approx(48 / 11)
    with pytest.raises(ValueError, match="valid names"):
        models.vit_config("vit_gigantic")


def _param_count(module) -> int:
    return sum(math.prod(v.shape) for v in jax.tree.leaves(nnx.state(module, nnx.Param)))


@pytest.mark.parametrize(
    ("name", "patch"),
    [
        ("vit_tiny", 16),
        ("vit_small", 16),
        ("vit_base", 16),
        ("vit_large", 16),
        ("vit_huge", 14),
        ("vit_giant", 14),
    ],
)
def test_named_size_shapes_abstract(name, patch):
    # Depth 1 keeps the abstract build fast; depth only repeats the block checked here.
    cfg = models.vit_config(name)
    enc = nnx.eval_shape(
        lambda: models.vit_encoder(name, image_size=224, patch_size=patch, depth=1)
    )
    d, m, n = cfg.width, cfg.mlp_dim, (224 // patch) ** 2
    per_block = 4 * d + (3 * d * d + 3 * d) + (d * d + d) + (2 * d * m + m + d)
    assert _param_count(enc) == (3 * patch * patch * d + d) + d + 2 * d + per_block
    assert enc.blocks[0].attn.qkv.kernel.shape == (d, 3, cfg.num_heads, d // cfg.num_heads)
    x = jax.ShapeDtypeStruct((2, 224, 224, 3), jnp.float32)
    out = jax.eval_shape(lambda e, x: e.encode(x), enc, x)
    assert out.shape == (2, 1 + n, d) and out.dtype == jnp.float32


def test_vit_base_param_count_matches_timm():
    # timm vit_base_patch16_224: 86,567,656 params = encoder + 1000-way head (769,000)
    # + learned pos_embed (197 x 768, a fixed buffer here).
    enc = nnx.eval_shape(lambda: models.vit_encoder("vit_base", image_size=224, patch_size=16))
    assert _param_count(enc) == 86_567_656 - 769_000 - 197 * 768
    assert enc.pos_embed.shape == (197, 768)


@pytest.mark.parametrize("cls_token", [True, False])
def test_encoder_forward_cls_on_off(cls_token):
    enc = models.vit_encoder(
        "vit_tiny", image_size=32, patch_size=8, cls_token=cls_token, rngs=0, **TINY_ENCODER
    )
    out = _encode(enc, images((2, 32, 32, 3)))
    assert out.shape == (2, 16 + int(cls_token), 32) and out.dtype == jnp.float32
    table = posembed.sincos_2d(32, (4, 4), cls_token=cls_token)
    np.testing.assert_array_equal(np.asarray(enc.pos_embed[...]), table)
    assert (enc.cls_token is not None) == cls_token


def test_video_and_spectrogram_patch_embeddings():
    video = PatchSpec.video(num_frames=4, image_size=32, patch_size=8, tubelet_size=2)
    enc = models.vit_encoder("vit_tiny", tokens=video, rngs=0, **TINY_ENCODER)
    assert enc.patch_embed.kernel.shape == (2 * 8 * 8 * 3, 32)
    np.testing.assert_array_equal(
        np.asarray(enc.pos_embed[...]), posembed.sincos_3d(32, (2, 4, 4), cls_token=True)
    )
    out = _encode(enc, images((2, 4, 32, 32, 3)))
    assert out.shape == (2, 1 + 32, 32)

    spec = PatchSpec.spectrogram(time_frames=64, freq_bins=32, patch_size=8)
    enc = models.vit_encoder("vit_tiny", tokens=spec, cls_token=False, rngs=0, **TINY_ENCODER)
    assert enc.patch_embed.kernel.shape == (64, 32)
    np.testing.assert_array_equal(
        np.asarray(enc.pos_embed[...]), posembed.sincos_2d(32, (8, 4), cls_token=False)
    )
    assert _encode(enc, images((2, 64, 32, 1))).shape == (2, 32, 32)


def test_patch_embed_init_is_xavier_on_flat_view():
    enc = models.vit_encoder("vit_tiny", image_size=32, patch_size=8, rngs=0, **TINY_ENCODER)
    kernel = np.asarray(enc.patch_embed.kernel[...])  # [192, 32]
    limit = math.sqrt(6.0 / (192 + 32))
    assert np.abs(kernel).max() <= limit and np.abs(kernel).max() > 0.9 * limit
    qkv = np.asarray(enc.blocks[0].attn.qkv.kernel[...])  # flat view [32, 96]
    limit = math.sqrt(6.0 / (32 + 3 * 32))
    assert np.abs(qkv).max() <= limit and np.abs(qkv).max() > 0.9 * limit
    assert float(jnp.std(enc.cls_token[...])) < 0.05


# ---------------------------------------------------------------------------------------------
# MAE


def test_mae_output_contract():
    model = tiny_mae()
    x = images((2, 32, 32, 3))
    masks = random_masks((4, 4))
    loss, out = run(model, x, masks)
    assert loss.shape == () and loss.dtype == jnp.float32 and np.isfinite(float(loss))
    assert out.pred.shape == (2, 16, 192) and out.pred.dtype == jnp.float32
    np.testing.assert_array_equal(out.target, models.patchify(x, 8))
    np.testing.assert_array_equal(out.weights, np.asarray(masks.mask, np.float32))
    np.testing.assert_array_equal(out.positions, np.broadcast_to(np.arange(16), (2, 16)))
    ref = models.mae_loss(out.pred, out.target, masks.mask, norm_pix_loss=True)
    np.testing.assert_allclose(float(loss), float(ref), rtol=1e-6)


def test_encoder_sees_only_visible_patches():
    model = tiny_mae()
    masks = random_masks((4, 4), seed=3)
    x = images((2, 32, 32, 3))
    patches = np.asarray(models.patchify(x, 8)).copy()
    changed = patches.copy()
    mask = np.asarray(masks.mask)
    changed[mask] = np.random.default_rng(0).normal(size=changed[mask].shape) * 10
    x_masked_changed = models.unpatchify(jnp.asarray(changed), (4, 4), 8)
    _, out_a = run(model, x, masks)
    _, out_b = run(model, x_masked_changed, masks)
    np.testing.assert_array_equal(out_a.pred, out_b.pred)  # encoder never saw masked pixels
    # ... while one visible patch does change the prediction.
    vis = int(masks.keep[0, 0])
    changed_vis = patches.copy()
    changed_vis[0, vis] += 1.0
    _, out_c = run(model, models.unpatchify(jnp.asarray(changed_vis), (4, 4), 8), masks)
    assert not np.allclose(out_a.pred[0], out_c.pred[0])
    np.testing.assert_array_equal(out_a.pred[1], out_c.pred[1])  # samples are independent


def test_restore_puts_decoder_tokens_in_raster_order():
    model = tiny_mae()
    dec = model.decoder
    masks = random_masks((4, 4), batch_size=3, seed=5)
    k = masks.keep.shape[1]
    latent = jax.random.normal(jax.random.key(2), (3, 1 + k, 32))
    x = np.asarray(dec.unshuffle(latent, masks.restore))
    embedded = np.asarray(dec.embed(latent))
    pos = np.asarray(dec.pos_embed[...])
    mask_token = np.asarray(dec.mask_token[...])[0, 0]
    assert x.shape == (3, 17, 32)
    for b in range(3):
        np.testing.assert_allclose(x[b, 0], embedded[b, 0] + pos[0], rtol=1e-6)
        for j, i in enumerate(np.asarray(masks.keep[b])):
            np.testing.assert_allclose(x[b, 1 + i], embedded[b, 1 + j] + pos[1 + i], rtol=1e-6)
        for i in np.asarray(masks.masked[b]):
            np.testing.assert_allclose(x[b, 1 + i], mask_token + pos[1 + i], rtol=1e-6)


def test_mae_without_cls_and_video_with_tube_masks():
    model = tiny_mae(cls_token=False)
    _, out = run(model, images((2, 32, 32, 3)), random_masks((4, 4)))
    assert out.pred.shape == (2, 16, 192)
    assert model.decoder.pos_embed.shape == (16, 32)

    video = tiny_mae(num_frames=4, tubelet_size=2)
    assert video.config.tokens.grid == (2, 4, 4)
    masks = random_masks((2, 4, 4), ratio=0.5, name="tube")
    loss, out = run(video, images((2, 4, 32, 32, 3)), masks)
    assert out.pred.shape == (2, 32, 384) and np.isfinite(float(loss))


def test_bf16_compute_keeps_float32_params():
    model = tiny_mae(dtype="bfloat16")
    for leaf in jax.tree.leaves(nnx.state(model)):
        assert leaf.dtype == jnp.float32
    x, masks = images((2, 32, 32, 3)), random_masks((4, 4))
    assert _encode(model.encoder, x).dtype == jnp.bfloat16

    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    @jax.jit
    def grads_fn(params, rest, x, masks):
        def loss_fn(p):
            return nnx.merge(graphdef, p, rest)(x, masks)

        return jax.value_and_grad(loss_fn, has_aux=True)(params)

    (loss, out), grads = grads_fn(params, rest, x, masks)
    assert out.pred.dtype == jnp.float32 and np.isfinite(float(loss))
    for leaf in jax.tree.leaves(grads):
        assert leaf.dtype == jnp.float32 and np.isfinite(np.asarray(leaf)).all()
    loss32, _ = run(tiny_mae(), x, masks)  # same init (rngs=0), float32 compute
    np.testing.assert_allclose(float(loss), float(loss32), rtol=0.05)


def test_remat_and_onehot_gather_do_not_change_the_result():
    x, masks = images((2, 32, 32, 3)), random_masks((4, 4))
    loss, out = run(tiny_mae(), x, masks)
    loss2, out2 = run(tiny_mae(remat=True, gather="onehot"), x, masks)
    np.testing.assert_allclose(float(loss), float(loss2), rtol=1e-5)
    np.testing.assert_allclose(out.pred, out2.pred, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "overrides",
    [
        dict(decoder_depth=2),
        dict(decoder_depth=2, remat=True, gather="onehot"),
        dict(cls_token=False),
    ],
    ids=["cls", "remat-onehot", "no-cls"],
)
def test_masked_only_decoding_gives_the_same_loss_grads_and_masked_predictions(overrides):
    model = tiny_mae(**overrides)
    x, masks = images((3, 32, 32, 3)), random_masks((4, 4), batch_size=3, ratio=0.6)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    @functools.partial(jax.jit, static_argnums=1)
    def loss_and_grads(params, masked_only):
        def loss_fn(p):
            return nnx.merge(graphdef, p, rest)(x, masks, masked_only=masked_only)

        return jax.value_and_grad(loss_fn, has_aux=True)(params)

    (loss, full), grads = loss_and_grads(params, False)
    (loss_m, part), grads_m = loss_and_grads(params, True)
    np.testing.assert_allclose(float(loss_m), float(loss), rtol=1e-6)
    for a, b in zip(jax.tree.leaves(grads_m), jax.tree.leaves(grads), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    masked = np.asarray(masks.masked)
    assert part.pred.shape == (3, masked.shape[1], 192)
    np.testing.assert_array_equal(part.positions, masked)
    np.testing.assert_array_equal(part.weights, np.ones(masked.shape, np.float32))
    rows = np.arange(3)[:, None]
    np.testing.assert_allclose(part.pred, np.asarray(full.pred)[rows, masked], atol=1e-5)
    np.testing.assert_array_equal(part.target, np.asarray(full.target)[rows, masked])


def test_pos_embed_is_not_a_param():
    model = tiny_mae()
    paths = {".".join(map(str, p)) for p, _ in nnx.to_flat_state(nnx.state(model, nnx.Param))}
    assert "encoder.pos_embed" not in paths and "decoder.pos_embed" not in paths
    fixed = nnx.state(model, models.FixedEmbed)
    assert {".".join(map(str, p)) for p, _ in nnx.to_flat_state(fixed)} == {
        "encoder.pos_embed",
        "decoder.pos_embed",
    }
    assert {"encoder.cls_token", "decoder.mask_token", "encoder.patch_embed.kernel"} <= paths


def test_adamw_drives_loss_down_on_a_fixed_batch():
    model = tiny_mae()
    b = 8
    yy, xx = np.meshgrid(np.linspace(0, 1, 32), np.linspace(0, 1, 32), indexing="ij")
    coef = np.random.default_rng(0).normal(size=(b, 3, 4))
    smooth = [
        np.stack([a[0] + a[1] * yy + a[2] * xx + a[3] * np.sin(3 * xx + 2 * yy) for a in c], -1)
        for c in coef
    ]
    x = jnp.asarray(np.stack(smooth), jnp.float32)
    masks = random_masks((4, 4), batch_size=b)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx = optax.adamw(3e-3, b1=0.9, b2=0.95, weight_decay=0.05)
    opt_state = tx.init(params)

    @jax.jit
    def step(params, opt_state, rest, x, masks):
        def loss_fn(p):
            return nnx.merge(graphdef, p, rest)(x, masks)[0]

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    losses = []
    for _ in range(30):
        params, opt_state, loss = step(params, opt_state, rest, x, masks)
        losses.append(float(loss))
    assert np.isfinite(losses).all()
    assert losses[-1] < 0.5 * losses[0], losses
