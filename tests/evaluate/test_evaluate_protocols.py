"""Issue #15's table, row by row: the MAE job configs build MAE's evaluation protocols.

Each row is checked on what the job actually runs (the record transform ``jobs.train_transform``
builds, the crop ``jobs.job_crop_fraction`` resolves, the classifier's parameters), not only on
the config's values; the transforms' own behaviour (crop sizes, op statistics, erasing areas) is
tested in ``tests/data/test_data_eval_protocols.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
from flax import nnx

from mim_jax import configs, data
from mim_jax.evaluate import cli, jobs
from mim_jax.evaluate.classifier import classifier_from_pretrained
from mim_jax.evaluate.data import eval_sources, iterate_batches

RECIPES = {
    "linear": {"mae": "linprobe_mae", "digits": "linprobe_digits"},
    "finetune": {"mae": "finetune_mae", "digits": "finetune_digits"},
}


def _job(job: str, recipe: str, *overrides: str) -> configs.ConfigDict:
    return configs.load(RECIPES[job][recipe], list(overrides))


# Row 1: evaluation transform (kNN, probe, fine-tune): shorter side 256 (bicubic), centre 224.


@pytest.mark.parametrize("job", ["linear", "finetune"])
def test_mae_eval_transform_is_resize_256_centre_crop_224(job):
    config = _job(job, "mae")
    assert config.crop_fraction is None  # MAE's rule, by input size
    crop = jobs.job_crop_fraction(config, 224)
    assert crop == 0.875 and int(224 / crop) == 256
    assert jobs.job_crop_fraction(config, 384) == 1.0  # util/datasets.py: 1.0 above 224
    # validation images of the job (and its training images with augment off) get that crop
    no_aug = jobs.train_transform(_job(job, "mae", "augment=False"), 224)
    assert isinstance(no_aug, data.EvalTransform) and no_aug.crop_fraction == 0.875


def test_eval_crop_is_applied_to_validation_batches():
    """A 256 x 320 picture with a 16-pixel frame: MAE's crop (resize 256, centre 224) removes
    the frame, the whole-image transform (1.0) keeps it."""
    image = np.full((256, 320, 3), 200, np.uint8)
    image[:16], image[-16:], image[:, :16], image[:, -16:] = 0, 0, 0, 0

    class Source:
        def __len__(self):
            return 1

        def __getitem__(self, i):
            return {"image": image, "label": 0}

    ((mae, _),) = iterate_batches(Source(), 1, 224, crop_fraction=0.875)
    ((whole, _),) = iterate_batches(Source(), 1, 224, crop_fraction=1.0)
    black = (0 - np.asarray(data.IMAGENET_MEAN)) / np.asarray(data.IMAGENET_STD)
    assert mae.shape == whole.shape == (1, 224, 224, 3)
    assert not np.isclose(mae[0, :, :, 0], black[0], atol=0.1).any()  # frame cropped away
    assert np.isclose(whole[0, 0, :, 0], black[0], atol=0.1).all()  # frame kept


def test_knn_and_periodic_kNN_default_to_maes_crop_except_for_digits():
    config = configs.load("configs/demo.py")
    assert eval_sources(config).crop_fraction == 1.0  # digits keep the whole glyph
    config.data.source = "synthetic"
    config.data.num_examples = 64
    assert eval_sources(config).crop_fraction == 0.875  # MAE's rule (32 <= 224)
    assert eval_sources(config, crop_fraction=0.5).crop_fraction == 0.5
    with pytest.raises(ValueError, match=r"crop fraction must be in \(0, 1\]"):
        eval_sources(config, crop_fraction=1.5)


# Row 2: the linear probe trains on RandomResizedCrop(224, scale 0.08-1) + flip, every batch
# through the frozen encoder.


def test_mae_probe_trains_on_maes_random_resized_crop_and_flip():
    config = _job("linear", "mae")
    assert config.augment and (config.batch_size, config.blr, config.epochs) == (16384, 0.1, 90)
    assert (config.weight_decay, config.warmup_epochs) == (0.0, 10.0)
    transform = jobs.train_transform(config, 224)
    assert isinstance(transform, data.LinearProbeAugment) and transform.image_size == 224
    image = np.random.default_rng(0).integers(0, 256, (300, 400, 3), np.uint8)
    record = {"image": image, "label": 3}
    outs = [transform.random_map(record, np.random.default_rng(s))["image"] for s in range(4)]
    assert all(o.shape == (224, 224, 3) and o.dtype == np.float32 for o in outs)
    assert len({o.tobytes() for o in outs}) == 4  # a fresh crop per draw


# Row 3: fine-tuning: RandAugment rand-m9-mstd0.5-inc1, RandomErasing p 0.25 (pixel), mixup 0.8,
# cutmix 1.0, label smoothing 0.1.


def test_mae_finetune_augmentation_and_regularisation():
    config = _job("finetune", "mae")
    assert config.augment and config.aa == data.MAE_POLICY == "rand-m9-mstd0.5-inc1"
    assert (config.reprob, config.remode, config.recount) == (0.25, "pixel", 1)
    assert (config.mixup, config.cutmix, config.mixup_prob, config.switch_prob) == (
        0.8,
        1.0,
        1.0,
        0.5,
    )
    assert (config.smoothing, config.drop_path, config.weight_decay) == (0.1, 0.1, 0.05)
    transform = jobs.train_transform(config, 224)
    assert isinstance(transform, data.FinetuneAugment) and transform.image_size == 224
    ra, erasing = transform.rand_augment, transform.erasing
    assert (ra.num_ops, ra.magnitude, ra.magnitude_std, ra.prob) == (2, 9.0, 0.5, 0.5)
    assert len(ra.ops) == 15 and "PosterizeIncreasing" in ra.ops and ra.interpolation == "bicubic"
    assert (erasing.probability, erasing.mode, erasing.counts) == (0.25, "pixel", (1, 1))
    assert (erasing.min_area, erasing.max_area, erasing.min_aspect) == (0.02, 1 / 3, 0.3)


def test_finetune_settings_switch_stages_off_and_bad_ones_fail_clearly():
    off = jobs.train_transform(_job("finetune", "mae", "aa=none", "reprob=0.0"), 224)
    assert isinstance(off, data.FinetuneAugment) and off.rand_augment is off.erasing is None
    with pytest.raises(ValueError, match="rand-"):
        jobs.train_transform(_job("finetune", "mae", "aa=augmix-m5"), 224)
    with pytest.raises(ValueError, match="mode"):
        jobs.train_transform(_job("finetune", "mae", "remode=blur"), 224)
    with pytest.raises(ValueError, match="crop fraction"):
        jobs.train_transform(_job("finetune", "mae", "crop_fraction=0.0"), 224)


# Row 4: the position embedding trains while fine-tuning.


def test_mae_finetune_trains_the_position_table_of_a_pretrained_copy():
    from mim_jax.core.workdir import random_init
    from mim_jax.models import layers

    config = _job("finetune", "mae")
    assert config.train_pos_embed
    pretrained = random_init(configs.load("configs/demo.py"), 0)
    model = classifier_from_pretrained(
        pretrained, 10, train_pos_embed=bool(config.train_pos_embed), seed=0
    )
    _, params, _ = nnx.split(model, nnx.Param, ...)
    trained = nnx.to_pure_dict(params)["encoder"]["pos_embed"]
    np.testing.assert_array_equal(trained, pretrained.encoder.pos_embed[...])  # starts there
    assert isinstance(pretrained.encoder.pos_embed, layers.FixedEmbed)  # the source is untouched
    frozen = classifier_from_pretrained(pretrained, 10, train_pos_embed=False)
    assert "pos_embed" not in nnx.to_pure_dict(nnx.split(frozen, nnx.Param, ...)[1])["encoder"]


# The digits recipes keep what suits 8 x 8 digits (README).


@pytest.mark.parametrize("job", ["linear", "finetune"])
def test_digits_recipes_keep_the_whole_image_without_augmentation(job):
    config = _job(job, "digits")
    assert config.crop_fraction == 1.0 and not config.augment
    transform = jobs.train_transform(config, 32)
    assert isinstance(transform, data.EvalTransform) and transform.crop_fraction == 1.0
    if job == "finetune":
        assert config.train_pos_embed and config.reprob == 0.0 and config.mixup == 0.0


# The command line maps its flags onto these fields.


def test_cli_flags_set_the_transform_fields():
    parser = cli.build_parser()
    run = configs.load("configs/demo.py")
    args = parser.parse_args(
        ["finetune", "--config", "x", "--recipe", "mae", "--crop-fraction", "0.9", "--aa", "none",
         "--reprob", "0.5", "--remode", "rand", "--recount", "3", "--data-workers", "2",
         "--no-augment"]
    )  # fmt: skip
    args.recipe_overrides = []
    job = cli.job_config(args, run)
    assert (job.crop_fraction, job.aa, job.reprob, job.remode, job.recount) == (
        0.9,
        "none",
        0.5,
        "rand",
        3,
    )
    assert job.data_workers == 2 and not job.augment
    args = parser.parse_args(["linear", "--config", "x", "--augment", "--data-workers", "1"])
    args.recipe_overrides = ["crop_fraction=0.75"]
    job = cli.job_config(args, run)
    assert job.recipe == "digits" and job.augment and job.crop_fraction == 0.75
    assert job.data_workers == 1


def test_cli_rejects_a_bad_policy_before_any_work(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(
            ["finetune", "--config", "configs/demo.py", "--out", str(tmp_path), "--augment",
             "--aa", "rand-x9"]
        )  # fmt: skip
    assert exit_info.value.code == 2
    assert "RandAugment policy 'rand-x9': unknown section 'x9'" in capsys.readouterr().err
    assert not (tmp_path / "finetune").exists()  # failed before the job started
