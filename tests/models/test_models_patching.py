"""Patchify / unpatchify order and round trips, PatchSpec geometry, token gathers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mim_jax.models import patching
from mim_jax.models.tokens import gather_tokens


def test_image_round_trip_and_order():
    b, h, w, c, p = 2, 12, 8, 3, 4
    x = np.random.default_rng(0).normal(size=(b, h, w, c)).astype(np.float32)
    tokens = np.asarray(patching.patchify(jnp.asarray(x), p))
    gh, gw = h // p, w // p
    assert tokens.shape == (b, gh * gw, p * p * c)
    for n in range(b):
        for r in range(gh):
            for col in range(gw):
                token = tokens[n, r * gw + col]  # row-major token index
                block = x[n, r * p : (r + 1) * p, col * p : (col + 1) * p, :]  # (p, q, c)
                for i in range(p):
                    for j in range(p):
                        for ch in range(c):
                            assert token[(i * p + j) * c + ch] == block[i, j, ch]
    back = patching.unpatchify(jnp.asarray(tokens), (gh, gw), p, c)
    np.testing.assert_array_equal(np.asarray(back), x)


def test_matches_mae_nchw_einsum():
    # MAE: (N,3,H,W) -> (N,3,h,p,w,p) -> einsum nchpwq->nhwpqc -> (N, h*w, p*p*3).
    x = np.random.default_rng(1).normal(size=(2, 3, 8, 8)).astype(np.float32)
    ref = x.reshape(2, 3, 2, 4, 2, 4)
    ref = np.einsum("nchpwq->nhwpqc", ref).reshape(2, 4, 48)
    ours = patching.patchify(jnp.asarray(x.transpose(0, 2, 3, 1)), 4)
    np.testing.assert_array_equal(np.asarray(ours), ref)


def test_video_round_trip_and_order():
    b, t, h, w, c, pt, p = 1, 4, 4, 6, 2, 2, 2
    x = np.arange(b * t * h * w * c, dtype=np.float32).reshape(b, t, h, w, c)
    tokens = np.asarray(patching.patchify_video(jnp.asarray(x), p, pt))
    gt, gh, gw = t // pt, h // p, w // p
    assert tokens.shape == (b, gt * gh * gw, pt * p * p * c)
    for f in range(gt):
        for r in range(gh):
            for col in range(gw):
                token = tokens[0, (f * gh + r) * gw + col]
                block = x[0, f * pt : (f + 1) * pt, r * p : (r + 1) * p, col * p : (col + 1) * p]
                np.testing.assert_array_equal(token, block.reshape(-1))  # (pt, p, q, c) order
    back = patching.unpatchify_video(jnp.asarray(tokens), (gt, gh, gw), p, pt, c)
    np.testing.assert_array_equal(np.asarray(back), x)


def test_patch_spec_geometry():
    img = patching.PatchSpec.image(224, 16)
    assert (img.grid, img.patch, img.num_patches, img.patch_dim) == ((14, 14), (16, 16), 196, 768)
    assert img.input_shape == (224, 224, 3)
    vid = patching.PatchSpec.video(16, 224, 16, tubelet_size=2)
    assert vid.grid == (8, 14, 14) and vid.patch_dim == 2 * 16 * 16 * 3
    assert vid.input_shape == (16, 224, 224, 3)
    spec = patching.PatchSpec.spectrogram(1024, 128, 16)
    assert spec.grid == (64, 8) and spec.patch_dim == 256 and spec.input_shape == (1024, 128, 1)
    rect = patching.PatchSpec.image((32, 48), (8, 4), channels=1)
    x = jnp.arange(32 * 48, dtype=jnp.float32).reshape(1, 32, 48, 1)
    np.testing.assert_array_equal(rect.unpatchify(rect.patchify(x)), x)
    with pytest.raises(ValueError, match="not divisible"):
        patching.PatchSpec.image(30, 16)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_gather_methods_agree(dtype):
    x = jax.random.normal(jax.random.key(0), (3, 10, 5)).astype(dtype)
    ids = jax.random.randint(jax.random.key(1), (3, 4), 0, 10)
    take = gather_tokens(x, ids, "take")
    onehot = gather_tokens(x, ids, "onehot")
    assert take.shape == (3, 4, 5) and take.dtype == dtype
    np.testing.assert_array_equal(np.asarray(take, np.float32), np.asarray(onehot, np.float32))
    np.testing.assert_array_equal(np.asarray(take[1, 2]), np.asarray(x[1, ids[1, 2]]))
    table = x[0]
    np.testing.assert_array_equal(
        np.asarray(gather_tokens(table, ids, "take"), np.float32),
        np.asarray(gather_tokens(table, ids, "onehot"), np.float32),
    )
