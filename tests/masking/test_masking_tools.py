"""masking.stats on fields with known answers, masking.viz pictures, and the masks benchmark CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import jax
import matplotlib.image
import numpy as np
import pytest

from mim_jax import masking
from mim_jax.masking import stats, viz


def test_radial_spectrum_peaks_at_a_cosines_frequency():
    rows, cols = np.meshgrid(np.arange(16), np.arange(16), indexing="ij")
    field = np.cos(2 * np.pi * 0.25 * cols + 0.3)[None] + 0 * rows
    freqs, power = stats.radial_power_spectrum(np.repeat(field, 3, axis=0))
    assert freqs[np.argmax(power)] == pytest.approx(0.25)
    assert power.sum() == pytest.approx(power.max())  # all power in one ring


def test_cluster_sizes_of_a_hand_made_mask():
    visible = np.zeros((1, 5, 5), bool)
    visible[0, 0, :3] = True  # a run of 3
    visible[0, 2:4, 2:4] = True  # a 2x2 square
    visible[0, 4, 0] = True  # a single patch
    visible[0, 1, 3] = True  # touches the square by an edge (2,3): joins it -> 5
    assert sorted(stats.cluster_sizes(visible).tolist()) == [1, 3, 5]
    assert stats.mean_cluster_size(visible) == pytest.approx((1 + 9 + 25) / 9)
    corner = np.zeros((1, 3, 3), bool)
    corner[0, 0, 0] = corner[0, 1, 1] = True
    assert stats.cluster_sizes(corner, connectivity=4).tolist() == [1, 1]
    assert stats.cluster_sizes(corner, connectivity=8).tolist() == [2]


def test_position_frequency_and_shape_errors():
    mask = np.array([[True, False, True], [True, False, False]])
    np.testing.assert_allclose(stats.position_frequency(mask), [1.0, 0.0, 0.5])
    with pytest.raises(ValueError, match=r"expects \[B, N\]"):
        stats.position_frequency(mask[0])
    with pytest.raises(ValueError, match=r"expects \[B, H, W\]"):
        stats.cluster_sizes(mask)


def test_apply_mask_greys_exactly_the_masked_patches():
    image = np.ones((8, 12, 3), np.float32)
    mask = np.array([True, False, False, False, False, True])  # grid 2x3, patch 4
    out = viz.apply_mask(image, mask, patch_size=4, fill=0.5)
    assert (out[:4, :4] == 0.5).all() and (out[4:, 8:] == 0.5).all()
    assert (out[:4, 4:] == 1).all() and (out[4:, :8] == 1).all()
    with pytest.raises(ValueError, match="does not match a mask of 5 patches"):
        viz.apply_mask(image, mask[:5], patch_size=4)


def test_pictures_are_written(tmp_path):
    masks = masking.get("green")(jax.random.key(0), batch_size=5, grid=(14, 14), mask_ratio=0.75)
    grid_png = viz.render_masks(masks, (14, 14), tmp_path / "batch.png", ncols=3, title="green")
    picture = matplotlib.image.imread(grid_png)
    assert picture.ndim == 3 and picture.shape[0] > 100
    image = np.random.default_rng(0).random((112, 112, 3)).astype(np.float32)
    over = viz.render_masked_image(image, masks, 8, tmp_path / "over.png")
    assert matplotlib.image.imread(over).shape[1] > matplotlib.image.imread(over).shape[0]
    gallery = viz.render_gallery(tmp_path / "gallery.png", samples=3)
    assert matplotlib.image.imread(gallery).shape[0] > 400  # one row per strategy
    with pytest.raises(ValueError, match="draws 2-D grids"):
        viz.render_masks(np.zeros((2, 8), bool), (2, 2, 2), tmp_path / "x.png")


def test_gallery_draws_every_strategy_at_the_stated_ratio_with_a_legend():
    fig = viz.gallery_figure(grid=(14, 14), mask_ratio=0.75, samples=2)
    assert "mask ratio 0.75" in fig._suptitle.get_text()
    assert "147 of 196" in fig._suptitle.get_text()
    labels = [t.get_text() for legend in fig.legends for t in legend.get_texts()]
    assert any(label.startswith("visible") for label in labels)
    assert any(label.startswith("masked") for label in labels)
    drawn = [ax.images[0].get_array() for ax in fig.axes if ax.images]
    assert len(drawn) == 2 * len(viz.GALLERY)
    for image in drawn:  # block too: no strategy is drawn at a ratio of its own
        assert int((np.asarray(image) == viz.MASKED_SHADE).sum()) == 147


def run_bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mim_jax.bench", *args], capture_output=True, text=True, timeout=300
    )


def test_bench_masks_prints_one_json_line_with_a_baseline():
    done = run_bench(
        "masks", "--mask", "green", "--grid", "14,14", "--batch-size", "64", "--repeats", "2"
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1
    result = json.loads(lines[0])
    for field in ("what", "masks_per_s", "batch_size", "grid", "compile_s", "speed_vs_baseline"):
        assert field in result
    assert result["what"] == "masks" and result["grid"] == [14, 14] and result["batch_size"] == 64
    assert result["masks_per_s"] > 0 and result["baseline"] == "random"
    rounds = [line for line in done.stderr.splitlines() if line.startswith("timing round")]
    assert rounds[-1].startswith("timing round 2/2 | target, baseline |") and "ETA" in rounds[-1]


def test_bench_reports_bad_input_clearly():
    done = run_bench("masks", "--mask", "grid", "--grid", "15,14", "--batch-size", "8")
    assert done.returncode == 2
    assert "multiples of 2" in done.stderr and "Traceback" not in done.stderr


def test_bench_help_keeps_its_examples_one_per_line():
    done = run_bench("--help")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    starts = [line.strip() for line in lines if line.strip().startswith("python -m mim_jax.bench")]
    assert len(starts) == 3  # masks, train-step and floor examples each begin a line
