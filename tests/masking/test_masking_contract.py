"""The mask contract of DESIGN.md, checked for every strategy on several grids and ratios."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mim_jax import masking

# (strategy, options, grid, mask_ratio): valid requests covering every generator.
CASES = [
    ("random", {}, (14, 14), 0.75),
    ("random", {}, (7, 9), 0.5),
    ("random", {}, (8, 14, 14), 0.9),
    ("random", {}, (64, 8), 0.8),
    ("block", {}, (14, 14), 0.4),
    ("block", {"min_num_patches": 4}, (6, 10), 0.75),
    ("simmim", {}, (14, 14), 0.6),
    ("simmim", {"scale": 3}, (12, 9), 0.75),
    ("grid", {}, (14, 14), 0.75),
    ("grid", {"period": 3, "offset": (1, 2)}, (9, 12), 8 / 9),
    ("uniform", {}, (16, 16), 0.75),
    ("uniform", {"sampling": "iid", "secondary_ratio": 0.25}, (14, 14), 0.75),
    ("tube", {}, (8, 14, 14), 1408 / 1568),
    ("tube", {}, (4, 6, 6), 0.5),
    *[("color", {"color": c}, (14, 14), 0.75) for c in masking.COLORS],
    (
        "color",
        {"color": "green", "filter": "paper", "sigma1": (1.0, 0.5), "sigma2": (2.0, 1.5)},
        (10, 13),
        0.6,
    ),
    ("color", {"color": "purple", "filter": "paper"}, (14, 14), 0.75),
    ("color", {"color": "green", "center": 0.3, "width": 0.05, "scale": (1.0, 2.0)}, (9, 15), 0.6),
    ("color", {"color": "red", "margin": 0}, (14, 14), 0.75),
    ("color", {"color": "blue", "margin": (3, 5)}, (14, 14), 0.75),
    ("color3d", {"color": "green"}, (8, 14, 14), 0.9),
    ("color3d", {"color": "red", "filter": "paper", "sigma": (0.5, 2.0, 2.0)}, (4, 6, 6), 0.75),
    ("color3d", {"color": "purple", "scale": (2.0, 1.0, 1.0)}, (4, 6, 6), 0.75),
    ("color_tf", {"color": "blue"}, (64, 8), 0.8),
    ("color_tf", {"color": "green"}, (32, 8), 0.5),
    ("color_tf", {"color": "green", "filter": "paper"}, (32, 8), 0.5),
    ("colorbank", {"num_patterns": 16, "size": 20}, (14, 14), 0.75),
    ("colorbank", {"num_patterns": 4, "size": 16, "crop": "batch_shared"}, (14, 14), 0.75),
    (
        "colorbank",
        {"num_patterns": 4, "size": 16, "crop": "batch_shared", "shards": 2},
        (14, 14),
        0.75,
    ),
]
IDS = [f"{n}-{'-'.join(f'{k}={v}' for k, v in o.items())}-{g}-{r:.3g}" for n, o, g, r in CASES]
STRATEGIES_COVERED = {name for name, *_ in CASES}
BATCH = 6


@pytest.fixture(scope="module")
def generators():
    cache = {}

    def build(name, options):
        key = (name, repr(sorted(options.items())))
        if key not in cache:
            cache[key] = masking.get(name, **options)
        return cache[key]

    return build


def check_consistent(m: masking.Masks, batch: int, grid, ratio: float) -> None:
    """Every invariant of the Masks contract for one batch."""
    n = math.prod(grid)
    k = masking.num_visible(n, ratio)
    assert m.keep.shape == (batch, k) and m.keep.dtype == jnp.int32
    assert m.masked.shape == (batch, n - k) and m.masked.dtype == jnp.int32
    assert m.restore.shape == (batch, n) and m.restore.dtype == jnp.int32
    assert m.mask.shape == (batch, n) and m.mask.dtype == jnp.bool_
    keep, masked, restore, mask = (np.asarray(a) for a in (m.keep, m.masked, m.restore, m.mask))
    order = np.concatenate([keep, masked], axis=-1)
    np.testing.assert_array_equal(
        np.sort(order, axis=-1), np.broadcast_to(np.arange(n), order.shape)
    )
    np.testing.assert_array_equal(
        np.take_along_axis(order, restore, axis=-1), np.broadcast_to(np.arange(n), order.shape)
    )
    assert (mask.sum(-1) == n - k).all()
    assert not np.take_along_axis(mask, keep, axis=-1).any()
    assert np.take_along_axis(mask, masked, axis=-1).all()
    np.testing.assert_array_equal(mask, restore >= k)


def test_every_registered_strategy_is_covered():
    assert set(masking.STRATEGIES) == STRATEGIES_COVERED


@pytest.mark.parametrize("name,options,grid,ratio", CASES, ids=IDS)
def test_contract(generators, name, options, grid, ratio):
    gen = generators(name, options)
    key = jax.random.key(3)
    m = gen(key, batch_size=BATCH, grid=grid, mask_ratio=ratio)
    check_consistent(m, BATCH, grid, ratio)

    again = gen(key, batch_size=BATCH, grid=grid, mask_ratio=ratio)
    np.testing.assert_array_equal(m.keep, again.keep)  # deterministic in the key

    other = gen(jax.random.key(4), batch_size=BATCH, grid=grid, mask_ratio=ratio)
    masks = np.asarray(m.mask)
    if gen.deterministic:
        np.testing.assert_array_equal(masks, np.asarray(other.mask))
        assert (masks == masks[:1]).all()
    else:
        assert not np.array_equal(masks, np.asarray(other.mask)), "same masks for two keys"
        distinct = {row.tobytes() for row in masks}
        assert len(distinct) == BATCH, "samples of one batch share a pattern"


@pytest.mark.parametrize("name,options,grid,ratio", CASES[::3], ids=IDS[::3])
def test_inside_jit_matches_eager_and_stays_on_device(generators, name, options, grid, ratio):
    gen = generators(name, options)

    @jax.jit
    def step(key):
        m = gen(key, batch_size=BATCH, grid=grid, mask_ratio=ratio)
        return m.keep, m.mask

    key = jax.random.key(11)
    jaxpr = str(jax.make_jaxpr(step)(key))
    assert "callback" not in jaxpr and "infeed" not in jaxpr  # no host round-trip in the graph
    with jax.transfer_guard("disallow"):
        keep, mask = step(key)
        keep.block_until_ready()
    eager = gen(key, batch_size=BATCH, grid=grid, mask_ratio=ratio)
    np.testing.assert_array_equal(keep, eager.keep)
    np.testing.assert_array_equal(mask, eager.mask)


def test_raw_uint32_keys_work_too():
    gen = masking.get("random")
    typed = gen(jax.random.key(0), batch_size=2, grid=(4, 4), mask_ratio=0.5)
    raw = gen(jax.random.PRNGKey(0), batch_size=2, grid=(4, 4), mask_ratio=0.5)
    np.testing.assert_array_equal(typed.keep, raw.keep)


def test_colour_shorthand_equals_color_option():
    key = jax.random.key(0)
    a = masking.get("purple")(key, batch_size=3, grid=(14, 14), mask_ratio=0.75)
    b = masking.get("color", color="purple")(key, batch_size=3, grid=(14, 14), mask_ratio=0.75)
    np.testing.assert_array_equal(a.keep, b.keep)


def test_colour_keeps_the_highest_noise_values_visible():
    gen = masking.get("green")
    key = jax.random.key(5)
    m = gen(key, batch_size=4, grid=(14, 14), mask_ratio=0.75)
    noise = np.asarray(gen.noise_field(key, 4, (14, 14))).reshape(4, -1)
    for row, keep, mask in zip(noise, np.asarray(m.keep), np.asarray(m.mask), strict=True):
        assert row[keep].min() >= row[mask].max()
        assert (np.diff(row[keep]) <= 0).all()  # keep lists visible patches best first


def test_random_keeps_mae_order_smallest_noise_first():
    key = jax.random.key(2)
    m = masking.get("random")(key, batch_size=3, grid=(5, 5), mask_ratio=0.6)
    noise = np.asarray(jax.random.uniform(key, (3, 25), jnp.float32))
    np.testing.assert_array_equal(np.asarray(m.keep), np.argsort(noise, axis=-1)[:, :10])


def test_rounding_rule():
    assert masking.num_visible(196, 0.75) == 49
    assert masking.num_visible(1568, 0.9) == 157  # MAE's float int(N*(1-r)) would give 156
    assert masking.num_visible(512, 0.8) == 102
    assert masking.num_masked(10, 0.25) == 3  # 2.5 rounds up
    assert masking.num_masked(10, 0.35) == 4  # 3.5 (float 3.4999...) rounds to nearest


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    name=st.sampled_from(["random", "green", "red", "blue", "purple", "white", "block"]),
    h=st.integers(2, 12),
    w=st.integers(2, 12),
    ratio=st.floats(0.05, 0.95),
    batch=st.integers(1, 5),
    seed=st.integers(0, 2**31 - 1),
)
def test_invariants_hold_for_any_grid_and_ratio(generators, name, h, w, ratio, batch, seed):
    n = h * w
    k = masking.num_visible(n, ratio)
    if not 0 < k < n:
        with pytest.raises(ValueError, match="visible"):
            generators(name, {})(
                jax.random.key(seed), batch_size=batch, grid=(h, w), mask_ratio=ratio
            )
        return
    m = generators(name, {})(jax.random.key(seed), batch_size=batch, grid=(h, w), mask_ratio=ratio)
    check_consistent(m, batch, (h, w), ratio)
