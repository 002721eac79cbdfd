"""MAE loss: unbiased per-patch normalisation, masked mean only."""

import jax.numpy as jnp
import numpy as np

from mim_jax.models import loss as loss_lib


def numpy_loss(pred, target, mask, norm_pix):
    pred, target = pred.astype(np.float64), target.astype(np.float64)
    if norm_pix:
        b, q, p = target.shape
        out = np.empty_like(target)
        for i in range(b):
            for j in range(q):
                t = target[i, j]
                mean = t.sum() / p
                var = ((t - mean) ** 2).sum() / (p - 1)  # unbiased, as torch.var
                out[i, j] = (t - mean) / np.sqrt(var + 1e-6)
        target = out
    per_patch = ((pred - target) ** 2).mean(-1)
    return (per_patch * mask).sum() / mask.sum()


def test_norm_pix_uses_ddof_1():
    rng = np.random.default_rng(0)
    target = rng.normal(2.0, 3.0, size=(2, 5, 12)).astype(np.float32)
    normed = np.asarray(loss_lib.normalize_patches(jnp.asarray(target)))
    # ddof=1: each normalised patch has sample variance ~1 (ddof=0 would give (p-1)/p).
    np.testing.assert_allclose(normed.var(-1, ddof=1), 1.0, rtol=1e-4)
    mean = target.mean(-1, keepdims=True)
    std1 = np.sqrt(target.var(-1, ddof=1, keepdims=True) + 1e-6)
    np.testing.assert_allclose(normed, (target - mean) / std1, rtol=1e-5, atol=1e-5)


def test_loss_matches_numpy():
    rng = np.random.default_rng(1)
    pred = rng.normal(size=(3, 7, 12)).astype(np.float32)
    target = rng.normal(1.0, 2.0, size=(3, 7, 12)).astype(np.float32)
    mask = rng.random((3, 7)) < 0.6
    mask[:, 0] = True
    for norm_pix in (True, False):
        got = loss_lib.mae_loss(jnp.asarray(pred), jnp.asarray(target), jnp.asarray(mask), norm_pix)
        assert got.dtype == jnp.float32
        np.testing.assert_allclose(float(got), numpy_loss(pred, target, mask, norm_pix), rtol=1e-5)


def test_loss_ignores_visible_patches():
    rng = np.random.default_rng(2)
    pred = rng.normal(size=(2, 6, 8)).astype(np.float32)
    target = rng.normal(size=(2, 6, 8)).astype(np.float32)
    mask = np.array([[1, 0, 1, 0, 0, 1], [0, 1, 1, 0, 1, 0]], bool)
    base = loss_lib.mae_loss(jnp.asarray(pred), jnp.asarray(target), jnp.asarray(mask))
    pred2 = pred.copy()
    pred2[~mask] += 100.0
    target2 = target.copy()
    target2[~mask] -= 50.0
    other = loss_lib.mae_loss(jnp.asarray(pred2), jnp.asarray(target2), jnp.asarray(mask))
    assert float(base) == float(other)
    pred3 = pred.copy()
    pred3[mask] += 1.0
    assert float(loss_lib.mae_loss(jnp.asarray(pred3), jnp.asarray(target), mask)) != float(base)


def test_bf16_pred_is_upcast_and_denormalize_inverts():
    rng = np.random.default_rng(3)
    target = jnp.asarray(rng.normal(0.5, 2.0, size=(2, 4, 16)), jnp.float32)
    normed = loss_lib.normalize_patches(target)
    np.testing.assert_allclose(loss_lib.denormalize_patches(normed, target), target, atol=1e-5)
    mask = jnp.ones((2, 4), bool)
    loss = loss_lib.mae_loss(normed.astype(jnp.bfloat16), target, mask)
    assert loss.dtype == jnp.float32 and float(loss) < 1e-4
