"""Executes every notebook under notebooks/ (small settings) and checks what it produced.

Each notebook runs in a real Jupyter kernel (``nbclient``, the ``python3`` kernel of this
interpreter) with the repository root as its working folder; its parameters come from
environment variables the kernel inherits. The checks read the figures (``image/png`` outputs),
the printed text and the files a notebook wrote.
"""

from __future__ import annotations

import math
import os
import re
import sys
from pathlib import Path

import nbformat
import pytest
from conftest import one_device_xla_flags
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

REPO_ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK_DIR = REPO_ROOT / "notebooks"
NOTEBOOKS = sorted(p.name for p in NOTEBOOK_DIR.glob("*.ipynb"))
TESTED = {
    "masking_explorer.ipynb",
    "media_masks.ipynb",
    "reconstruction.ipynb",
    "training_quickstart.ipynb",
}

PREFIX_MARKER = "kernel sys.prefix: "
RECON_STRATEGIES = (
    "random", "block", "simmim", "grid", "uniform",
    "white", "red", "blue", "green", "purple", "colorbank",
)  # fmt: skip
QUICKSTART_STEPS = 8
DEMO_STEPS = 4  # the tiny checkpoint the reconstruction notebook reads

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("notebooks")]


def _kernel_xla_flags() -> str:
    # The kernels run on one CPU device, as a user's notebook does (conftest's 8 virtual devices
    # are for sharding tests). Their programs are tiny, so XLA's compile time dominates on a CPU;
    # a lower LLVM optimisation level compiles about 4x faster (same results up to rounding).
    flags = one_device_xla_flags().split()
    if not any(f.startswith("--xla_backend_optimization_level") for f in flags):
        flags.append("--xla_backend_optimization_level=0")
    return " ".join(flags)


def execute(name: str, monkeypatch: pytest.MonkeyPatch, **env: str) -> nbformat.NotebookNode:
    """Runs ``notebooks/<name>`` with ``env`` set and returns the executed notebook.

    Raises CellExecutionError on the first cell that fails.
    """
    monkeypatch.setenv("XLA_FLAGS", _kernel_xla_flags())
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    nb = nbformat.read(NOTEBOOK_DIR / name, as_version=4)
    # A last cell reports the kernel's interpreter, so the notebook is known to have run in the
    # same environment as the tests (jupyter_client maps the "python3" kernel to sys.executable).
    nb.cells.append(nbformat.v4.new_code_cell(f"import sys\nprint({PREFIX_MARKER!r} + sys.prefix)"))
    client = NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(REPO_ROOT)}}
    )
    client.execute()

    errors = [out for cell in _code(nb) for out in cell.outputs if out.output_type == "error"]
    assert not errors, errors
    last = "".join(out.get("text", "") for out in nb.cells[-1].outputs)
    assert f"{PREFIX_MARKER}{sys.prefix}" in last, last
    silent = [i for i, cell in enumerate(nb.cells) if _draws(cell) and _pngs(cell) == 0]
    assert not silent, f"cells {silent} call plt.show() but produced no image/png output"
    return nb


def _code(nb):
    return [cell for cell in nb.cells if cell.cell_type == "code"]


def _draws(cell) -> bool:
    """True for a code cell with a top-level (unindented) ``plt.show()`` call."""
    return cell.cell_type == "code" and any(
        line.startswith("plt.show(") for line in cell.source.splitlines()
    )


def _pngs(cell) -> int:
    return sum("image/png" in out.get("data", {}) for out in cell.get("outputs", []))


def _figures(nb) -> int:
    return sum(_pngs(cell) for cell in nb.cells)


def _text(nb) -> str:
    """Everything the notebook printed (stdout and stderr streams)."""
    return "".join(
        out.get("text", "")
        for cell in _code(nb)
        for out in cell.outputs
        if out.output_type == "stream"
    )


def test_notebooks_are_stored_without_outputs_and_all_tested() -> None:
    assert set(NOTEBOOKS) == TESTED, f"untested or missing notebooks: {set(NOTEBOOKS) ^ TESTED}"
    for name in NOTEBOOKS:
        nb = nbformat.read(NOTEBOOK_DIR / name, as_version=4)
        nbformat.validate(nb)
        dirty = [i for i, c in enumerate(_code(nb)) if c.outputs or c.execution_count is not None]
        assert not dirty, f"{name}: code cells {dirty} are stored with outputs; clear them"


