"""Shipped configs load, override and validate; validation fails early with useful messages.

Only ConfigDicts and static model configs are built here (no parameters, nothing compiled).
"""

import pathlib

import pytest

from mim_jax import configs, masking, models
from mim_jax.core.optimizer import optimizer_config, peak_learning_rate, steps_per_epoch
from mim_jax.models.mae import mae_config

CONFIG_DIR = pathlib.Path(__file__).resolve().parents[2] / "configs"
ALL_FILES = sorted(p.stem for p in CONFIG_DIR.glob("*.py") if not p.stem.startswith("_"))
# Fine-tuning / linear-probe job configs (run by `python -m mim_jax.evaluate`); the rest pretrain.
JOBS = [name for name in ALL_FILES if name.startswith(("finetune_", "linprobe_"))]
SHIPPED = [name for name in ALL_FILES if name not in JOBS]

# (spec, devices): every shipped config, with and without args.
CASES = [
    ("configs/demo.py", 8),
    ("configs/demo.py:mask=random,steps=50,patch=8", 8),
    ("demo:blue", 4),  # a single bare value fills the first arg (mask)
    ("configs/mae_in1k.py", 8),
    ("configs/mae_in1k.py:model=vit_large,epochs=1600", 8),
    ("configs/mae_in1k.py:model=vit_huge,mask=green", 8),
    ("configs/crossmae_in1k.py", 8),
    ("configs/crossmae_in1k.py:model=vit_huge,mask=purple", 8),
    ("configs/videomae_tube.py", 8),
    ("configs/videomae_tube.py:epochs=1600", 4),
    ("configs/video_color3d.py", 8),
    ("configs/video_color3d.py:color=red,ratio=0.75", 8),
    ("configs/audio_color_tf.py", 8),
    ("configs/audio_color_tf.py:mask=random", 8),
    ("configs/video_demo.py:path=clips", 8),
    ("configs/video_demo.py:path=clips,mask=color3d,ratio=0.8", 8),
    ("configs/audio_demo.py:path=sounds", 8),
    ("configs/audio_demo.py:path=sounds,mask=random", 8),
]


def test_every_shipped_config_is_covered():
    assert set(SHIPPED) == {
        "demo",
        "mae_in1k",
        "crossmae_in1k",
        "videomae_tube",
        "video_color3d",
        "audio_color_tf",
        "video_demo",
        "audio_demo",
    }
    covered = {spec.split("/")[-1].split(".py")[0].split(":")[0] for spec, _ in CASES}
    assert covered == set(SHIPPED)


@pytest.mark.parametrize("spec,devices", CASES)
def test_shipped_config_loads_and_validates(spec, devices):
    config = configs.load(spec)
    assert config.is_locked
    configs.validate(config, num_devices=devices)
    assert config.batch_size % devices == 0
    model = mae_config(**models.mae_kwargs(config))  # static dataclasses only
    assert model.tokens.grid == configs.mask_grid(config)
    opt = optimizer_config(config, steps_per_epoch(config))
    assert 0 < opt.warmup_steps < opt.total_steps
    assert opt.learning_rate > 0
    spec_ = masking.mask_spec_from_config(config)
    assert spec_.ratio == config.mask_ratio
    spec_.generator()  # builds (does not draw)


def test_job_configs_load_and_name_their_command():
    assert set(JOBS) == {"finetune_mae", "finetune_digits", "linprobe_mae", "linprobe_digits"}
    for name in JOBS:
        config = configs.load(name)
        job = "finetune" if name.startswith("finetune_") else "linear"
        assert config.is_locked and config.job == job and config.recipe == name.split("_")[1]
        assert set(configs.eval_job_config(job).keys()) == set(config.keys()), name
        text = (CONFIG_DIR / f"{name}.py").read_text()
        assert f"python -m mim_jax.evaluate {job} --checkpoint" in text, name


def test_docstrings_give_a_command():
    for name in SHIPPED:
        text = (CONFIG_DIR / f"{name}.py").read_text()
        assert "python -m mim_jax.train --config configs/" + name in text, name
        assert "EXPECTED RESULT" in text, name


