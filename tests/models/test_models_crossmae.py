"""CrossMAE decoder: query selection, query independence, feature-map mixing, loss subset."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mim_jax import masking, models

TINY_ENCODER = dict(width=32, depth=2, num_heads=2, mlp_dim=64)


def tiny_crossmae(**kwargs) -> models.MAE:
    kw = dict(
        image_size=32,
        patch_size=8,
        decoder="crossmae",
        decoder_width=32,
        decoder_depth=1,
        decoder_num_heads=2,
        encoder_overrides=TINY_ENCODER,
        rngs=0,
    )
    kw.update(kwargs)
    return models.mae_model("vit_tiny", **kw)


def random_masks(batch_size=2, seed=0, name="random"):
    gen = masking.get(name)
    return gen(jax.random.key(seed), batch_size=batch_size, grid=(4, 4), mask_ratio=0.75)


@jax.jit
def _decode(graphdef, state, encoded, positions):
    return nnx.merge(graphdef, state)(encoded, positions)


def test_num_queries_rule():
    assert models.num_queries(147, 1 / 3) == 49  # CrossMAE ViT-H: kmr 0.25 of mr 0.75
    assert models.num_queries(12, 1.0) == 12
    assert models.num_queries(12, 0.5) == 6
    assert models.num_queries(3, 0.01) == 1


def test_select_queries_subset_and_uniformity():
    masks = random_masks(batch_size=4)
    first = models.select_queries(masks, 5)
    np.testing.assert_array_equal(first, masks.masked[:, :5])
    picked = np.asarray(models.select_queries(masks, 5, jax.random.key(1)))
    assert picked.shape == (4, 5) and picked.dtype == np.int32
    for b in range(4):
        assert len(set(picked[b])) == 5
        assert set(picked[b]) <= set(np.asarray(masks.masked[b]))
    np.testing.assert_array_equal(models.select_queries(masks, 12, jax.random.key(1)), masks.masked)
    with pytest.raises(ValueError, match="Query count"):
        models.select_queries(masks, 13)
    # With a key, raster-ordered masked lists (block masks) still give uniform picks.
    block = masking.get("grid")(jax.random.key(0), batch_size=1, grid=(4, 4), mask_ratio=0.75)
    many = jax.vmap(lambda k: models.select_queries(block, 1, k))(
        jax.random.split(jax.random.key(2), 2000)
    )
    counts = np.bincount(np.asarray(many).ravel(), minlength=16)[np.asarray(block.masked[0])]
    assert counts.min() > 2000 / 12 * 0.6 and counts.max() < 2000 / 12 * 1.4


def test_query_outputs_are_independent_without_self_attention():
    model = tiny_crossmae()
    dec = model.decoder
    encoded = jax.random.normal(jax.random.key(0), (2, 5, 32))
    positions = jnp.array([[3, 7, 1, 12, 0], [15, 2, 9, 4, 6]], jnp.int32)
    graphdef, state = nnx.split(dec)
    full = np.asarray(_decode(graphdef, state, encoded, positions))
    assert full.shape == (2, 5, 192) and full.dtype == np.float32
    sub = np.asarray(_decode(graphdef, state, encoded, positions[:, [3, 1]]))
    np.testing.assert_allclose(sub, full[:, [3, 1]], rtol=1e-5, atol=1e-6)
    one = np.asarray(_decode(graphdef, state, encoded, positions[:, 2:3]))
    np.testing.assert_allclose(one, full[:, 2:3], rtol=1e-5, atol=1e-6)

    # Sanity check of the test: with self-attention among queries the outputs do depend.
    dec_sa = tiny_crossmae(self_attn=True).decoder
    graphdef, state = nnx.split(dec_sa)
    full = np.asarray(_decode(graphdef, state, encoded, positions))
    sub = np.asarray(_decode(graphdef, state, encoded, positions[:, [3, 1]]))
    assert not np.allclose(sub, full[:, [3, 1]], atol=1e-4)


def test_crossmae_loss_covers_only_queried_patches():
    model = tiny_crossmae(pred_fraction=0.5)
    masks = random_masks(seed=3)
    x = jax.random.normal(jax.random.key(1), (2, 32, 32, 3))
    graphdef, state = nnx.split(model)
    fn = jax.jit(lambda s, x, m, k: nnx.merge(graphdef, s)(x, m, key=k))
    loss, out = fn(state, x, masks, jax.random.key(4))
    assert out.pred.shape == (2, 6, 192) and out.positions.shape == (2, 6)
    np.testing.assert_array_equal(out.weights, np.ones((2, 6), np.float32))
    patches = np.asarray(models.patchify(x, 8))
    for b in range(2):
        np.testing.assert_array_equal(out.target[b], patches[b, np.asarray(out.positions[b])])
        assert set(np.asarray(out.positions[b])) <= set(np.asarray(masks.masked[b]))
    ref = models.mae_loss(out.pred, out.target, out.weights, norm_pix_loss=True)
    np.testing.assert_allclose(float(loss), float(ref), rtol=1e-6)
    # Pixels of masked but unqueried patches change neither the prediction nor the loss.
    others = np.ones((2, 16), bool)
    for b in range(2):
        others[b, np.asarray(masks.keep[b])] = False
        others[b, np.asarray(out.positions[b])] = False
    changed = patches.copy()
    changed[others] += 5.0
    x2 = models.unpatchify(jnp.asarray(changed), (4, 4), 8)
    loss2, out2 = fn(state, x2, masks, jax.random.key(4))
    np.testing.assert_array_equal(out.pred, out2.pred)
    assert float(loss) == float(loss2)


def test_weight_fm_mixes_encoder_feature_maps():
    model = tiny_crossmae(weight_fm=True, use_input=True, decoder_depth=2)
    dec = model.decoder
    assert dec.feature_ids == (0, 1, 2)  # embedded input + both encoder blocks
    assert dec.feature_mix.weight.shape == (3, 2)
    assert len(dec.feature_norms) == 2
    only_last = tiny_crossmae(weight_fm=True, use_fm=(-1,)).decoder
    assert only_last.feature_ids == (2,)
    masks = random_masks()
    x = jax.random.normal(jax.random.key(1), (2, 32, 32, 3))
    graphdef, state = nnx.split(model)
    loss, out = jax.jit(lambda s: nnx.merge(graphdef, s)(x, masks))(state)
    assert out.pred.shape == (2, 12, 192) and np.isfinite(float(loss))
    # The mix is a weighted sum over maps, per decoder layer.
    maps = [jnp.full((1, 2, 32), float(i + 1)) for i in range(3)]
    mixed = dec.feature_mix(maps)
    w = np.asarray(dec.feature_mix.weight[...])
    np.testing.assert_allclose(mixed[:, 0, 0, 0], (w * np.array([[1], [2], [3]])).sum(0), rtol=1e-5)
    with pytest.raises(ValueError, match="need weight_fm"):
        models.DecoderConfig(kind="crossmae", use_input=True)
    with pytest.raises(ValueError, match="CrossMAE options"):
        models.DecoderConfig(kind="mae", pred_fraction=0.5)
