"""MAE's evaluation-protocol transforms: the eval crop, the linear probe's and fine-tuning's train
augmentation, timm's RandAugment (rand-m9-mstd0.5-inc1) and RandomErasing (p 0.25, pixel)."""

import numpy as np
import pytest

from mim_jax import data
from mim_jax.data import augment as aug
from mim_jax.data.randaugment import (
    LEVEL_TO_ARG,
    MAE_POLICY,
    RAND_INCREASING_OPS,
    RAND_OPS,
    RandAugment,
    apply_op,
    fill_colour,
)
from mim_jax.data.random_erasing import RandomErasing


def _columns(h: int, w: int) -> np.ndarray:
    """uint8[h, w, 1] whose value is the column index (to read crop offsets back)."""
    return np.broadcast_to(np.arange(w, dtype=np.uint8)[None, :, None], (h, w, 1)).copy()


# ---- evaluation transform ------------------------------------------------------------------


def test_mae_crop_fraction_and_resize_sizes():
    assert aug.mae_crop_fraction(224) == 0.875 and int(224 / aug.mae_crop_fraction(224)) == 256
    assert int(32 / aug.mae_crop_fraction(32)) == 36  # smaller inputs scale with the fraction
    assert aug.mae_crop_fraction(384) == 1.0  # MAE: crop_pct 1.0 above 224
    assert aug.resize_shorter_side(np.zeros((300, 400, 3), np.uint8), 256).shape == (256, 341, 3)
    assert aug.resize_shorter_side(np.zeros((400, 300, 3), np.uint8), 256).shape == (341, 256, 3)


def test_eval_transform_resizes_the_shorter_side_and_crops_the_centre():
    img = _columns(40, 80)
    # size 28 at 0.875: shorter side 40 -> 32, longer 80 -> 64; centre 28x28 from (2, 18)
    out = aug.eval_transform(img, 28, mean=(0.0,), std=(1 / 255,), interpolation="nearest")
    small = aug.resize(img, (32, 64), interpolation="nearest")
    np.testing.assert_allclose(out, small[2:30, 18:46].astype(np.float32), atol=1e-4)
    # nearest: column 18 of 64 samples column floor(18.5 * 80 / 64) = 23 of 80
    assert out.shape == (28, 28, 1) and out[0, 0, 0] == pytest.approx(23.0, abs=1e-4)
    # crop fraction 1 on a square image is a whole-image resize (the digits recipe)
    sq = np.random.default_rng(0).integers(0, 256, (20, 20, 3), dtype=np.uint8)
    np.testing.assert_array_equal(
        aug.eval_transform(sq, 16, crop_fraction=1.0), aug.normalize(aug.resize(sq, 16))
    )
    with pytest.raises(ValueError, match="crop_fraction"):
        aug.eval_transform(sq, 16, crop_fraction=1.5)


def test_eval_transform_bicubic_matches_pillow_resize_then_centre_crop():
    from PIL import Image

    img = np.random.default_rng(1).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    ref = np.asarray(Image.fromarray(img).resize((341, 256), Image.Resampling.BICUBIC))
    ref = ref[16:240, 58:282]  # torchvision: round((256-224)/2)=16, round((341-224)/2)=58
    np.testing.assert_allclose(aug.eval_transform(img, 224), aug.normalize(ref), atol=1e-6)


# ---- linear-probe train transform -----------------------------------------------------------


def test_linprobe_crop_is_one_draw_clamped_to_the_image():
    rng = np.random.default_rng(0)
    areas = []
    for _ in range(2000):
        top, left, h, w = aug.linprobe_crop_params(rng, 60, 60)
        assert 0 <= top <= 60 - h and 0 <= left <= 60 - w and h >= 1 and w >= 1
        areas.append(h * w / 3600)
    # area fraction ~ U(0.08, 1) before clamping: median near 0.54, extremes reached
    assert 0.48 < np.median(areas) < 0.56 and min(areas) < 0.1 and max(areas) > 0.95
    # scale (1, 1): no retries and no fallback; the long side is clamped, so one side is full and
    # the box is never wider than tall by more than the sampled aspect (torchvision would retry)
    boxes = [aug.linprobe_crop_params(rng, 60, 60, scale=(1.0, 1.0)) for _ in range(200)]
    assert all(max(h, w) == 60 for _, _, h, w in boxes)
    assert sum(min(h, w) < 58 for _, _, h, w in boxes) > 100


