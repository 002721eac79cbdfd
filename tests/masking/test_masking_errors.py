"""Bad input gets a ValueError that says what was wrong and what is valid."""

from __future__ import annotations

import jax
import pytest

from mim_jax import masking

KEY = jax.random.key(0)


def call(name, grid=(14, 14), ratio=0.75, batch=2, **options):
    return masking.get(name, **options)(KEY, batch_size=batch, grid=grid, mask_ratio=ratio)


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match=r"unknown mask 'randm'.*random.*block.*colorbank.*green"):
        masking.get("randm")


def test_unknown_option_lists_valid_options():
    with pytest.raises(ValueError, match=r"no option sigma.*options are: .*scale"):
        masking.get("simmim", sigma=2)
    with pytest.raises(ValueError, match=r"'random' has no option ratio.*none"):
        masking.get("random", ratio=0.5)


@pytest.mark.parametrize("ratio", [0.0, 1.0, -0.1, 1.5, float("nan")])
def test_ratio_outside_open_interval(ratio):
    with pytest.raises(ValueError, match=r"strictly between 0 and 1"):
        call("random", ratio=ratio)


@pytest.mark.parametrize("ratio", [True, "0.75", None])
def test_ratio_of_wrong_type(ratio):
    with pytest.raises(ValueError, match="mask_ratio must be a float"):
        call("random", ratio=ratio)


@pytest.mark.parametrize("grid,ratio", [((2, 2), 0.9), ((4, 4), 0.02), ((3, 3), 0.97)])
def test_ratio_leaving_no_visible_or_no_masked_patch(grid, ratio):
    with pytest.raises(ValueError, match=r"leaves \d+ visible.*use a ratio in"):
        call("green", grid=grid, ratio=ratio)


def test_bad_batch_size_and_grid():
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        call("random", batch=0)
    with pytest.raises(ValueError, match=r"grid must have shape \(H, W\)"):
        call("green", grid=(8, 14, 14))
    with pytest.raises(ValueError, match=r"grid must have shape \(T, H, W\)"):
        call("tube", grid=(14, 14))
    with pytest.raises(ValueError, match="every grid side must be >= 1"):
        call("random", grid=(0, 14))


def test_grid_masking_needs_even_sides_and_its_ratio():
    with pytest.raises(ValueError, match=r"multiples of 2; got grid \(15, 14\)"):
        call("grid", grid=(15, 14))
    with pytest.raises(ValueError, match=r"means mask_ratio=0.75 .*got mask_ratio=0.6"):
        call("grid", ratio=0.6)
    with pytest.raises(ValueError, match=r"mask_ratio=0.888889"):
        call("grid", grid=(9, 9), ratio=0.75, period=3)
    with pytest.raises(ValueError, match="offset must be"):
        masking.get("grid", offset=(2, 0))


def test_uniform_needs_even_grid_ratio_and_valid_options():
    with pytest.raises(ValueError, match="multiples of 2"):
        call("uniform", grid=(13, 13))
    with pytest.raises(ValueError, match="sampling must be 'balanced' or 'iid'"):
        masking.get("uniform", sampling="random")
    with pytest.raises(ValueError, match=r"secondary_ratio must lie in \[0, 1\)"):
        masking.get("uniform", secondary_ratio=1.0)


def test_tube_names_ratios_that_work():
    with pytest.raises(ValueError, match=r"K=157 .*not a multiple of T=8.*0.897959 \(K=160\)"):
        call("tube", grid=(8, 14, 14), ratio=0.9)


def test_simmim_scale_must_divide_the_grid():
    with pytest.raises(ValueError, match=r"not divisible into 4x4.*\[1, 2, 7, 14\]"):
        call("simmim", scale=4)


def test_colour_options():
    with pytest.raises(ValueError, match="unknown color 'pink'; valid colors: white, red"):
        masking.get("color", color="pink")
    # The figure filters (default) read center/width/low_width; the paper's read sigmas.
    with pytest.raises(
        ValueError, match="color='red' with filter='figure' reads width; remove sigma1"
    ):
        masking.get("red", sigma1=1.0)
    with pytest.raises(
        ValueError, match="color='red' with filter='paper' reads sigma; remove sigma1"
    ):
        masking.get("red", filter="paper", sigma1=1.0)
    with pytest.raises(ValueError, match="filter='figure' reads center, width; remove sigma"):
        masking.get("blue", sigma=1.0)
    with pytest.raises(ValueError, match="filter must be one of figure, paper, got 'dog'"):
        masking.get("green", filter="dog")
    with pytest.raises(ValueError, match="needs sigma1 < sigma2"):
        masking.get("green", filter="paper", sigma1=2.0, sigma2=1.0)
    with pytest.raises(ValueError, match="option sigma must be a number > 0"):
        masking.get("blue", filter="paper", sigma=-1.0)
    with pytest.raises(ValueError, match="option width must be a number > 0"):
        masking.get("green", width=0.0)
    with pytest.raises(ValueError, match=r"center is one number .* use scale"):
        masking.get("green", center=(0.2, 0.3))
    with pytest.raises(ValueError, match="needs 3 values"):
        masking.get("color3d", color="red", filter="paper", sigma=(1.0, 2.0))
    with pytest.raises(ValueError, match="scale needs 3 values"):
        masking.get("color3d", scale=(1.0, 2.0))
    with pytest.raises(ValueError, match="shards must be an int >= 1"):
        masking.get("colorbank", num_patterns=2, size=14, shards=0)
    gen = masking.get("colorbank", num_patterns=2, size=14, crop="batch_shared", shards=4)
    with pytest.raises(ValueError, match="batch_size=6 does not split into shards=4"):
        gen(jax.random.key(0), batch_size=6, grid=(14, 14), mask_ratio=0.75)
    with pytest.raises(ValueError, match="shorthand for color='green'"):
        masking.get("green", color="red")
    with pytest.raises(ValueError, match="margin must be an int >= 0 or 2 of them"):
        masking.get("green", margin=-1)
    with pytest.raises(ValueError, match="margin must be an int >= 0 or 3 of them"):
        masking.get("color3d", margin=(1, 2))


def test_block_options():
    with pytest.raises(ValueError, match="min_num_patches must be a number > 0"):
        masking.get("block", min_num_patches=0)
    with pytest.raises(ValueError, match=r"max_aspect .* must be >= min_aspect"):
        masking.get("block", min_aspect=2.0, max_aspect=1.0)
