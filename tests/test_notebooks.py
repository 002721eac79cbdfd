"""Executes every notebook under notebooks/ and checks that it runs and draws its figures."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

REPO_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("*.ipynb"))

# Least number of PNG figures a notebook must produce; notebooks not listed need none beyond
# one per cell that calls plt.show() at top level.
MIN_PNGS = {"masking_explorer.ipynb": 5}

PREFIX_MARKER = "kernel sys.prefix: "


def _draws(cell) -> bool:
    """True for a code cell with a top-level (unindented) ``plt.show()`` call."""
    return cell.cell_type == "code" and any(
        line.startswith("plt.show(") for line in cell.source.splitlines()
    )


def _pngs(cell) -> int:
    return sum("image/png" in out.get("data", {}) for out in cell.get("outputs", []))


@pytest.mark.slow
@pytest.mark.xdist_group("notebooks")
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The kernel inherits this environment. Its masks are tiny, so XLA's compile time dominates
    # on a CPU; a lower LLVM optimisation level compiles about 4x faster (same masks).
    flags = os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0"
    monkeypatch.setenv("XLA_FLAGS", flags)
    nb = nbformat.read(path, as_version=4)
    # A last cell reports the kernel's interpreter, so the notebook is known to have run in the
    # same environment as the tests (jupyter_client maps the "python3" kernel to sys.executable).
    nb.cells.append(nbformat.v4.new_code_cell(f"import sys\nprint({PREFIX_MARKER!r} + sys.prefix)"))
    client = NotebookClient(
        nb,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(REPO_ROOT)}},
    )
    client.execute()  # raises CellExecutionError on the first cell that fails

    errors = [
        out
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.outputs
        if out.output_type == "error"
    ]
    assert not errors, errors

    last = "".join(out.get("text", "") for out in nb.cells[-1].outputs)
    assert f"{PREFIX_MARKER}{sys.prefix}" in last, last

    silent = [i for i, cell in enumerate(nb.cells) if _draws(cell) and _pngs(cell) == 0]
    assert not silent, f"cells {silent} call plt.show() but produced no image/png output"
    total = sum(_pngs(cell) for cell in nb.cells)
    assert total >= MIN_PNGS.get(path.name, 0), f"{path.name} produced {total} PNG outputs"
