"""Evaluation protocols: MAE's LARS, DINO kNN, the probe head, drop path, mixup, layer decay."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import TINY_MAE
from flax import nnx

from mim_jax import models
from mim_jax.evaluate import finetune as ft
from mim_jax.evaluate import knn, lars, linear_probe, mixup
from mim_jax.evaluate.classifier import Classifier
from mim_jax.models import layers

# ----------------------------------------------------------------------------------------------
# LARS
# ----------------------------------------------------------------------------------------------


def numpy_lars(params, grads_seq, lrs, wd, momentum=0.9, trust=0.001):
    """MAE util/lars.py, written out with numpy (float64) for every step."""
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    mu = {k: np.zeros_like(v) for k, v in p.items()}
    for grads, lr in zip(grads_seq, lrs, strict=True):
        for k in p:
            g = np.asarray(grads[k], np.float64)
            if p[k].ndim > 1:
                u = g + wd * p[k]
                pn, un = np.linalg.norm(p[k]), np.linalg.norm(u)
                ratio = trust * pn / un if pn > 0 and un > 0 else 1.0
                u = ratio * u
            else:
                u = g
            mu[k] = momentum * mu[k] + u
            p[k] = p[k] - lr * mu[k]
    return p


def _run_optax(tx, params, grads_seq):
    state = tx.init(params)
    for grads in grads_seq:
        updates, state = tx.update(grads, state, params)
        params = optax.apply_updates(params, updates)
    return params


@pytest.fixture(scope="module")
def lars_problem():
    rng = np.random.default_rng(0)
    params = {
        "w": jnp.asarray(rng.normal(size=(5, 3)), jnp.float32),
        "zero": jnp.zeros((3, 2), jnp.float32),  # ||p|| = 0: trust ratio 1
        "b": jnp.asarray(rng.normal(size=(3,)), jnp.float32),
    }
    grads = [
        {k: jnp.asarray(rng.normal(size=v.shape), jnp.float32) for k, v in params.items()}
        for _ in range(6)
    ]
    schedule = optax.linear_schedule(0.0, 2.0, 4)  # warmup: 0, 0.5, 1, 1.5, 2, 2
    return params, grads, schedule


def test_lars_matches_the_mae_formulas_with_a_changing_lr(lars_problem):
    params, grads, schedule = lars_problem
    wd = 0.05
    got = _run_optax(lars.mae_lars(schedule, weight_decay=wd), params, grads)
    want = numpy_lars(params, grads, [float(schedule(i)) for i in range(len(grads))], wd)
    for k in params:
        np.testing.assert_allclose(np.asarray(got[k]), want[k], rtol=2e-5, atol=1e-6)
    # The 1-D bias moved by plain momentum SGD; the zero matrix moved (ratio 1, not 0).
    assert not np.allclose(np.asarray(got["zero"]), 0.0)


def test_lars_jits_and_counts_steps(lars_problem):
    params, grads, schedule = lars_problem
    tx = lars.mae_lars(schedule)
    state = tx.init(params)
    update = jax.jit(tx.update)
    for g in grads[:3]:
        _, state = update(g, state, params)
    assert int(state.count) == 3
    with pytest.raises(ValueError, match="needs the parameters"):
        tx.update(grads[0], state)


def test_lars_differs_from_optax_lars_during_warmup_only(lars_problem):
    params, grads, schedule = lars_problem
    mask = jax.tree.map(lambda p: p.ndim > 1, params)

    def optax_lars(lr):
        return optax.lars(
            lr, weight_decay=0.05, weight_decay_mask=mask, trust_ratio_mask=mask, momentum=0.9
        )

    # Constant learning rate: the two orders agree.
    a = _run_optax(lars.mae_lars(1.0, weight_decay=0.05), params, grads)
    b = _run_optax(optax_lars(1.0), params, grads)
    for k in params:
        np.testing.assert_allclose(np.asarray(a[k]), np.asarray(b[k]), rtol=1e-5, atol=1e-7)
    # Warmup: optax scales each gradient by its own step's lr before the momentum trace, MAE
    # scales the whole momentum buffer by the current lr.
    a = _run_optax(lars.mae_lars(schedule, weight_decay=0.05), params, grads)
    b = _run_optax(optax_lars(schedule), params, grads)
    gap = max(float(jnp.max(jnp.abs(a[k] - b[k]))) for k in params)
    assert gap > 1e-2


# ----------------------------------------------------------------------------------------------
# kNN
# ----------------------------------------------------------------------------------------------


def brute_force_knn(train, train_labels, query, query_labels, k, num_classes, t=0.07):
    """DINO's knn_classifier in numpy (one block, no chunking)."""
    train = train / np.linalg.norm(train, axis=1, keepdims=True)
    query = query / np.linalg.norm(query, axis=1, keepdims=True)
    sim = query @ train.T
    idx = np.argsort(-sim, axis=1, kind="stable")[:, :k]
    weights = np.exp(np.take_along_axis(sim, idx, 1) / t)
    scores = np.zeros((len(query), num_classes))
    for c in range(num_classes):
        scores[:, c] = np.sum(weights * (train_labels[idx] == c), axis=1)
    order = np.argsort(-scores, axis=1, kind="stable")
    top1 = np.mean(order[:, 0] == query_labels)
    top5 = np.mean(np.any(order[:, :5] == query_labels[:, None], axis=1))
    return top1, top5


