"""MAE augmentation functions: crop sampling (torchvision's algorithm), resize, flip, normalise."""

import math

import numpy as np
import pytest

from mim_jax.data import augment as aug


def test_crop_params_in_bounds_and_ranges():
    rng = np.random.default_rng(0)
    h_img, w_img = 48, 64
    for _ in range(300):
        top, left, h, w = aug.random_resized_crop_params(rng, h_img, w_img)
        assert top >= 0 and top + h <= h_img and left >= 0 and left + w <= w_img
        assert h > 0 and w > 0
        # area and ratio within the ranges, up to integer rounding of h and w
        assert 0.2 * h_img * w_img * 0.8 <= h * w <= h_img * w_img
        assert 3 / 4 * 0.85 <= w / h <= 4 / 3 * 1.15


def test_crop_params_fallback_is_centre_crop():
    rng = np.random.default_rng(0)
    # an impossible scale forces the fallback after 10 attempts
    assert aug.random_resized_crop_params(rng, 32, 32, scale=(2.0, 3.0)) == (0, 0, 32, 32)
    # too-wide image: full height, width clamped to the max ratio, centred
    top, left, h, w = aug.random_resized_crop_params(rng, 10, 100, scale=(2.0, 3.0))
    assert (h, w) == (10, round(10 * 4 / 3)) and top == 0 and left == (100 - w) // 2
    # too-tall image: full width, height clamped to the min ratio
    top, left, h, w = aug.random_resized_crop_params(rng, 100, 10, scale=(2.0, 3.0))
    assert (h, w) == (round(10 / (3 / 4)), 10) and left == 0 and top == (100 - h) // 2


def test_crop_params_deterministic_given_generator():
    a = [aug.random_resized_crop_params(np.random.default_rng(5), 40, 40) for _ in range(3)]
    assert a[0] == a[1] == a[2]
    many = {aug.random_resized_crop_params(np.random.default_rng(s), 40, 40) for s in range(20)}
    assert len(many) > 10


@pytest.mark.parametrize("channels", [1, 3])
def test_train_transform_shape_dtype_and_flip(channels):
    img = np.random.default_rng(0).integers(0, 256, (20, 28, channels), dtype=np.uint8)
    out = aug.mae_train_transform(img, np.random.default_rng(1), 16, flip_prob=0.0)
    assert out.shape == (16, 16, channels) and out.dtype == np.float32
    flipped = aug.mae_train_transform(img, np.random.default_rng(1), 16, flip_prob=1.0)
    np.testing.assert_array_equal(flipped, out[:, ::-1])


def test_resize_box_matches_crop_then_resize():
    img = np.random.default_rng(0).integers(0, 256, (20, 20, 3), dtype=np.uint8)
    crop = img[3:13, 5:15]
    np.testing.assert_array_equal(aug.resize(img, 8, box=(3, 5, 10, 10)), aug.resize(crop, 8))


def test_normalize_and_eval_transform():
    mean, std = aug.IMAGENET_MEAN, aug.IMAGENET_STD
    img = np.broadcast_to(np.round(np.asarray(mean) * 255).astype(np.uint8), (6, 6, 3))
    out = aug.normalize(img)
    assert out.dtype == np.float32 and np.abs(out).max() < 0.01
    white = np.full((10, 12, 1), 255, np.uint8)
    ev = aug.eval_transform(white, 8)
    assert ev.shape == (8, 8, 1)
    np.testing.assert_allclose(ev, (1 - mean[0]) / std[0], rtol=1e-6)
    assert math.isclose(float(aug.normalize(white, (0.5,), (0.5,))[0, 0, 0]), 1.0)
