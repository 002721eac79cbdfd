"""Load a pretraining run's checkpoint back into an MAE model, for evaluation, export and notebooks.

A run's workdir holds ``checkpoints/<step>/{state,data,config}`` (see
:mod:`mim_jax.train.checkpoint`). The stored config rebuilds the model and the optimizer's state
structure, which together form the restore template; the restored parameters are merged into
the model. Every array lands on one device (``jax.devices()[0]``) unless a sharding is given.
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
from ml_collections import ConfigDict

from mim_jax import configs, models
from mim_jax.errors import CheckpointUnusable
from mim_jax.models.mae import MAE
from mim_jax.train.checkpoint import CheckpointStore
from mim_jax.train.optimizer import make_optimizer
from mim_jax.train.step import TrainState

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
    """The Orbax folder for ``path``: a workdir (holding ``checkpoints/``) or that folder itself.

    Raises:
      FileNotFoundError: ``path`` does not exist, or holds no checkpoint folder.
    """
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"checkpoint path {path!r} does not exist (want a run's workdir).")
    nested = os.path.join(path, "checkpoints")
    if os.path.isdir(nested):
        return nested
    if any(name.isdigit() for name in os.listdir(path)):
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
    steps_per_epoch = configs.steps_per_epoch(config, num_examples)
    tx, _ = make_optimizer(configs.to_optimizer_config(config, steps_per_epoch))
    return tx


def state_template(config: ConfigDict, model: MAE, sharding: jax.sharding.Sharding) -> TrainState:
    """Abstract TrainState (``jax.ShapeDtypeStruct`` leaves) a run of ``config`` saved."""
    tx = run_optimizer(config)
    _, params, constants = nnx.split(model, nnx.Param, ...)

    def abstract(x):
        return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding)

    return jax.tree.map(
        abstract,
        TrainState(
            step=jax.ShapeDtypeStruct((), jnp.int32),
            params=params,
            constants=constants,
            opt_state=jax.eval_shape(tx.init, params),
        ),
    )


def load_pretrained(
    path: str | os.PathLike,
    step: int | None = None,
    *,
    sharding: jax.sharding.Sharding | None = None,
) -> Pretrained:
    """Restores a pretraining checkpoint as an MAE model.

    Args:
      path: the run's workdir (or its ``checkpoints`` folder).
      step: a checkpoint step; None takes the latest usable one, walking back (with a warning
        naming each) past steps with damaged files, no config or non-finite parameters.
      sharding: where the arrays go (default: the first device).

    Raises:
      FileNotFoundError: no such folder or no checkpoint folder in it.
      ValueError: no complete checkpoint, an unknown step (the message lists the steps).
      CheckpointUnusable: no candidate step can be loaded (each reason named), e.g. ``step``
        has no config or non-finite parameters.
    """
    directory = checkpoint_directory(path)
    sharding = sharding or jax.sharding.SingleDeviceSharding(jax.devices()[0])
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
                config, model, restored = _restore_step(store, candidate, sharding)
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
    graphdef, _, _ = nnx.split(model, nnx.Param, ...)
    model = nnx.merge(graphdef, restored.state.params, restored.state.constants)
    return Pretrained(model=model, config=config, step=restored.step, directory=directory)


def _restore_step(store: CheckpointStore, step: int, sharding) -> tuple[ConfigDict, MAE, Any]:
    """The config, model and restored state of one step (raises naming the step if unusable:
    no stored config, damaged files, non-finite parameters)."""
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
    model = models.mae_model(rngs=0, **configs.to_model_kwargs(config))
    restored = store.restore(state_template(config, model, sharding), step, accept=_finite_params)
    return config, model, restored


def _finite_params(restored) -> None:
    leaves = jax.tree.leaves(restored.state.params)
    bad = sum(not bool(jnp.all(jnp.isfinite(x))) for x in leaves)
    if bad:
        raise ValueError(f"{bad} of its {len(leaves)} parameter arrays hold NaN or inf")


def random_init(config: ConfigDict, seed: int = 0) -> Pretrained:
    """The model of ``config`` at its random initialisation (``rngs=seed``): the baseline that
    evaluation compares a pretrained encoder against. ``step`` is 0 and ``directory`` empty."""
    model = models.mae_model(rngs=seed, **configs.to_model_kwargs(config))
    return Pretrained(model=model, config=config, step=0, directory="")
