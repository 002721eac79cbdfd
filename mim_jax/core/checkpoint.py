"""Checkpoints of a run: train state, data-iterator state and config saved together with Orbax.

Layout under ``directory`` (one folder per step, written by ``orbax.checkpoint``)::

    <step>/state    the TrainState pytree (params, constants, opt_state, step)
    <step>/data     the input pipeline's iterator state (JSON), so a resumed run reads on
    <step>/config   the run's config (JSON), for the record and for ``evaluate``

Saves are asynchronous. Orbax writes a step into a temporary folder and renames it only when every
item is written, so a process killed mid-save leaves no step that looks complete: the next start
sees the last complete step. A complete step that fails to load (damaged files) is reported and the
one before it is tried. Restoring takes a template state whose arrays carry the shardings wanted
now, so a checkpoint saved on one mesh restores onto another (8 devices -> 1, or the reverse).

Retention: the latest ``keep`` steps, plus the best ``keep_best`` by ``best_metric`` when given.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers

from mim_jax.core import paths

log = logging.getLogger(__name__)

DataState = dict[str, Any] | bytes | str | None


@dataclasses.dataclass
class Restored:
    """What :meth:`CheckpointStore.restore` returns."""

    step: int
    state: Any
    data_state: DataState
    config: dict[str, Any] | None


class CheckpointStore:
    """An Orbax ``CheckpointManager`` for one run's checkpoint folder.

    Args:
      directory: the folder (created if missing).
      keep: how many of the latest steps to keep (>= 1).
      best_metric: a key of the ``metrics`` passed to :meth:`save`; keeps the ``keep_best`` best
        steps by it as well (``best_mode`` "min" or "max").
      async_save: write in the background (call :meth:`wait` or :meth:`close` before exiting).

    The state's arrays go into Orbax's OCDBT database (the default). ``MIM_JAX_CHECKPOINT_OCDBT=0``
    writes one zarr array per leaf instead: for storage emulators without conditional writes
    (``tests/train/test_gcs_workdir.py``); restores read either layout.
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        *,
        keep: int = 3,
        best_metric: str | None = None,
        best_mode: str = "min",
        keep_best: int = 1,
        async_save: bool = True,
    ):
        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep}.")
        if best_mode not in ("min", "max"):
            raise ValueError(f"best_mode must be 'min' or 'max', got {best_mode!r}.")
        policies: list[Any] = [checkpoint_managers.LatestN(n=keep)]
        best_fn = None
        if best_metric is not None:
            worst = float("-inf") if best_mode == "max" else float("inf")

            def best_fn(metrics: dict[str, float]) -> float:
                # A step saved without the metric (e.g. before evaluation was switched on)
                # ranks last instead of failing.
                return float((metrics or {}).get(best_metric, worst))

            policies.append(
                checkpoint_managers.BestN(
                    get_metric_fn=best_fn, reverse=best_mode == "min", n=keep_best
                )
            )
        self.directory = os.fspath(directory)
        self._manager = ocp.CheckpointManager(
            paths.resolve(self.directory),  # a URL (gs://...) stays a URL, as Orbax takes it
            options=ocp.CheckpointManagerOptions(
                preservation_policy=checkpoint_managers.AnyPreservationPolicy(policies),
                # Orbax writes a step's metrics only when best_fn is set; they must be on disk
                # for the best step to survive a restart.
                best_fn=best_fn,
                best_mode=best_mode,
                enable_async_checkpointing=async_save,
                cleanup_tmp_directories=True,
            ),
            **_item_options(),
        )

    def all_steps(self) -> list[int]:
        """Complete (finalised) steps, ascending."""
        return sorted(self._manager.all_steps())

    def latest_step(self) -> int | None:
        steps = self.all_steps()
        return steps[-1] if steps else None

    def save(
        self,
        step: int,
        state: Any,
        *,
        data_state: DataState = None,
        config: dict[str, Any] | None = None,
        metrics: dict[str, float] | None = None,
        force: bool = True,
    ) -> bool:
        """Starts saving ``state`` (and the iterator state and config) as ``step``.

        Returns whether a save was started. ``metrics`` feed the best-checkpoint policy.
        """
        items = {
            "state": ocp.args.StandardSave(state),
            "data": ocp.args.JsonSave(_encode_data_state(data_state)),
            "config": ocp.args.JsonSave(config if config is not None else {}),
        }
        scalars = None if metrics is None else {k: float(v) for k, v in metrics.items()}
        return self._manager.save(
            step, args=ocp.args.Composite(**items), metrics=scalars, force=force
        )

    def restore(self, template: Any, step: int | None = None) -> Restored:
        """Loads ``step`` (default: the latest complete one) onto ``template``'s shardings.

        Args:
          template: a state of the same structure whose leaves are arrays (or
            ``jax.ShapeDtypeStruct``) carrying the wanted shapes, dtypes and shardings.
          step: a specific step; when None, the latest step that loads, walking back past damaged
            ones.

        Raises:
          ValueError: no complete checkpoint, or ``step`` is not one of them (the message lists
            the available steps), or every candidate failed to load.
        """
        steps = self.all_steps()
        if not steps:
            raise ValueError(f"no complete checkpoint in {self.directory}.")
        if step is not None and step not in steps:
            raise ValueError(
                f"checkpoint step {step} is not in {self.directory}; complete steps: {steps}."
            )
        abstract = jax.tree.map(_abstract, template)
        candidates = [step] if step is not None else steps[::-1]
        errors = []
        for candidate in candidates:
            try:
                loaded = self._manager.restore(
                    candidate,
                    args=ocp.args.Composite(
                        state=ocp.args.StandardRestore(abstract),
                        data=ocp.args.JsonRestore(),
                        config=ocp.args.JsonRestore(),
                    ),
                )
            except Exception as err:  # damaged files: report, fall back to an earlier step
                log.warning("checkpoint step %d in %s failed to load: %s", candidate, self, err)
                errors.append(f"step {candidate}: {type(err).__name__}: {err}")
                continue
            return Restored(
                step=candidate,
                state=loaded["state"],
                data_state=_decode_data_state(loaded["data"]),
                config=loaded["config"] or None,
            )
        raise ValueError(f"no checkpoint in {self.directory} could be loaded: {'; '.join(errors)}")

    def read_config(self, step: int | None = None) -> dict[str, Any] | None:
        """The config JSON saved with ``step`` (default: the latest complete step), or None."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise ValueError(f"no complete checkpoint in {self.directory}.")
        loaded = self._manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))
        return loaded["config"] or None

    def wait(self) -> None:
        """Blocks until background saves are written."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.close()

    def __repr__(self) -> str:
        return f"CheckpointStore({self.directory!r})"