def test_linprobe_transform_flips_half_the_time():
    img = np.zeros((32, 32, 1), np.uint8)
    img[:, 16:] = 255  # dark left half, bright right half
    flipped = 0
    for seed in range(300):
        out = aug.linprobe_train_transform(img, np.random.default_rng(seed), 16, scale=(0.9, 1))
        assert out.shape == (16, 16, 1) and out.dtype == np.float32
        flipped += out[:, 0].mean() > out[:, -1].mean()
    assert 120 < flipped < 180


# ---- RandAugment ----------------------------------------------------------------------------


def test_policy_string_parses_like_timm():
    mae = RandAugment.from_spec(MAE_POLICY)
    assert mae.ops == RAND_INCREASING_OPS and len(mae.ops) == 15
    assert (mae.num_ops, mae.magnitude, mae.magnitude_std, mae.prob) == (2, 9.0, 0.5, 0.5)
    plain = RandAugment.from_spec("rand-n3-m5")
    assert plain.ops == RAND_OPS and plain.num_ops == 3 and plain.magnitude_std == 0.0
    assert RandAugment.from_spec("rand").magnitude == 10.0  # timm's default magnitude
    for bad in ("auto-m9", "rand-w0", "rand-mx", "rand-q3"):
        with pytest.raises(ValueError):
            RandAugment.from_spec(bad)
    with pytest.raises(ValueError, match="unknown RandAugment op"):
        apply_op(np.zeros((4, 4, 3), np.uint8), "Cutout")


def test_op_choice_probability_and_magnitude_statistics():
    policy = RandAugment.from_spec(MAE_POLICY)
    rng = np.random.default_rng(0)
    draws = [policy.sample(rng) for _ in range(15000)]
    flat = [d for pair in draws for d in pair]
    assert all(len(pair) == 2 for pair in draws)
    counts = np.array([sum(d.name == op for d in flat) for op in RAND_INCREASING_OPS])
    assert counts.min() > 0.9 * len(flat) / 15 and counts.max() < 1.1 * len(flat) / 15
    same = np.mean([a.name == b.name for a, b in draws])  # with replacement: 1/15 repeats
    assert abs(same - 1 / 15) < 0.01
    applied = [d for d in flat if d.applied]
    assert abs(len(applied) / len(flat) - 0.5) < 0.01  # per-op probability 0.5
    mags = np.array([d.magnitude for d in applied])
    assert abs(mags.mean() - 9.0) < 0.02 and 0.45 < mags.std() < 0.52  # N(9, 0.5) clipped
    assert mags.max() == 10.0 and abs(np.mean(mags == 10.0) - 0.0228) < 0.006  # P(z > 2)
    rot = [d for d in applied if d.name == "Rotate"]
    np.testing.assert_allclose([abs(d.arg) for d in rot], [d.magnitude * 3 for d in rot])
    assert abs(np.mean([d.arg < 0 for d in rot]) - 0.5) < 0.05  # random sign


def test_level_to_argument_table_at_magnitude_9():
    rng = np.random.default_rng(0)
    args = {name: fn(9.0, rng) for name, fn in LEVEL_TO_ARG.items() if fn is not None}
    assert abs(args["Rotate"]) == pytest.approx(27.0)
    assert args["PosterizeIncreasing"] == 1 and args["Posterize"] == 3
    assert args["SolarizeIncreasing"] == 26 and args["Solarize"] == 230
    assert args["SolarizeAdd"] == 99
    for name in ("ColorIncreasing", "ContrastIncreasing", "BrightnessIncreasing"):
        assert abs(args[name] - 1.0) == pytest.approx(0.81)
    assert args["Color"] == pytest.approx(1.72)
    assert abs(args["ShearX"]) == pytest.approx(0.27)
    assert abs(args["TranslateYRel"]) == pytest.approx(0.405)
    assert fill_colour(aug.IMAGENET_MEAN) == (124, 116, 104) and fill_colour((0.5,), 1) == (128,)
    image = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    for level in (0.0, 10.0):  # every op runs at both ends of the clipped magnitude range
        for name, fn in LEVEL_TO_ARG.items():
            out = apply_op(image, name, None if fn is None else fn(level, rng))
            assert out.shape == image.shape and out.dtype == np.uint8


@pytest.fixture(scope="module")
def picture():
    rng = np.random.default_rng(3)
    return rng.integers(50, 151, (24, 24, 3), dtype=np.uint8)


