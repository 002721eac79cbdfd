"""Optional Weights & Biases logging beside ``metrics.jsonl`` and TensorBoard.

``config.wandb.enabled=True`` (``pip install 'mim_jax[wandb]'``) logs every scalar the loop
records to a W&B run; ``config.wandb.mode`` is ``online`` (default), ``offline`` (written under
``WORKDIR/wandb/``, upload later with ``wandb sync``) or ``disabled``. The run id is derived from
the workdir, so a resumed run continues the same W&B run. Only process 0 logs.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

MODES = ("online", "offline", "disabled")


def run_id(workdir: str) -> str:
    """A W&B run id that is the same for every start of one workdir."""
    where = workdir if "://" in workdir else os.path.abspath(workdir)
    return "mim-" + hashlib.sha1(where.encode()).hexdigest()[:16]


def start(config, workdir: str, log_dir: str | None = None) -> Any | None:
    """Starts (or resumes) the W&B run of ``workdir`` when ``config.wandb.enabled``; else None.

    Args:
      config: the run's config (``config.wandb``: enabled, project, entity, mode, run_name).
      workdir: the run's workdir (names the run and fixes its id).
      log_dir: where W&B keeps its local files (default: ``workdir``).

    Raises:
      ValueError: W&B is asked for but not installed, or an unknown mode.
    """
    options = config.get("wandb")
    if options is None or not options.enabled:
        return None
    if options.mode not in MODES:
        raise ValueError(f"config.wandb.mode={options.mode!r}; valid: {', '.join(MODES)}.")
    try:
        import wandb
    except ImportError:
        raise ValueError(
            "config.wandb.enabled=True needs the wandb package: pip install 'mim_jax[wandb]' "
            "(or set --config.wandb.enabled=False)."
        ) from None
    directory = log_dir or workdir
    if "://" in directory:  # W&B keeps its files locally; a URL workdir gets a local folder
        directory = os.path.join(os.path.expanduser("~"), ".cache", "mim_jax", "wandb")
    os.makedirs(directory, exist_ok=True)
    return wandb.init(
        project=options.project,
        entity=options.entity,
        name=options.run_name or os.path.basename(os.path.normpath(workdir)),
        id=run_id(workdir),
        resume="allow",
        mode=options.mode,
        dir=directory,
        config=config.to_dict(),
    )