def test_knn_matches_a_brute_force_vote_with_chunking_and_clipped_k():
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(7, 16))
    train_labels = rng.integers(0, 7, size=53)
    query_labels = rng.integers(0, 7, size=29)
    train = centres[train_labels] + 0.7 * rng.normal(size=(53, 16))
    query = centres[query_labels] + 0.7 * rng.normal(size=(29, 16))
    got = knn.knn_classify(
        train, train_labels, query, query_labels, num_classes=7, ks=(1, 3, 10, 200),
        query_chunk=8, train_chunk=16,
    )  # fmt: skip
    assert "knn_top1_k53" in got and "knn_top1_k200" not in got  # k clipped to the train size
    for k in (1, 3, 10, 53):
        top1, top5 = brute_force_knn(train, train_labels, query, query_labels, k, 7)
        assert got[f"knn_top1_k{k}"] == pytest.approx(top1)
        assert got[f"knn_top5_k{k}"] == pytest.approx(top5)
    assert got["knn_top1"] == got["knn_top1_k10"] and got["knn_k"] == 10
    assert 0.5 < got["knn_top1_k10"] <= 1.0  # separable clusters are mostly right


def test_knn_rejects_unlabelled_data():
    x = np.ones((4, 3), np.float32)
    with pytest.raises(ValueError, match="unlabelled"):
        knn.knn_classify(x, -np.ones(4, int), x, np.zeros(4, int), num_classes=2)


# ----------------------------------------------------------------------------------------------
# Linear probe head
# ----------------------------------------------------------------------------------------------


def test_probe_batchnorm_matches_torch_batchnorm1d():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    x1, x2 = rng.normal(2.0, 3.0, size=(2, 16, 6)).astype(np.float32)
    params, stats = linear_probe.init_head(jax.random.key(0), 6, 4)
    bn = torch.nn.BatchNorm1d(6, affine=False, eps=1e-6)
    for x in (x1, x2):
        _, stats = linear_probe.apply_head(params, stats, jnp.asarray(x), train=True)
        bn.train()(torch.from_numpy(x))
    np.testing.assert_allclose(np.asarray(stats["mean"]), bn.running_mean.numpy(), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(stats["var"]), bn.running_var.numpy(), rtol=1e-5)
    logits, _ = linear_probe.apply_head(params, stats, jnp.asarray(x1), train=False)
    normed = bn.eval()(torch.from_numpy(x1)).numpy()
    want = normed @ np.asarray(params["kernel"]) + np.asarray(params["bias"])
    np.testing.assert_allclose(np.asarray(logits), want, rtol=1e-4, atol=1e-5)
    assert float(jnp.std(params["kernel"])) == pytest.approx(0.01, rel=0.3)