def test_overrides_parse_with_the_field_type():
    config = configs.load(
        "configs/demo.py",
        [
            "--config.batch_size=32",
            "config.mask_ratio=0.5",
            "model.norm_pix_loss=true",
            "model.dtype=bfloat16",
            "total_steps=None",
            "lr=3e-4",
            "seed=7",
            "model.encoder_overrides.depth=2",
            "mask_options.sigma=1.5",  # added: an option the configured mask (green) takes
        ],
    )
    assert config.batch_size == 32 and isinstance(config.batch_size, int)
    assert config.mask_ratio == 0.5 and isinstance(config.mask_ratio, float)
    assert config.model.norm_pix_loss is True
    assert config.model.dtype == "bfloat16"
    assert config.total_steps is None
    assert config.lr == pytest.approx(3e-4)
    assert config.seed == 7
    assert models.mae_kwargs(config)["encoder_overrides"]["depth"] == 2
    assert dict(masking.mask_spec_from_config(config).options) == {"sigma": 1.5}


def test_override_tuple_and_fraction():
    config = configs.load(
        "configs/audio_color_tf.py", ["model.image_size=(512,128)", "mask_ratio=3/4"]
    )
    assert config.model.image_size == (512, 128)
    assert config.mask_ratio == 0.75
    assert configs.mask_grid(config) == (32, 8)


@pytest.mark.parametrize(
    "override,suggestion",
    [
        ("--config.batch_sise=8", "config.batch_size"),
        ("config.model.patch_sise=8", "model.patch_size"),
        ("mask_ratoi=0.5", "mask_ratio"),
    ],
)
def test_unknown_override_field_is_rejected_with_a_suggestion(override, suggestion):
    with pytest.raises(ValueError, match=suggestion):
        configs.load("configs/demo.py", [override])


def test_overrides_cannot_add_fields_or_mistype():
    with pytest.raises(ValueError, match="unknown config field"):
        configs.load("configs/demo.py", ["config.new_field=1"])
    with pytest.raises(ValueError, match="unknown config field"):
        configs.load("configs/demo.py", ["mask_options.not_an_option=1"])
    with pytest.raises(ValueError, match="as int"):
        configs.load("configs/demo.py", ["batch_size=big"])
    with pytest.raises(ValueError, match="true/false"):
        configs.load("configs/demo.py", ["model.norm_pix_loss=maybe"])
    with pytest.raises(ValueError, match="cannot be None"):
        configs.load("configs/demo.py", ["batch_size=None"])
    with pytest.raises(ValueError, match="group"):
        configs.load("configs/demo.py", ["model=vit_base"])
    config = configs.load("configs/demo.py")
    with pytest.raises(AttributeError):
        config.batch_sise = 3  # locked: typos in code cannot create fields


def test_bad_config_arg_and_file():
    with pytest.raises(ValueError, match="mask"):
        configs.load("configs/demo.py:mask=green,msk=red")
    with pytest.raises(ValueError, match="not found"):
        configs.load("configs/no_such_config.py")
    with pytest.raises(ValueError, match="vit_base"):
        configs.load("configs/mae_in1k.py:model=vit_gigantic")


def _invalid(spec, overrides=(), devices=8):
    config = configs.load(spec, overrides)
    with pytest.raises(ValueError) as info:
        configs.validate(config, num_devices=devices)
    return str(info.value)


def test_validate_rejects_unknown_mask_and_lists_valid():
    msg = _invalid("configs/demo.py", ["mask=grean"])
    assert "config.mask='grean'" in msg and "green" in msg and "random" in msg


def test_validate_accepts_colour_shorthand():
    for colour in ("white", "red", "blue", "green", "purple"):
        configs.validate(configs.load("configs/demo.py", [f"mask={colour}"]), num_devices=1)


def test_validate_rejects_tube_ratio_that_does_not_divide():
    msg = _invalid("configs/videomae_tube.py", ["mask_ratio=0.9"])
    assert "config.mask='tube'" in msg and "config.mask_ratio=0.9" in msg
    assert "1408/1568" in msg  # says what to change to


