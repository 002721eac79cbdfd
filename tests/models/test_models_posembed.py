"""Sin-cos position embeddings against loop-based NumPy references written from the formulas."""

import math

import numpy as np
import pytest

from mim_jax.models import posembed


def ref_1d(dim: int, pos: float) -> list[float]:
    """[sin(pos w_0), ..., sin(pos w_{d/2-1}), cos(pos w_0), ...], w_k = 10000^(-k/(d/2))."""
    half = dim // 2
    sins, coss = [], []
    for k in range(half):
        omega = 10000.0 ** (-k / half)
        sins.append(math.sin(pos * omega))
        coss.append(math.cos(pos * omega))
    return sins + coss


def ref_2d(dim: int, h: int, w: int, cls: bool) -> np.ndarray:
    rows = [[0.0] * dim] if cls else []
    for r in range(h):
        for c in range(w):
            # MAE: first half encodes the column (x), second half the row (y).
            rows.append(ref_1d(dim // 2, c) + ref_1d(dim // 2, r))
    return np.array(rows, dtype=np.float64)


def ref_3d(dim: int, t: int, h: int, w: int) -> np.ndarray:
    space = dim * 12 // 16
    rows = []
    for f in range(t):
        for r in range(h):
            for c in range(w):
                rows.append(ref_1d(space // 2, c) + ref_1d(space // 2, r) + ref_1d(dim - space, f))
    return np.array(rows, dtype=np.float64)


@pytest.mark.parametrize(
    ("dim", "grid", "cls"),
    [(16, (4, 4), True), (32, (3, 5), False), (8, (2, 7), True), (64, (14, 14), True)],
)
def test_2d_matches_reference(dim, grid, cls):
    table = posembed.sincos_2d(dim, grid, cls_token=cls)
    assert table.dtype == np.float32
    assert table.shape == (int(cls) + grid[0] * grid[1], dim)
    np.testing.assert_allclose(table, ref_2d(dim, *grid, cls), rtol=0, atol=1e-6)
    if cls:
        assert not table[0].any()


def test_2d_column_in_first_half():
    table = posembed.sincos_2d(16, (3, 4))
    # token (r=0, c=1) vs (r=0, c=0): only the first half differs.
    diff = table[1] != table[0]
    assert diff[:8].any() and not diff[8:].any()
    # token (r=1, c=0) vs (r=0, c=0): only the second half differs.
    diff = table[4] != table[0]
    assert not diff[:8].any() and diff[8:].any()


def test_2d_known_values():
    # position 0 -> sin 0, cos 1 in every half; k = 0 frequency is 1 rad per position.
    table = posembed.sincos_2d(8, (2, 2))
    np.testing.assert_allclose(table[0], [0, 0, 1, 1, 0, 0, 1, 1], atol=1e-7)
    np.testing.assert_allclose(table[1, 0], math.sin(1.0), atol=1e-7)
    np.testing.assert_allclose(table[1, 1], math.sin(1.0 / 100.0), atol=1e-7)  # 10000^(-1/2)


def test_rectangular_tf_grid_is_2d_table():
    # AudioMAE (T, F) grid: time on rows, frequency on columns.
    table = posembed.sincos_pos_embed(32, (6, 2), cls_token=True)
    np.testing.assert_allclose(table, ref_2d(32, 6, 2, True), atol=1e-6)


@pytest.mark.parametrize(("dim", "grid"), [(16, (2, 3, 3)), (64, (4, 2, 5))])
def test_3d_matches_reference(dim, grid):
    table = posembed.sincos_3d(dim, grid)
    assert table.dtype == np.float32
    np.testing.assert_allclose(table, ref_3d(dim, *grid), atol=1e-6)
    with_cls = posembed.sincos_pos_embed(dim, grid, cls_token=True)
    np.testing.assert_array_equal(with_cls[1:], table)
    assert not with_cls[0].any()


def test_3d_first_three_quarters_is_2d_table_per_frame():
    dim, (t, h, w) = 32, (3, 2, 4)
    table = posembed.sincos_3d(dim, (t, h, w)).reshape(t, h * w, dim)
    spatial = posembed.sincos_2d(dim * 3 // 4, (h, w))
    for f in range(t):
        np.testing.assert_array_equal(table[f, :, : dim * 3 // 4], spatial)


def test_bad_dims_raise():
    with pytest.raises(ValueError, match="divisible by 4"):
        posembed.sincos_2d(18, (2, 2))
    with pytest.raises(ValueError, match="divisible by 16"):
        posembed.sincos_3d(24, (2, 2, 2))