def test_linear_probe_learns_separable_features():
    rng = np.random.default_rng(3)
    centres = 4 * rng.normal(size=(5, 12))
    ytr, yva = rng.integers(0, 5, 400), rng.integers(0, 5, 100)
    xtr = centres[ytr] + rng.normal(size=(400, 12))
    xva = centres[yva] + rng.normal(size=(100, 12))
    config = linear_probe.LinearProbeConfig(epochs=20, warmup_epochs=2, batch_size=64, blr=20.0)
    out = linear_probe.train_on_features(
        xtr, ytr, xva, yva, num_classes=5, config=config, log=lambda _: None
    )
    assert out["linear_top1"] > 0.9 and out["steps"] == 20 * (400 // 64)
    assert len(out["history"]) == 20


# ----------------------------------------------------------------------------------------------
# Drop path, mixup, layer-wise lr decay
# ----------------------------------------------------------------------------------------------


def _encoder(drop_path: float) -> models.ViTEncoder:
    cfg = models.mae_config("vit_tiny", **TINY_MAE)
    return models.ViTEncoder(cfg.encoder, cfg.tokens, drop_path=drop_path, rngs=nnx.Rngs(0))


def test_drop_path_is_off_by_default_and_without_a_key():
    images = jax.random.normal(jax.random.key(1), (4, 32, 32, 3))
    plain, dropped = _encoder(0.0), _encoder(0.5)
    assert [b.drop_path for b in dropped.blocks] == [0.0, 0.5]  # linear over depth (timm)
    out = plain.encode(images)
    np.testing.assert_array_equal(out, plain.encode(images, key=jax.random.key(2)))
    np.testing.assert_array_equal(out, dropped.encode(images))  # same params, no key: exact
    assert not np.allclose(out, dropped.encode(images, key=jax.random.key(2)))


def test_drop_path_zeroes_or_rescales_whole_samples():
    x = jnp.ones((256, 3, 2))
    y = layers.drop_path(x, 0.25, jax.random.key(0))
    per_sample = np.asarray(y[:, 0, 0])
    kept = per_sample[per_sample != 0]
    np.testing.assert_allclose(kept, 1 / 0.75, rtol=1e-6)
    assert np.all(np.asarray(y) == per_sample[:, None, None])
    assert 0.15 < np.mean(per_sample == 0) < 0.35


def test_mixup_and_cutmix_mix_images_and_targets_by_lam():
    key = jax.random.key(0)
    images = jax.random.normal(key, (6, 8, 8, 3))
    labels = jnp.arange(6) % 4
    only_mix = mixup.MixupConfig(mixup_alpha=0.8, cutmix_alpha=0.0, label_smoothing=0.1)
    out, targets, lam = mixup.mix_batch(key, images, labels, 4, only_mix)
    np.testing.assert_allclose(out, lam * images + (1 - lam) * images[::-1], rtol=1e-5, atol=1e-6)
    smooth = mixup.smooth_one_hot(labels, 4, 0.1)
    np.testing.assert_allclose(targets, lam * smooth + (1 - lam) * smooth[::-1], rtol=1e-6)
    np.testing.assert_allclose(np.sum(targets, 1), 1.0, rtol=1e-6)
    assert float(smooth.max()) == pytest.approx(0.925, rel=1e-6)
    assert float(smooth.min()) == pytest.approx(0.025, rel=1e-6)

    only_cut = mixup.MixupConfig(mixup_alpha=0.0, cutmix_alpha=1.0, label_smoothing=0.0)
    for seed in range(4):
        out, targets, lam = mixup.mix_batch(jax.random.key(seed), images, labels, 4, only_cut)
        pasted = np.all(np.asarray(out) != np.asarray(images), axis=-1)[0]  # [H, W]
        assert float(lam) == pytest.approx(1 - pasted.mean())
        assert set(np.unique(np.asarray(out == images) | np.asarray(out == images[::-1]))) == {True}
    off = mixup.MixupConfig(mixup_alpha=0.0, cutmix_alpha=0.0, label_smoothing=0.0)
    out, targets, lam = mixup.mix_batch(key, images, labels, 4, off)
    np.testing.assert_array_equal(out, images)
    assert float(lam) == 1.0


def test_layer_ids_and_lr_scales_follow_mae():
    model = Classifier(_encoder(0.0), 3, rngs=nnx.Rngs(0))
    _, params, _ = nnx.split(model, nnx.Param, ...)
    scales = nnx.to_flat_state(ft.layer_scales(params, depth=2, decay=0.5))
    by_path = {".".join(map(str, path)): float(v.get_value()) for path, v in scales}
    # depth 2: ids 0 (cls, patch_embed), 1-2 (blocks), 3 (norm, fc_norm, head); scale 0.5^(3-id)
    assert by_path["encoder.cls_token"] == by_path["encoder.patch_embed.kernel"] == 0.125
    assert by_path["encoder.pos_embed"] == 0.125  # trained while fine-tuning, layer id 0
    assert by_path["encoder.blocks.0.attn.qkv.kernel"] == 0.25
    assert by_path["encoder.blocks.1.mlp.fc2.bias"] == 0.5
    for name in ("encoder.norm.scale", "fc_norm.bias", "head.kernel", "head.bias"):
        assert by_path[name] == 1.0
    head = np.asarray(model.head.kernel[...])
    assert head.shape == (32, 3) and 0 < np.std(head) < 1e-4  # trunc-normal std 2e-5


def test_finetune_step_on_8_devices_matches_1_device():
    if jax.device_count() < 8:
        pytest.skip("needs the 8 virtual devices of tests/conftest.py")
    from mim_jax import configs
    from mim_jax.core.sharding import batch_sharding, make_mesh
    from mim_jax.core.state import state_layout
    from mim_jax.evaluate.mixup import MixupConfig

    cfg = configs.eval_job_config("finetune")
    images = jax.random.normal(jax.random.key(3), (8, 32, 32, 3))
    batch = {"image": images, "label": jnp.arange(8) % 3}
    schedule = optax.constant_schedule(1e-3)
    results = []
    for devices in (jax.devices()[:1], jax.devices()[:8]):
        mesh = make_mesh(data=-1, devices=devices)
        model = Classifier(_encoder(0.1), 3, rngs=nnx.Rngs(0))
        _, params, _ = nnx.split(model, nnx.Param, ...)
        tx = ft.finetune_optimizer(params, cfg, depth=2, decay=0.75, schedule=schedule)
        layout = state_layout(model, tx, mesh)  # the one place/compile path of every job
        shardings = {"image": batch_sharding(mesh, 4), "label": batch_sharding(mesh, 1)}
        step = layout.jit(
            ft.build_finetune_step(layout.graphdef, tx, schedule, 3, MixupConfig()), shardings
        )
        placed = jax.device_put(batch, shardings)
        state, metrics = step(layout.place(model), placed, jax.random.key(4))
        results.append((jax.device_get(state.params), float(metrics["loss"])))
    (p1, loss1), (p8, loss8) = results
    assert loss1 == pytest.approx(loss8, rel=1e-5)
    for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p8), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    moved = jax.tree.leaves(jax.tree.map(lambda a, b: np.abs(a - b).max(), p1, _initial()))
    assert max(moved) > 0  # the step changed the parameters