def test_validate_rejects_mask_on_wrong_grid_rank():
    msg = _invalid("configs/demo.py", ["mask=tube"])
    assert "(8, 8)" in msg and "config.model" in msg


def test_validate_rejects_bad_mask_option():
    msg = _invalid("configs/demo.py", ["mask_options.sigma1=-1"])
    assert "config.mask_options" in msg


def test_validate_rejects_batch_not_divisible_by_devices():
    msg = _invalid("configs/demo.py", ["batch_size=60"], devices=8)
    assert "config.batch_size=60" in msg and "8 devices" in msg
    msg = _invalid("configs/demo.py", ["batch_size=64", "accum_steps=3"], devices=1)
    assert "config.accum_steps=3" in msg
    msg = _invalid("configs/demo.py", ["batch_size=64", "accum_steps=4"], devices=32)
    assert "micro-batch 16" in msg


def test_validate_rejects_image_not_divisible_by_patch():
    msg = _invalid("configs/demo.py", ["model.patch_size=5"])
    assert "config.model.image_size=32" in msg and "config.model.patch_size=5" in msg
    msg = _invalid("configs/videomae_tube.py", ["model.num_frames=15"])
    assert "config.model.tubelet_size" in msg


def test_validate_rejects_lr_and_blr_both_set_and_bad_mesh():
    msg = _invalid("configs/mae_in1k.py", ["lr=1e-3"])
    assert "config.lr" in msg and "config.blr" in msg
    msg = _invalid("configs/demo.py", ["mesh.data=3"], devices=8)
    assert "config.mesh" in msg


def test_validate_reports_every_problem_at_once():
    msg = _invalid("configs/demo.py", ["mask=grean", "batch_size=63"], devices=2)
    assert "config.mask" in msg and "config.batch_size" in msg


def test_colormae_arg_sets_the_paper_recipe():
    config = configs.load("configs/mae_in1k.py:model=vit_base,mask=green,epochs=800")
    assert config.mask == "green" and config.mask_ratio == 0.75
    assert config.lr == pytest.approx(2.4e-3) and config.blr is None
    assert (config.b1, config.b2, config.weight_decay) == (0.9, 0.95, 0.05)
    assert config.batch_size == 4096 and config.warmup_epochs == 40 and config.epochs == 800
    assert (config.model.decoder_depth, config.model.decoder_width) == (8, 512)
    assert config.model.norm_pix_loss and config.decay_tokens is False
    opt = optimizer_config(config, steps_per_epoch=313)
    assert opt.learning_rate == pytest.approx(2.4e-3)
    assert (opt.warmup_steps, opt.total_steps) == (40 * 313, 800 * 313)
    assert masking.mask_spec_from_config(config).name == "green"


def test_mae_recipe_uses_blr_and_vit_huge_patch_14():
    config = configs.load("configs/mae_in1k.py:model=vit_huge")
    assert config.blr == pytest.approx(1.5e-4) and config.lr is None and config.decay_tokens
    assert peak_learning_rate(config) == pytest.approx(1.5e-4 * 4096 / 256)
    assert config.model.patch_size == 14 and configs.mask_grid(config) == (16, 16)
    half = configs.load("configs/mae_in1k.py", ["batch_size=2048"])
    assert peak_learning_rate(half) == pytest.approx(1.2e-3)


def test_crossmae_lr_scales_with_pred_fraction():
    config = configs.load("configs/crossmae_in1k.py")
    assert config.model.decoder == "crossmae" and config.model.weight_fm
    assert peak_learning_rate(config) == pytest.approx(2.4e-3 / 3)
    full = configs.load("configs/crossmae_in1k.py", ["model.pred_fraction=1.0"])
    assert peak_learning_rate(full) == pytest.approx(2.4e-3)


def test_total_steps_overrides_epochs():
    config = configs.load("configs/demo.py", ["total_steps=120"])
    opt = optimizer_config(config, steps_per_epoch=28)
    assert opt.total_steps == 120 and opt.warmup_steps == 28