def _abstract(leaf: Any) -> Any:
    if isinstance(leaf, jax.ShapeDtypeStruct):
        return leaf
    return jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=getattr(leaf, "sharding", None))


def _encode_data_state(data_state: DataState) -> dict[str, Any]:
    """JSON form of an iterator state: grain's DataLoader gives JSON bytes, datasets a dict."""
    if data_state is None:
        return {"kind": "none"}
    if isinstance(data_state, bytes):
        return {"kind": "bytes", "value": data_state.decode("utf-8")}
    if isinstance(data_state, str):
        return {"kind": "str", "value": data_state}
    return {"kind": "dict", "value": data_state}


def _decode_data_state(stored: dict[str, Any] | None) -> DataState:
    if not stored or stored.get("kind") == "none":
        return None
    value = stored["value"]
    return value.encode("utf-8") if stored["kind"] == "bytes" else value


def _item_options() -> dict[str, Any]:
    """CheckpointManager's item arguments: the state without OCDBT when the environment asks."""
    if os.environ.get("MIM_JAX_CHECKPOINT_OCDBT", "1") != "0":
        return {"item_names": ("state", "data", "config")}
    return {
        "item_handlers": {
            "state": ocp.StandardCheckpointHandler(use_ocdbt=False),
            "data": ocp.JsonCheckpointHandler(),
            "config": ocp.JsonCheckpointHandler(),
        }
    }