def test_pixel_ops_act_as_documented(picture):
    x = picture.astype(np.int32)
    np.testing.assert_array_equal(apply_op(picture, "Invert"), 255 - x)
    np.testing.assert_array_equal(apply_op(picture, "PosterizeIncreasing", 1), x & 0x80)
    np.testing.assert_array_equal(apply_op(picture, "PosterizeIncreasing", 0), 0 * x)  # level 10
    np.testing.assert_array_equal(apply_op(picture, "Posterize", 8), x)
    np.testing.assert_array_equal(
        apply_op(picture, "SolarizeIncreasing", 100), np.where(x >= 100, 255 - x, x)
    )
    np.testing.assert_array_equal(
        apply_op(picture, "SolarizeAdd", 99), np.where(x < 128, np.minimum(x + 99, 255), x)
    )
    stretched = apply_op(picture, "AutoContrast")
    assert stretched.min() == 0 and stretched.max() == 255
    equalized = apply_op(picture, "Equalize")
    assert equalized.max() > 240 and equalized.min() < 15  # histogram spread over 0-255
    bright = apply_op(picture, "BrightnessIncreasing", 1.5).astype(np.int32)
    assert np.abs(bright - np.clip(x * 1.5, 0, 255)).max() <= 1
    low = apply_op(picture, "ContrastIncreasing", 0.19).astype(np.int32)
    assert low.std() < 0.3 * x.std()  # blended towards the mean grey
    gray = np.repeat(picture[..., :1], 3, axis=-1)
    np.testing.assert_array_equal(apply_op(gray, "ColorIncreasing", 0.19), gray)  # no colour
    desat = apply_op(picture, "ColorIncreasing", 0.0).astype(np.int32)
    assert np.abs(desat[..., 0] - desat[..., 1]).max() <= 1  # factor 0: greyscale
    flat = np.full((12, 12, 3), 90, np.uint8)
    np.testing.assert_array_equal(apply_op(flat, "SharpnessIncreasing", 1.8), flat)


def test_geometric_ops_move_pixels_and_fill_with_the_mean_colour(picture):
    fill = fill_colour(aug.IMAGENET_MEAN)
    moved = apply_op(picture, "TranslateXRel", 0.25, fill=fill)  # 6 of 24 pixels left
    np.testing.assert_array_equal(moved[:, :18], picture[:, 6:])
    assert (moved[:, 18:] == fill).all()
    down = apply_op(picture, "TranslateYRel", -0.25, fill=fill)  # 6 pixels down
    np.testing.assert_array_equal(down[6:], picture[:18])
    # Pillow samples pixel centres: row y moves left by 0.4 * (y + 0.5) pixels
    sheared = apply_op(picture, "ShearX", 0.4, fill=fill)
    np.testing.assert_array_equal(sheared[2, :23], picture[2, 1:])
    np.testing.assert_array_equal(sheared[12, :19], picture[12, 5:])
    assert (sheared[12, 19:] == fill).all()
    flat = np.full((24, 24, 3), 200, np.uint8)
    rotated = apply_op(flat, "Rotate", 27.0, fill=fill)
    assert (rotated[0, 0] == fill).all() and (rotated[12, 12] == 200).all()
    one = apply_op(flat[..., :1], "Rotate", -27.0, fill=(124,))
    assert one.shape == (24, 24, 1) and one[0, 0, 0] == 124 and one[12, 12, 0] == 200


def test_rand_augment_is_reproducible_and_matches_its_draws(picture):
    policy = RandAugment.from_spec(MAE_POLICY)
    a = policy(picture, np.random.default_rng(7), fill=(124, 116, 104))
    b = policy(picture, np.random.default_rng(7), fill=(124, 116, 104))
    np.testing.assert_array_equal(a, b)
    expected = picture
    for d in policy.sample(np.random.default_rng(7)):
        if d.applied:
            expected = apply_op(expected, d.name, d.arg, fill=(124, 116, 104))
    np.testing.assert_array_equal(a, expected)
    outs = {policy(picture, np.random.default_rng(s)).tobytes() for s in range(30)}
    assert len(outs) > 20


# ---- RandomErasing --------------------------------------------------------------------------


def _erased_box(before: np.ndarray, after: np.ndarray) -> tuple[int, int, int, int] | None:
    changed = np.any(before != after, axis=-1)
    if not changed.any():
        return None
    rows, cols = np.where(changed.any(1))[0], np.where(changed.any(0))[0]
    box = (rows[0], cols[0], rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1)
    assert changed[box[0] : box[0] + box[2], box[1] : box[1] + box[3]].all()  # a full rectangle
    return box


