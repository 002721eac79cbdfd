"""Loading a pretraining run from its workdir, for evaluation, fine-tuning, export and notebooks.

A run's workdir holds ``checkpoints/<step>/{state,data,config}`` (see
:mod:`mim_jax.core.checkpoint`). The stored config rebuilds the model and the optimizer; their
:func:`~mim_jax.core.state.state_layout` is the restore template; the restored parameters are
merged into the model. Every array lands on one device (``jax.devices()[0]``) unless a mesh is
given.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import Mesh
from ml_collections import ConfigDict

from mim_jax import models
from mim_jax.core import paths
from mim_jax.core.checkpoint import CheckpointStore
from mim_jax.core.errors import CheckpointUnusable
from mim_jax.core.optimizer import make_optimizer, optimizer_config, steps_per_epoch
from mim_jax.core.sharding import make_mesh
from mim_jax.core.state import StateLayout, state_layout
from mim_jax.models.mae import MAE

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Pretrained:
    """A restored run: ``model`` (an MAE with the checkpoint's parameters), its config and step."""

    model: MAE
    config: ConfigDict
    step: int
    directory: str

    @property
    def encoder(self) -> models.ViTEncoder:
        return self.model.encoder


def checkpoint_directory(path: str | os.PathLike) -> str:
    """The Orbax folder for ``path``: a workdir (holding ``checkpoints/``) or that folder itself;
    a local path or a URL (:mod:`mim_jax.core.paths`).

    Raises:
      FileNotFoundError: ``path`` does not exist, or holds no checkpoint folder.
    """
    path = os.fspath(path)
    if not paths.isdir(path):
        raise FileNotFoundError(f"checkpoint path {path!r} does not exist (want a run's workdir).")
    nested = paths.join(path, "checkpoints")
    if paths.isdir(nested):
        return nested
    if any(name.isdigit() for name in paths.listdir(path)):
        return path
    raise FileNotFoundError(
        f"{path!r} is neither a run's workdir (no checkpoints/ inside) nor a checkpoint folder "
        "(no numbered step folders); pass the --workdir a training run wrote."
    )


def config_from_dict(stored: dict[str, Any]) -> ConfigDict:
    """A ConfigDict from a checkpoint's config JSON (lists are turned back into tuples)."""

    def plain(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, list):
            return tuple(plain(v) for v in value)
        return value

    return ConfigDict(plain(stored))


def run_optimizer(config: ConfigDict) -> optax.GradientTransformation:
    """The optimizer a run of ``config`` trains with, for the structure of its state.

    The schedule's length assumes ``config.data.num_examples``; it does not change the state.
    """
    num_examples = config.data.get("num_examples") or config.batch_size
    tx, _ = make_optimizer(optimizer_config(config, steps_per_epoch(config, num_examples)))
    return tx


def run_layout(config: ConfigDict, model: MAE, mesh: Mesh | None = None) -> StateLayout:
    """The state layout a run of ``config`` saves, on ``mesh`` (default: the first device)."""
    mesh = mesh or make_mesh(devices=jax.devices()[:1])
    return state_layout(model, run_optimizer(config), mesh)


def load_pretrained(
    path: str | os.PathLike,
    step: int | None = None,
    *,
    mesh: Mesh | None = None,
) -> Pretrained:
    """Restores a pretraining checkpoint as an MAE model.

    Args:
      path: the run's workdir (or its ``checkpoints`` folder).
      step: a checkpoint step; None takes the latest usable one, walking back (with a warning
        naming each) past steps with damaged files, no config or non-finite parameters.
      mesh: where the arrays go, laid out by the logical-axis rules (default: the first
        device).

    Raises:
      FileNotFoundError: no such folder or no checkpoint folder in it.
      ValueError: no complete checkpoint, an unknown step (the message lists the steps).
      CheckpointUnusable: no candidate step can be loaded (each reason named), e.g. ``step``
        has no config or non-finite parameters.
    """
    directory = checkpoint_directory(path)
    store = CheckpointStore(directory, async_save=False)
    try:
        steps = store.all_steps()
        if not steps:
            raise ValueError(
                f"no complete checkpoint in {directory}; a run killed before its first save "
                "leaves none (train longer or lower checkpoint_every)."
            )
        if step is not None and step not in steps:
            raise ValueError(
                f"checkpoint step {step} is not in {directory}; complete steps: {steps}."
            )
        rejected: list[str] = []
        for candidate in [step] if step is not None else steps[::-1]:
            try:
                config, layout, restored = _restore_step(store, candidate, mesh)
            except (ValueError, CheckpointUnusable) as err:
                rejected.append(str(err))
                log.warning("%s", err)
                continue
            break
        else:
            raise CheckpointUnusable(
                f"no checkpoint in {directory} can be loaded: {'; '.join(rejected)}"
            )
    finally:
        store.close()
    model = layout.model(restored.state)
    return Pretrained(model=model, config=config, step=restored.step, directory=directory)


def _restore_step(
    store: CheckpointStore, step: int, mesh: Mesh | None
) -> tuple[ConfigDict, StateLayout, Any]:
    """The config, state layout and restored state of one step (raises naming the step if
    unusable: no stored config, damaged files, non-finite parameters)."""
    try:
        stored_config = store.read_config(step)
    except Exception as err:
        raise ValueError(
            f"checkpoint step {step} in {store.directory}: its config cannot be read "
            f"({type(err).__name__})"
        ) from err
    if not stored_config:
        raise ValueError(
            f"checkpoint step {step} in {store.directory} has no stored config; it was not "
            "written by mim_jax.train."
        )
    config = config_from_dict(stored_config)
    model = nnx.eval_shape(lambda: models.mae_model(rngs=0, **models.mae_kwargs(config)))
    layout = run_layout(config, model, mesh)
    restored = store.restore(layout.abstract, step, accept=_finite_params)
    return config, layout, restored


def _finite_params(restored) -> None:
    leaves = jax.tree.leaves(restored.state.params)
    bad = sum(not bool(jnp.all(jnp.isfinite(x))) for x in leaves)
    if bad:
        raise ValueError(f"{bad} of its {len(leaves)} parameter arrays hold NaN or inf")


def random_init(config: ConfigDict, seed: int = 0) -> Pretrained:
    """The model of ``config`` at its random initialisation (``rngs=seed``): the baseline that
    evaluation compares a pretrained encoder against. ``step`` is 0 and ``directory`` empty."""
    model = models.mae_model(rngs=seed, **models.mae_kwargs(config))
    return Pretrained(model=model, config=config, step=0, directory="")
