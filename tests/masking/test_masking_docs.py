"""``help(masking.get)`` is the masks' user guide: it must cover every name and option and run."""

from __future__ import annotations

import doctest
import pydoc
import re

import pytest

import mim_jax.masking
import mim_jax.masking.registry
from mim_jax import masking


@pytest.fixture(scope="module")
def get_help() -> str:
    # What help(masking.get) prints, without the pager.
    return pydoc.render_doc(masking.get, renderer=pydoc.plaintext)


def _mentions(text: str, word: str) -> bool:
    return re.search(rf"(?<![\w.]){re.escape(word)}(?!\w)", text) is not None


def test_help_names_every_registered_mask(get_help: str) -> None:
    names = masking.names()
    assert set(masking.STRATEGIES) <= set(names) and set(masking.COLORS) <= set(names)
    missing = [name for name in names if not _mentions(get_help, name)]
    assert not missing, f"help(masking.get) does not mention {missing}"


def test_help_names_every_option(get_help: str) -> None:
    missing = {
        name: [opt for opt in cls.option_names() if not _mentions(get_help, opt)]
        for name, cls in masking.STRATEGIES.items()
    }
    missing = {name: opts for name, opts in missing.items() if opts}
    assert not missing, f"help(masking.get) does not mention these options: {missing}"


def test_help_covers_call_output_rounding_and_errors(get_help: str) -> None:
    for word in ("batch_size", "grid", "mask_ratio", "keep", "masked", "restore", "mask"):
        assert _mentions(get_help, word), word
    for field in ("int32[B, K]", "int32[B, N - K]", "int32[B, N]", "bool[B, N]", "bool[B, K]"):
        assert field in get_help, field
    assert "floor(N * mask_ratio + 1/2)" in get_help
    assert "ValueError" in get_help and "Example" in get_help
    # The stated rule is the one the code applies.
    assert masking.num_visible(196, 0.75) == 49 and masking.num_visible(1568, 0.9) == 157


@pytest.mark.parametrize("module", [mim_jax.masking.registry, mim_jax.masking])
def test_docstring_examples_run(module) -> None:
    # The examples' printed shapes, dtypes and error message are checked against the real call.
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.attempted >= 3, f"{module.__name__} lost its examples"
    assert result.failed == 0, f"{result.failed} docstring example(s) of {module.__name__} failed"
