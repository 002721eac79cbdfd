"""Train state, optimizer, sharding, checkpoints, metrics and the loop.

``mim_jax.train.run(config, workdir)`` trains a config from Python (notebooks);
``python -m mim_jax.train --config ... --workdir ...`` does the same from the shell.
"""

from typing import Any


def run(config: Any, workdir: str):
    """Trains ``config`` in ``workdir`` (see :func:`mim_jax.train.loop.run`)."""
    from mim_jax.train.loop import run as _run

    return _run(config, workdir)
