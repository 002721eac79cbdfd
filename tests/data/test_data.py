"""grain pipeline: batch contract, exact resume from iterator state, host shards, determinism."""

import gc

import numpy as np
import pytest

from mim_jax.data import DigitsSource, SyntheticSource, eval_transform, make_pipeline


class IndexSource:
    """Record i is an image filled with i (mod 256) and label i, so batches reveal their indices."""

    def __init__(self, n: int, size: int = 8):
        self.n, self.size = n, size

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i):
        return {"image": np.full((self.size, self.size, 3), i % 256, np.uint8), "label": int(i)}


def _take(it, n):
    return [next(it) for _ in range(n)]


def _assert_same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x["image"], y["image"])
        np.testing.assert_array_equal(x["label"], y["label"])


def test_batch_contract_on_digits():
    src = DigitsSource(image_size=16, channels=3, split="test")
    batch = next(make_pipeline(src, batch_size=8, image_size=12, seed=0))
    assert batch["image"].shape == (8, 12, 12, 3) and batch["image"].dtype == np.float32
    assert batch["label"].shape == (8,) and batch["label"].dtype == np.int32
    assert np.isfinite(batch["image"]).all() and set(batch["label"].tolist()) <= set(range(10))


def test_resume_from_state_is_exact():
    # 40 records / batch 8 = 5 batches per epoch: N + M = 7 crosses an epoch boundary
    src = SyntheticSource(40, 12, seed=0)
    kwargs = dict(batch_size=8, image_size=8, seed=7)
    it = make_pipeline(src, **kwargs)
    _take(it, 4)
    state = it.get_state()
    assert isinstance(state, bytes)
    expected = _take(it, 3)
    fresh = make_pipeline(src, **kwargs)
    fresh.set_state(state)
    _assert_same(_take(fresh, 3), expected)


def test_shards_disjoint_and_cover():
    src = IndexSource(50)
    shards = []
    for p in range(2):
        it = make_pipeline(
            src, batch_size=5, image_size=8, seed=3, num_epochs=1, process_index=p, process_count=2
        )
        shards.append(np.concatenate([b["label"] for b in it]))
    assert len(shards[0]) == len(shards[1]) == 25
    assert not set(shards[0]) & set(shards[1])
    assert set(shards[0]) | set(shards[1]) == set(range(50))


def test_shard_drops_remainder_and_checks_args():
    it = make_pipeline(IndexSource(11), batch_size=1, image_size=8, seed=0, num_epochs=1,
                       process_index=2, process_count=3)  # fmt: skip
    assert len(list(it)) == 3  # 11 // 3 records per host, the remainder dropped
    with pytest.raises(ValueError):
        make_pipeline(IndexSource(11), batch_size=1, image_size=8, seed=0, process_index=3,
                      process_count=3)  # fmt: skip
    with pytest.raises(ValueError):
        make_pipeline(IndexSource(4), batch_size=8, image_size=8, seed=0)


def test_deterministic_given_seed():
    src = SyntheticSource(32, 12, seed=0)
    a = _take(make_pipeline(src, batch_size=8, image_size=8, seed=1), 3)
    b = _take(make_pipeline(src, batch_size=8, image_size=8, seed=1), 3)
    c = _take(make_pipeline(src, batch_size=8, image_size=8, seed=2), 3)
    _assert_same(a, b)
    assert not np.array_equal(a[0]["image"], c[0]["image"])


def test_augmentation_differs_per_epoch_but_order_fixed_without_shuffle():
    src = IndexSource(8, size=12)
    src_img = SyntheticSource(8, 12, seed=0)
    e1, e2 = _take(make_pipeline(src_img, batch_size=8, image_size=8, seed=0, shuffle=False), 2)
    assert not np.array_equal(e1["image"], e2["image"])  # fresh crops/flips each epoch
    np.testing.assert_array_equal(e1["label"], e2["label"])
    it = make_pipeline(src, batch_size=4, image_size=8, seed=0, shuffle=False, num_epochs=1)
    assert np.concatenate([b["label"] for b in it]).tolist() == list(range(8))


def test_no_augment_is_eval_transform():
    src = SyntheticSource(6, 12, seed=0)
    it = make_pipeline(src, batch_size=3, image_size=8, seed=0, shuffle=False, augment=False)
    batch = next(it)
    for k in range(3):
        np.testing.assert_allclose(batch["image"][k], eval_transform(src[k]["image"], 8))
        assert batch["label"][k] == src[k]["label"]


def test_worker_processes_match_in_process_and_resume():
    src = SyntheticSource(32, 12, seed=0)
    kwargs = dict(batch_size=4, image_size=8, seed=1)
    expected = _take(make_pipeline(src, **kwargs), 6)
    it = make_pipeline(src, **kwargs, worker_count=1)
    _assert_same(_take(it, 4), expected[:4])
    state = it.get_state()
    del it
    resumed = make_pipeline(src, **kwargs, worker_count=1)
    resumed.set_state(state)
    _assert_same(_take(resumed, 2), expected[4:])
    del resumed
    gc.collect()  # stop grain's worker processes and free their shared memory now