def test_random_erasing_probability_area_and_aspect():
    erasing = RandomErasing()  # MAE: p 0.25, pixel mode, one box
    image = np.full((40, 40, 3), 5.0, np.float32)
    boxes = []
    for seed in range(3000):
        box = _erased_box(image, erasing(image, np.random.default_rng(seed)))
        if box is not None:
            boxes.append(box)
    assert abs(len(boxes) / 3000 - 0.25) < 0.025
    hs, ws = np.array([b[2] for b in boxes]), np.array([b[3] for b in boxes])
    area = hs * ws / 1600
    assert area.min() > 0.015 and area.max() < 0.36  # U(0.02, 1/3), up to rounding
    assert abs(area.mean() - (0.02 + 1 / 3) / 2) < 0.02
    assert hs.max() < 40 and ws.max() < 40  # timm keeps boxes strictly inside
    log_aspect = np.log(hs / ws)
    assert abs(np.median(log_aspect)) < 0.1  # log-uniform over [log 0.3, log 1/0.3]
    assert log_aspect.min() < -0.9 and log_aspect.max() > 0.9


def test_random_erasing_fill_modes():
    image = np.full((32, 32, 3), 5.0, np.float32)
    rng = np.random.default_rng(0)
    out = RandomErasing(probability=1.0)(image, rng)
    top, left, h, w = _erased_box(image, out)
    noise = out[top : top + h, left : left + w]
    assert abs(noise.mean()) < 0.25 and 0.8 < noise.std() < 1.2  # per-pixel N(0, 1)
    assert image[0, 0, 0] == 5.0  # the input is not modified
    out = RandomErasing(probability=1.0, mode="rand")(image, rng)
    top, left, h, w = _erased_box(image, out)
    block = out[top : top + h, left : left + w]
    np.testing.assert_array_equal(block, np.broadcast_to(block[:1, :1], block.shape))
    out = RandomErasing(probability=1.0, mode="const")(image, rng)
    top, left, h, w = _erased_box(image, out)
    assert (out[top : top + h, left : left + w] == 0).all()
    np.testing.assert_array_equal(RandomErasing(probability=0.0)(image, rng), image)
    with pytest.raises(ValueError, match="mode"):
        RandomErasing(mode="noise")


# ---- the composed fine-tuning transform in the grain pipeline -------------------------------


def test_finetune_transform_composes_crop_randaugment_and_erasing():
    img = np.random.default_rng(0).integers(0, 256, (40, 48, 3), dtype=np.uint8)
    policy = RandAugment.from_spec(MAE_POLICY)
    full = aug.finetune_train_transform(img, np.random.default_rng(5), 24, policy, RandomErasing())
    again = aug.finetune_train_transform(img, np.random.default_rng(5), 24, policy, RandomErasing())
    assert full.shape == (24, 24, 3) and full.dtype == np.float32
    np.testing.assert_array_equal(full, again)
    # with both stages off it is RandomResizedCrop(0.08-1) + flip + normalise
    plain = aug.finetune_train_transform(img, np.random.default_rng(5), 24)
    rng = np.random.default_rng(5)
    crop = aug.resize(img, 24, box=aug.random_resized_crop_params(rng, 40, 48, scale=(0.08, 1)))
    expected = aug.normalize(crop[:, ::-1] if rng.random() < 0.5 else crop)
    np.testing.assert_array_equal(plain, expected)
    assert not np.array_equal(full, plain)


def test_finetune_augment_in_the_pipeline_is_reproducible_and_picklable():
    import pickle

    src = data.SyntheticSource(8, 20, seed=0)
    transform = data.FinetuneAugment(16, RandAugment.from_spec(MAE_POLICY), RandomErasing())
    # grain ships record transforms to its worker processes by pickling them
    assert pickle.loads(pickle.dumps(transform)) == transform
    kwargs = dict(batch_size=4, image_size=16, seed=3, num_epochs=1, transform=transform)
    first = [b["image"] for b in data.make_pipeline(src, **kwargs)]
    second = [b["image"] for b in data.make_pipeline(src, **kwargs)]
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)
    other = next(data.make_pipeline(src, **{**kwargs, "seed": 4}))["image"]
    assert not np.array_equal(first[0], other)
    probe = next(data.make_pipeline(src, **{**kwargs, "transform": data.LinearProbeAugment(16)}))
    assert probe["image"].shape == (4, 16, 16, 3) and probe["label"].dtype == np.int32