def test_masking_explorer(monkeypatch: pytest.MonkeyPatch) -> None:
    nb = execute("masking_explorer.ipynb", monkeypatch)
    assert _figures(nb) == 9
    text = _text(nb)
    # Every image strategy at ratio 0.75 keeps K = 49 of 196 patches (block runs at 0.4).
    for label in ("random", "simmim", "grid", "uniform", "green", "purple", "colorbank"):
        assert re.search(rf"{label}:\s+49 of 196 patches visible", text), label
    # Video: K = 160 of 1568; tube keeps exactly 20 per frame, color3d only 160 per clip.
    assert "K = 160 of 1568 patches visible per clip" in text
    tube = re.search(r"^tube .*all clips: min\s+(\d+), max\s+(\d+)", text, re.M)
    color3d = re.search(r"^color3d .*all clips: min\s+(\d+), max\s+(\d+)", text, re.M)
    assert tube and tube.groups() == ("20", "20"), text
    assert color3d and int(color3d.group(1)) < 20 < int(color3d.group(2)), text
    # Spectrograms: the default color_tf clusters are longer in time than in frequency.
    extent = re.search(r"color_tf \(default sigmas\).*extent ([\d.]+) \(time\) x ([\d.]+)", text)
    assert extent and float(extent.group(1)) > float(extent.group(2)), text


def test_media_masks(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("av")
    pytest.importorskip("soundfile")
    nb = execute("media_masks.ipynb", monkeypatch)
    assert _figures(nb) == 2
    text = _text(nb)
    assert "decoded clip (16, 64, 64, 3) float32" in text, text
    assert "fbank (256, 128) float32" in text, text
    # tube keeps the same 16 patches in each of the 8 tubelet slices; color3d only 128 per clip.
    assert (
        "tube: 128 of 512 patches visible; per tubelet slice [16, 16, 16, 16, 16, 16, 16, 16]"
        in text
    )
    color3d = re.search(
        r"color3d: 128 of 512 patches visible; per tubelet slice \[([\d, ]+)\]", text
    )
    assert color3d and len(set(color3d.group(1).split(", "))) > 1, text
    assert "color_tf: 26 of 128 patches visible" in text, text


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny, fast run of configs/demo.py (real training, real Orbax checkpoint)."""
    from mim_jax import configs
    from mim_jax.train.pretrain import run

    config = configs.load(
        f"configs/demo.py:steps={DEMO_STEPS}",
        [
            "model.encoder_overrides.depth=1",
            "model.decoder_depth=1",
            "batch_size=16",
            "log_every=1",
            f"checkpoint_every={DEMO_STEPS}",
            "recon_every=0",
        ],
    )
    workdir = tmp_path_factory.mktemp("demo_run")
    result = run(config, str(workdir))
    assert result.stopped == "finished" and result.step == DEMO_STEPS
    return workdir


def test_reconstruction(demo_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nb = execute(
        "reconstruction.ipynb",
        monkeypatch,
        MIM_CHECKPOINT=str(demo_run),
        MIM_NUM_SHOWN="2",
        MIM_NUM_SCORED="8",
    )
    assert _figures(nb) == 2
    text = _text(nb)
    assert f"checkpoint: step {DEMO_STEPS} of {DEMO_STEPS}" in text, text
    assert "skipped" not in text, text
    errors = dict(re.findall(r"^\s*(\w+): masked-patch MSE ([\d.]+)", text, re.M))
    assert set(errors) == set(RECON_STRATEGIES), text
    assert all(math.isfinite(float(v)) and float(v) > 0 for v in errors.values()), errors
    assert re.search(r"green: .*<- trained with", text), text


def test_reconstruction_without_checkpoint_says_run_make_demo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(CellExecutionError, match="run `make demo` first"):
        execute("reconstruction.ipynb", monkeypatch, MIM_CHECKPOINT=str(tmp_path / "missing"))


def test_training_quickstart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mim_jax.core.metrics import read_metrics

    workdir = tmp_path / "quickstart"
    half = QUICKSTART_STEPS // 2
    nb = execute(
        "training_quickstart.ipynb",
        monkeypatch,
        MIM_QUICKSTART_STEPS=str(QUICKSTART_STEPS),
        MIM_QUICKSTART_WORKDIR=str(workdir),
    )
    assert _figures(nb) == 2
    text = _text(nb)
    # The first call stopped halfway with a checkpoint; the rerun resumed there and finished.
    assert f"paused after {half} steps at step {half}" in text, text
    assert re.search(rf"resumed from \S+ at step {half}\b", text), text
    assert f"done: step {QUICKSTART_STEPS}" in text, text
    records = read_metrics(str(workdir))
    steps = [r["step"] for r in records]
    assert steps == list(range(1, QUICKSTART_STEPS + 1)), steps  # no gap, no repeat at resume
    losses = [r["loss"] for r in records]
    assert losses[-1] < losses[0], losses  # it learned
    # The plotted curve is the file's: the notebook printed its end points.
    assert f"loss {losses[0]:.3f} at step 1 -> {losses[-1]:.3f} at step {steps[-1]}" in text
    assert str(QUICKSTART_STEPS) in os.listdir(workdir / "checkpoints")
    pictures = sorted(os.listdir(workdir / "reconstructions"))
    assert pictures == [f"step_{half:06d}.png", f"step_{QUICKSTART_STEPS:06d}.png"], pictures
