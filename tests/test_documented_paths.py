"""Every repository file that the README, docs, docstrings and scripts name exists.

Tests and modules move between folders (``tests/test_kernels.py`` became
``tests/models/test_models_kernels.py``); a reader who follows a stale path finds nothing.
"""

from __future__ import annotations

import pathlib
import re

REPO = pathlib.Path(__file__).resolve().parents[1]

#: Where paths are named, and the form of a named path (a top-level folder, then a file).
SOURCES = ("README.md", "Makefile", "docs", "mim_jax", "scripts", "configs", "notebooks")
PATH = re.compile(r"\b(?:mim_jax|tests|scripts|configs|notebooks)/[A-Za-z0-9_/]*\.(?:py|ipynb)\b")
#: Placeholders in usage lines, not files.
PLACEHOLDERS = {"configs/X.py", "configs/file.py"}


def _texts():
    for name in SOURCES:
        path = REPO / name
        files = [path] if path.is_file() else sorted(path.rglob("*")) if path.is_dir() else []
        for file in files:
            if file.is_file() and file.suffix in ("", ".md", ".py", ".ipynb"):
                yield file, file.read_text(encoding="utf-8", errors="replace")


def test_every_named_repository_file_exists():
    missing = sorted(
        f"{file.relative_to(REPO)} names {named}"
        for file, text in _texts()
        for named in set(PATH.findall(text)) - PLACEHOLDERS
        if not (REPO / named).exists()
    )
    assert not missing, "\n".join(missing)


def test_the_check_finds_a_stale_path():
    text = "see tests/test_kernels.py and mim_jax/models/kernels.py"
    named = set(PATH.findall(text))
    assert named == {"tests/test_kernels.py", "mim_jax/models/kernels.py"}
    assert [n for n in named if not (REPO / n).exists()] == ["tests/test_kernels.py"]