def test_finetune_trains_the_position_table_from_the_pretrained_one():
    from mim_jax import configs
    from mim_jax.core.optimizer import weight_decay_mask
    from mim_jax.core.sharding import batch_sharding, make_mesh
    from mim_jax.core.state import TrainState, state_layout
    from mim_jax.evaluate.classifier import classifier_pytree
    from mim_jax.evaluate.mixup import MixupConfig
    from mim_jax.models.posembed import sincos_pos_embed

    cfg = configs.eval_job_config("finetune")
    assert cfg.train_pos_embed  # MAE's recipe
    batch = {"image": jax.random.normal(jax.random.key(3), (4, 32, 32, 3)), "label": jnp.arange(4)}
    schedule = optax.constant_schedule(1e-2)
    mesh = make_mesh(data=-1, devices=jax.devices()[:1])
    table = sincos_pos_embed(32, (4, 4), cls_token=True)
    fixed = Classifier(_encoder(0.0), 4, train_pos_embed=False, rngs=nnx.Rngs(0))
    assert isinstance(fixed.encoder.pos_embed, layers.FixedEmbed)
    _, params, constants = nnx.split(fixed, nnx.Param, ...)
    saved = classifier_pytree(TrainState(jnp.zeros(()), params, constants, None))
    assert "pos_embed" not in saved["params"]["encoder"]
    np.testing.assert_allclose(saved["pos_embed"], table, rtol=1e-6)

    model = Classifier(_encoder(0.0), 4, rngs=nnx.Rngs(0))
    assert isinstance(model.encoder.pos_embed, nnx.Param)
    np.testing.assert_allclose(model.encoder.pos_embed[...], table, rtol=1e-6)
    _, params, _ = nnx.split(model, nnx.Param, ...)
    decays = nnx.to_pure_dict(weight_decay_mask(params, decay_tokens=False))
    assert decays["encoder"]["pos_embed"] is False  # MAE's no_weight_decay
    tx = ft.finetune_optimizer(params, cfg, depth=2, decay=0.75, schedule=schedule)
    layout = state_layout(model, tx, mesh)
    shardings = {"image": batch_sharding(mesh, 4), "label": batch_sharding(mesh, 1)}
    mix = MixupConfig(mixup_alpha=0.0, cutmix_alpha=0.0)
    step = layout.jit(ft.build_finetune_step(layout.graphdef, tx, schedule, 4, mix), shardings)
    state, _ = step(layout.place(model), jax.device_put(batch, shardings), jax.random.key(4))
    saved = classifier_pytree(state)
    assert "pos_embed" not in saved["params"]["encoder"]  # one saved layout either way
    assert np.abs(np.asarray(saved["pos_embed"]) - table).max() > 1e-5  # it trained


def _initial():
    model = Classifier(_encoder(0.1), 3, rngs=nnx.Rngs(0))
    return jax.device_get(nnx.split(model, nnx.Param, ...)[1])
