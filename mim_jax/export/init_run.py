"""Start a pretraining run from imported weights (e.g. MAE's released PyTorch checkpoints).

:func:`init_workdir` builds the run's model from its config, copies the weights in
(:func:`mim_jax.export.mae.load_mae_state_dict`) and saves them as the run's step-0 checkpoint
with a fresh optimizer state. ``python -m mim_jax.train`` on that workdir then "resumes" from
step 0: same schedule, masks and data order as a fresh run, but starting from the imported
weights. Parts the file lacks (the decoder of an encoder-only checkpoint) keep the config's
random initialisation.

    python -m mim_jax.export init-run --weights mae_visualize_vit_base.pth \\
        --config configs/mae_in1k.py:model=vit_base --workdir DIR
    python -m mim_jax.train --config configs/mae_in1k.py:model=vit_base --workdir DIR

Run it once (one process) before launching the training job; the config must be the one the
training command uses.
"""

from __future__ import annotations

import os
from typing import Any

from mim_jax import models
from mim_jax.core.checkpoint import CheckpointStore
from mim_jax.core.workdir import run_layout
from mim_jax.export.mae import StateLike, load_mae_state_dict


def init_workdir(config: Any, workdir: str | os.PathLike, weights: StateLike) -> str:
    """Writes ``workdir/checkpoints/0`` holding ``config``'s model with ``weights`` loaded.

    Args:
      config: the run's ConfigDict (:func:`mim_jax.configs.load`).
      workdir: the training run's workdir (must not hold a checkpoint yet).
      weights: an MAE-layout state dict or its file (.pth / .safetensors / .npz); also the
        ``model.safetensors`` of a mim_jax timm export (encoder only).

    Returns:
      the checkpoint folder written (``workdir/checkpoints``).

    Raises:
      ValueError: the workdir already has a checkpoint, or the weights do not fit the config's
        model (the message names the key and the shapes).
    """
    directory = os.path.join(os.fspath(workdir), "checkpoints")
    if os.path.isdir(directory):
        store = CheckpointStore(directory, async_save=False)
        steps = store.all_steps()
        store.close()
        if steps:
            raise ValueError(
                f"{directory} already holds checkpoints {steps}; training resumes from them, so "
                "imported weights would be ignored. Use a new workdir."
            )
    # Check the weights against the model before anything is written.
    model = models.mae_model(rngs=config.seed, **models.mae_kwargs(config))
    load_mae_state_dict(model, weights, missing_decoder="keep")
    state = run_layout(config, model).place(model)
    store = CheckpointStore(directory, keep=config.keep_checkpoints, async_save=False)
    try:
        store.save(0, state, config=config.to_dict())
        store.wait()
    finally:
        store.close()
    return directory
