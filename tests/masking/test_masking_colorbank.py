"""The paper-exact colour bank: generation, files on disk, and both crop modes."""

from __future__ import annotations

import itertools

import jax
import numpy as np
import pytest

from mim_jax import masking
from mim_jax.masking.core import num_visible


@pytest.fixture(scope="module")
def small_bank():
    return masking.generate_bank("green", num_patterns=8, size=18, seed=1)


def test_generated_bank_is_standardised_and_reproducible(small_bank):
    assert small_bank.shape == (8, 18, 18) and small_bank.dtype == np.float32
    np.testing.assert_allclose(small_bank.mean(axis=(1, 2)), 0, atol=1e-5)
    np.testing.assert_allclose(small_bank.std(axis=(1, 2)), 1, atol=1e-4)
    np.testing.assert_array_equal(small_bank, masking.generate_bank("green", 8, 18, seed=1))
    assert not np.array_equal(small_bank, masking.generate_bank("green", 8, 18, seed=2))


def test_save_and_load_round_trip(tmp_path, small_bank):
    path = tmp_path / "green.npz"
    masking.save_bank(path, small_bank, "green", sigma1=1.0, sigma2=2.0)
    bank, meta = masking.load_bank(path)
    np.testing.assert_array_equal(bank, small_bank)
    assert meta == {"color": "green", "sigma1": 1.0, "sigma2": 2.0}
    gen = masking.get("colorbank", color="green", bank=str(path))
    m = gen(jax.random.key(0), batch_size=3, grid=(14, 14), mask_ratio=0.75)
    assert m.keep.shape == (3, 49)
    with pytest.raises(ValueError, match="holds green noise but color='red'"):
        masking.get("colorbank", color="red", bank=str(path))


def test_official_style_file_with_one_unnamed_array_loads(tmp_path, small_bank):
    path = tmp_path / "green_noise_data_3072.npz"
    np.savez(path, small_bank)  # the official banks hold a single array named arr_0
    bank, meta = masking.load_bank(path)
    np.testing.assert_array_equal(bank, small_bank)
    assert meta == {}
    npy = tmp_path / "bank.npy"
    np.save(npy, small_bank)
    np.testing.assert_array_equal(masking.load_bank(npy)[0], small_bank)


def test_unreadable_or_misshapen_bank_files(tmp_path):
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"PK\x03\x04 this is not a zip archive")
    with pytest.raises(ValueError, match="cannot read a noise bank"):
        masking.load_bank(corrupt)
    with pytest.raises(ValueError, match="cannot read a noise bank"):
        masking.load_bank(tmp_path / "missing.npz")
    flat = tmp_path / "flat.npz"
    np.savez(flat, noise=np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError, match=r"shape \(4, 4\); a bank is \[L, M, N\]"):
        masking.load_bank(flat)


def test_grid_larger_than_patterns_is_rejected(small_bank):
    gen = masking.get("colorbank", bank=small_bank)
    with pytest.raises(ValueError, match=r"grid \(20, 20\) is larger than the bank's 18x18"):
        gen(jax.random.key(0), batch_size=2, grid=(20, 20), mask_ratio=0.75)


def window_masks(pattern: np.ndarray, grid, k: int) -> dict:
    """Every (offset, flip) window of one pattern -> the keep set it yields."""
    m, n = pattern.shape
    out = {}
    for top, left, fh, fv in itertools.product(
        range(m - grid[0] + 1), range(n - grid[1] + 1), (0, 1), (0, 1)
    ):
        w = pattern[top : top + grid[0], left : left + grid[1]]
        w = w[:, ::-1] if fh else w
        w = w[::-1, :] if fv else w
        out[(top, left, fh, fv)] = frozenset(np.argsort(-w.ravel(), kind="stable")[:k].tolist())
    return out


def test_batch_shared_crop_is_the_papers_rule(small_bank):
    """Sample i uses pattern i mod L, and one offset + flip pair explains the whole pass."""
    grid, batch = (14, 14), 12  # 12 > L = 8: two passes over the bank
    k = num_visible(196, 0.75)
    gen = masking.get("colorbank", bank=small_bank, crop="batch_shared")
    m = gen(jax.random.key(3), batch_size=batch, grid=grid, mask_ratio=0.75)
    keeps = [frozenset(row.tolist()) for row in np.asarray(m.keep)]
    windows = [window_masks(p, grid, k) for p in small_bank]
    for first, last in ((0, 8), (8, 12)):
        shared = set.intersection(
            *[{c for c, s in windows[i % 8].items() if s == keeps[i]} for i in range(first, last)]
        )
        assert shared, f"no single crop explains samples {first}..{last - 1}"


def test_batch_shared_per_shard_restarts_the_bank_with_its_own_crop(small_bank):
    """shards=2: each half of the batch is one device's batch, as in the official code."""
    grid, batch, k = (14, 14), 12, num_visible(196, 0.75)
    gen = masking.get("colorbank", bank=small_bank, crop="batch_shared", shards=2)
    windows = [window_masks(p, grid, k) for p in small_bank]
    crops = []
    for seed in range(4):
        m = gen(jax.random.key(seed), batch_size=batch, grid=grid, mask_ratio=0.75)
        keeps = [frozenset(row.tolist()) for row in np.asarray(m.keep)]
        for shard in (0, 1):
            samples = range(6 * shard, 6 * shard + 6)  # local samples 0..5 use patterns 0..5
            shared = set.intersection(
                *[{c for c, s in windows[i - 6 * shard].items() if s == keeps[i]} for i in samples]
            )
            assert shared, f"no single crop explains shard {shard} with patterns 0..5"
            crops.append((seed, shard, frozenset(shared)))
    # The shards draw their crops independently: they differ for some key.
    assert any(a[2].isdisjoint(b[2]) for a, b in zip(crops[::2], crops[1::2], strict=True))


def test_per_sample_crop_draws_patterns_and_windows_independently(small_bank):
    grid = (14, 14)
    k = num_visible(196, 0.75)
    gen = masking.get("colorbank", bank=small_bank)
    m = gen(jax.random.key(4), batch_size=40, grid=grid, mask_ratio=0.75)
    windows = [window_masks(p, grid, k) for p in small_bank]
    sources = []
    for keep in (frozenset(r.tolist()) for r in np.asarray(m.keep)):
        found = [(i, c) for i, w in enumerate(windows) for c, s in w.items() if s == keep]
        assert found, "a mask that no window of the bank produces"
        sources.append(found[0])
    assert len({i for i, _ in sources}) >= 5  # patterns drawn at random, not the first B
    assert len({c[:2] for _, c in sources}) >= 5  # offsets differ between samples


def test_generators_with_different_banks_or_crops_do_not_share_a_compiled_function(small_bank):
    # Regression: colorbank generators once compared equal whatever their bank, crop or shards,
    # so the first one compiled served every later one.
    key, grid = jax.random.key(0), (14, 14)
    other = masking.generate_bank("green", num_patterns=8, size=18, seed=5)
    a = masking.get("colorbank", bank=small_bank, crop="batch_shared")
    b = masking.get("colorbank", bank=other, crop="batch_shared")
    c = masking.get("colorbank", bank=small_bank, crop="batch_shared", shards=2)
    keeps = [np.asarray(g(key, batch_size=12, grid=grid, mask_ratio=0.75).keep) for g in (a, b, c)]
    assert not np.array_equal(keeps[0], keeps[1])
    assert not np.array_equal(keeps[0][6:], keeps[2][6:])
