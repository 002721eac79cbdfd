"""Weighted k-nearest-neighbour classification of frozen features (DINO's protocol).

As ``facebookresearch/dino :: eval_knn.py :: knn_classifier`` (docs/mae_recipes.md, "kNN"):
features are L2-normalised, similarity is the dot product (cosine), the k most similar training
samples vote for their class with weight ``exp(sim / T)`` (T = 0.07) and the class scores give
top-1 and top-5 accuracy. Memory stays bounded: the query set goes in chunks of
``query_chunk`` rows and the training set in chunks of ``train_chunk`` rows, keeping a running
top-k (so the largest similarity block is ``query_chunk x train_chunk``).
"""

from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np

DEFAULT_KS = (10, 20, 100, 200)
TEMPERATURE = 0.07


def l2_normalize(x: jax.Array, eps: float = 1e-12) -> jax.Array:
    """Rows of ``x`` [N, D] scaled to unit norm (as ``torch.nn.functional.normalize``)."""
    norm = jnp.linalg.norm(x, axis=-1, keepdims=True)
    return x / jnp.maximum(norm, eps)


@functools.partial(jax.jit, static_argnames=("k", "train_chunk"))
def _top_k_neighbours(
    queries: jax.Array, train: jax.Array, valid: jax.Array, k: int, train_chunk: int
) -> tuple[jax.Array, jax.Array]:
    """(similarities float32[Q, k], indices int32[Q, k]) of the k nearest rows of ``train``.

    ``train`` [T, D] is normalised and padded to a multiple of ``train_chunk``; ``valid`` bool[T]
    marks real rows (padding never wins).
    """
    q = queries.shape[0]
    chunks = train.reshape(-1, train_chunk, train.shape[-1])
    mask = valid.reshape(-1, train_chunk)
    offsets = jnp.arange(chunks.shape[0], dtype=jnp.int32) * train_chunk

    def step(carry, xs):
        best_sim, best_idx = carry
        block, ok, offset = xs
        sim = jnp.where(ok[None], queries @ block.T, -jnp.inf)
        idx = jnp.broadcast_to(offset + jnp.arange(train_chunk, dtype=jnp.int32), sim.shape)
        sims = jnp.concatenate([best_sim, sim], axis=1)
        idxs = jnp.concatenate([best_idx, idx], axis=1)
        top, where = jax.lax.top_k(sims, k)
        return (top, jnp.take_along_axis(idxs, where, axis=1)), None

    init = (jnp.full((q, k), -jnp.inf, jnp.float32), jnp.zeros((q, k), jnp.int32))
    (sim, idx), _ = jax.lax.scan(step, init, (chunks, mask, offsets))
    return sim, idx


def _vote(sim, idx, train_labels, num_classes, k, temperature):
    """Class scores float32[Q, C] from the first k neighbours (weights exp(sim / T))."""
    labels = train_labels[idx[:, :k]]
    weights = jnp.exp(sim[:, :k] / temperature)
    return jnp.einsum("qk,qkc->qc", weights, jax.nn.one_hot(labels, num_classes))


@functools.partial(jax.jit, static_argnames=("ks", "num_classes", "temperature", "train_chunk"))
def _correct(
    queries,
    targets,
    count,
    train,
    valid,
    train_labels,
    *,
    ks,
    num_classes,
    temperature,
    train_chunk,
):
    """Correct top-1 / top-5 counts per k for one padded query block (``count`` real rows)."""
    sim, idx = _top_k_neighbours(l2_normalize(queries), train, valid, max(ks), train_chunk)
    real = jnp.arange(queries.shape[0]) < count
    out = {}
    for k in ks:
        scores = _vote(sim, idx, train_labels, num_classes, k, temperature)
        top5 = jax.lax.top_k(scores, min(5, num_classes))[1]
        hit = top5 == targets[:, None]
        out[f"top1_k{k}"] = jnp.sum(hit[:, 0] & real)
        out[f"top5_k{k}"] = jnp.sum(jnp.any(hit, axis=1) & real)
    return out


