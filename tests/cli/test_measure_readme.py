"""scripts/measure_readme.py, the one source of the README's figures, stays runnable."""

from __future__ import annotations

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "measure_readme.py"


def test_measure_readme_lists_its_parts_and_rejects_unknown_ones():
    listed = subprocess.run([sys.executable, SCRIPT, "--list"], capture_output=True, text=True)
    assert listed.returncode == 0, listed.stderr
    parts = listed.stdout.split()
    assert parts == [
        "tests",
        "demo",
        "demo-eval",
        "masks",
        "train-step",
        "bf16",
        "floor",
        "plan",
        "compare",
    ]
    bad = subprocess.run(
        [sys.executable, SCRIPT, "--parts", "demo,nope"], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "unknown parts ['nope']" in bad.stderr
