"""Old module paths, so that ``import`` of one names where it went instead of just failing.

The run core moved out of ``train``/``evaluate`` and the benchmarks became a package; importing
an old path raises ``ModuleNotFoundError`` whose message names the new one.
"""

from __future__ import annotations

import importlib.abc
import sys

#: old module -> where its contents live now.
MOVED = {
    "mim_jax.train.loop": "mim_jax.train.pretrain (pretraining) and mim_jax.core.loop (the loop)",
    "mim_jax.train.checkpoint": "mim_jax.core.checkpoint",
    "mim_jax.train.optimizer": "mim_jax.core.optimizer",
    "mim_jax.train.sharding": "mim_jax.core.sharding",
    "mim_jax.train.metrics": "mim_jax.core.metrics",
    "mim_jax.train.reconstruction": "mim_jax.core.reconstruction",
    "mim_jax.evaluate.pretrained": "mim_jax.core.workdir",
    "mim_jax.export.finetuned": "mim_jax.evaluate.classifier (and mim_jax.export.load_finetuned)",
    "mim_jax.distributed": "mim_jax.core.distributed",
    "mim_jax.bench_plan": "mim_jax.bench.plan",
    "mim_jax.bench_floor": "mim_jax.bench.floor",
    "mim_jax.bench_torch": "mim_jax.bench.torch_ref",
}


class MovedModuleFinder(importlib.abc.MetaPathFinder):
    """Raises a clear ``ModuleNotFoundError`` for the paths in :data:`MOVED`."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname in MOVED:
            raise ModuleNotFoundError(
                f"{fullname} moved: use {MOVED[fullname]} (see the README's development section).",
                name=fullname,
            )
        return None


def install() -> None:
    """Adds the finder once (called when ``mim_jax`` is imported)."""
    if not any(isinstance(f, MovedModuleFinder) for f in sys.meta_path):
        sys.meta_path.append(MovedModuleFinder())