def knn_classify(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    query_features: np.ndarray,
    query_labels: np.ndarray,
    *,
    num_classes: int,
    ks: tuple[int, ...] = DEFAULT_KS,
    temperature: float = TEMPERATURE,
    query_chunk: int = 256,
    train_chunk: int = 8192,
) -> dict[str, float]:
    """Top-1 / top-5 accuracy of the weighted kNN vote for each k.

    Args:
      train_features: float[T, D]; train_labels: int[T] in ``[0, num_classes)``.
      query_features: float[Q, D]; query_labels: int[Q].
      ks: neighbour counts; each is clipped to T (the result keys use the clipped k).
      temperature: T in ``exp(sim / T)``.
      query_chunk / train_chunk: block sizes bounding memory.

    Returns:
      ``{"knn_top1_k{k}": ..., "knn_top5_k{k}": ...}`` in [0, 1], plus ``"knn_top1"`` and
      ``"knn_top5"`` for k = 20 (DINO's headline; the largest k below 20 if T < 20).
    """
    train_features = np.asarray(train_features, np.float32)
    query_features = np.asarray(query_features, np.float32)
    train_labels = np.asarray(train_labels)
    query_labels = np.asarray(query_labels)
    chex.assert_rank([train_features, query_features], 2)
    chex.assert_equal(train_features.shape[1], query_features.shape[1])
    chex.assert_equal(len(train_features), len(train_labels))
    chex.assert_equal(len(query_features), len(query_labels))
    if len(train_features) == 0 or len(query_features) == 0:
        raise ValueError("kNN needs at least one training and one query sample.")
    for name, labels in (("train", train_labels), ("query", query_labels)):
        if labels.min() < 0 or labels.max() >= num_classes:
            raise ValueError(
                f"{name} labels must lie in [0, {num_classes}); got {labels.min()}..{labels.max()}"
                " (unlabelled data cannot be evaluated)."
            )
    if not ks or min(ks) < 1:
        raise ValueError(f"ks must be positive neighbour counts, got {ks}.")
    n_train = len(train_features)
    clipped = sorted({min(int(k), n_train) for k in ks})
    train_chunk = max(min(train_chunk, n_train), clipped[-1])
    pad = -n_train % train_chunk
    train = np.asarray(l2_normalize(jnp.asarray(train_features)))
    train = np.concatenate([train, np.zeros((pad, train.shape[1]), np.float32)])
    valid = np.arange(len(train)) < n_train
    train_dev, valid_dev = jnp.asarray(train), jnp.asarray(valid)
    labels_dev = jnp.asarray(np.concatenate([train_labels, np.zeros(pad, train_labels.dtype)]))

    static = dict(ks=tuple(clipped), num_classes=num_classes, temperature=float(temperature))
    static.update(train_chunk=train_chunk)
    totals: dict[str, int] = {}
    q = len(query_features)
    chunk = min(query_chunk, q)
    for start in range(0, q, chunk):
        block = query_features[start : start + chunk]
        targets = query_labels[start : start + chunk]
        count = len(block)
        if count < chunk:  # pad to the fixed shape: one compiled program
            block = np.concatenate([block, np.zeros((chunk - count, block.shape[1]), np.float32)])
            targets = np.concatenate([targets, np.zeros(chunk - count, targets.dtype)])
        counts = _correct(block, targets, count, train_dev, valid_dev, labels_dev, **static)
        for key, value in jax.device_get(counts).items():
            totals[key] = totals.get(key, 0) + int(value)
    result = {}
    for k in clipped:
        result[f"knn_top1_k{k}"] = totals[f"top1_k{k}"] / q
        result[f"knn_top5_k{k}"] = totals[f"top5_k{k}"] / q
    headline = max((k for k in clipped if k <= 20), default=clipped[0])
    result["knn_top1"] = result[f"knn_top1_k{headline}"]
    result["knn_top5"] = result[f"knn_top5_k{headline}"]
    result["knn_k"] = headline
    return result
