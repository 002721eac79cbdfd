"""Checkpoints of a run: train state, data-iterator state and config saved together with Orbax.

Layout under ``directory`` (one folder per step, written by ``orbax.checkpoint``)::

    <step>/state    the TrainState pytree (params, constants, opt_state, step)
    <step>/data     the input pipeline's iterator state (JSON), so a resumed run reads on
    <step>/config   the run's config (JSON), for the record and for ``evaluate``

    <step>/manifest.json   size and CRC-32 of every file of the step, written once it is final

Saves are asynchronous. Orbax writes a step into a temporary folder and renames it only when every
item is written, so a process killed mid-save leaves no step that looks complete: the next start
sees the last complete step. A failed save is reported (:class:`~mim_jax.core.errors.WriteFailed`,
naming the step) by the first :meth:`CheckpointStore.poll` after it ends, i.e. at the next train
step, not one save later.

Integrity: once a step is final its files are hashed into ``manifest.json`` (in the background; a
step killed before that is loaded unverified). Restoring the latest step checks the manifest, then
loads, then runs the caller's ``accept`` check (finite values, a usable iterator state); a step
failing any of them is reported in one line naming the step and the file or reason, moved aside to
``<directory>/damaged/<step>`` (so a rerun can save that step again) and the one before it is
tried. Restoring takes a template state whose arrays carry the shardings wanted now, so a
checkpoint saved on one mesh restores onto another (8 devices -> 1, or the reverse).

Retention: the latest ``keep`` steps, plus the best ``keep_best`` by ``best_metric`` when given.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import logging
import os
import shutil
import zlib
from collections.abc import Callable
from typing import Any

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers

from mim_jax.core import paths
from mim_jax.core.errors import CheckpointUnusable, WriteFailed

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
DAMAGED = "damaged"  # <directory>/damaged/<step>[.n]: steps moved aside; Orbax ignores the folder
_HASH_CHUNK = 8 << 20

DataState = dict[str, Any] | bytes | str | None


@dataclasses.dataclass
class Restored:
    """What :meth:`CheckpointStore.restore` returns."""

    step: int
    state: Any
    data_state: DataState
    config: dict[str, Any] | None
    rejected: list[str] = dataclasses.field(default_factory=list)  # later steps and why


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
        # Manifests and moving damaged steps aside work on local (or mounted) folders; a URL
        # (gs://...) gets Orbax's own checks only.
        self._local = not paths.is_url(self.directory)
        self._pending: int | None = None  # a step whose save was started and not yet checked
        self._hasher = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="manifest")
        self._manifest_job: concurrent.futures.Future | None = None

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

        Raises:
          WriteFailed: this save could not start, or the previous one failed.
        """
        self.wait()  # the previous save: report its failure under its own step, hash it
        items = {
            "state": ocp.args.StandardSave(state),
            "data": ocp.args.JsonSave(_encode_data_state(data_state)),
            "config": ocp.args.JsonSave(config if config is not None else {}),
        }
        scalars = None if metrics is None else {k: float(v) for k, v in metrics.items()}
        try:
            started = self._manager.save(
                step, args=ocp.args.Composite(**items), metrics=scalars, force=force
            )
        except Exception as err:  # disk full, permissions: Orbax raises many types
            raise WriteFailed(
                f"saving checkpoint step {step} in {self.directory} failed: {_short(err)}"
            ) from err
        self._pending = step if started else None
        return started

    def poll(self) -> None:
        """Checks a background save without waiting: raises if it failed, hashes it once final.

        Raises:
          WriteFailed: the last save failed (the message names its step).
        """
        if self._pending is not None and not self._manager.is_saving_in_progress():
            self._finish(self._manager.check_for_errors)

    def wait(self) -> None:
        """Blocks until background saves are written (and hashed).

        Raises:
          WriteFailed: the last save failed (the message names its step).
        """
        if self._pending is not None:
            self._finish(self._manager.wait_until_finished)
        if self._manifest_job is not None:
            job, self._manifest_job = self._manifest_job, None
            try:
                job.result()
            except OSError as err:
                raise WriteFailed(f"writing a checkpoint manifest failed: {_short(err)}") from err

    def _finish(self, check: Callable[[], None]) -> None:
        step, self._pending = self._pending, None
        try:
            check()
        except Exception as err:
            raise WriteFailed(
                f"saving checkpoint step {step} in {self.directory} failed: {_short(err)}"
            ) from err
        if step is None:
            return
        path = paths.join(self.directory, str(step))
        if not paths.exists(path):  # Orbax does not always re-raise a failed background write
            raise WriteFailed(
                f"saving checkpoint step {step} in {self.directory} failed: the step was never "
                "completed (disk full or not writable?)"
            )
        if jax.process_index() == 0 and self._local:
            self._manifest_job = self._hasher.submit(write_manifest, path)

    def restore(
        self,
        template: Any,
        step: int | None = None,
        *,
        accept: Callable[[Restored], None] | None = None,
        move_aside: bool = False,
    ) -> Restored:
        """Loads ``step`` (default: the latest usable one) onto ``template``'s shardings.

        Args:
          template: a state of the same structure whose leaves are arrays (or
            ``jax.ShapeDtypeStruct``) carrying the wanted shapes, dtypes and shardings.
          step: a specific step; when None, the latest step that passes, walking back past
            damaged ones (each reported in one line and listed in ``Restored.rejected``).
          accept: called with each loaded step; raising (any exception) rejects the step with
            the exception's message as the reason (e.g. non-finite parameters, an iterator
            state the pipeline refuses).
          move_aside: move rejected steps to ``<directory>/damaged/`` (the training run, which
            holds the workdir, does; readers such as evaluation leave them).

        Raises:
          ValueError: no complete checkpoint, or ``step`` is not one of them (the message lists
            the available steps).
          CheckpointUnusable: every candidate was rejected (the message gives each reason).
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
        rejected = []
        for candidate in candidates:
            try:
                if self._local:
                    verify_manifest(os.path.join(self.directory, str(candidate)))
                loaded = self._manager.restore(
                    candidate,
                    args=ocp.args.Composite(
                        state=ocp.args.StandardRestore(abstract),
                        data=ocp.args.JsonRestore(),
                        config=ocp.args.JsonRestore(),
                    ),
                )
                restored = Restored(
                    step=candidate,
                    state=loaded["state"],
                    data_state=_decode_data_state(loaded["data"]),
                    config=loaded["config"] or None,
                    rejected=rejected,
                )
                if accept is not None:
                    accept(restored)
            except Exception as err:  # damaged or refused: report, fall back to an earlier step
                reason = f"checkpoint step {candidate} is unusable: {_short(err)}"
                if move_aside and self._local:
                    reason += f"; moved to {self._move_aside(candidate)}"
                log.warning("%s", reason)
                rejected.append(reason)
                continue
            return restored
        raise CheckpointUnusable(
            f"no checkpoint in {self.directory} can be used: " + "; ".join(rejected)
        )

    def _move_aside(self, step: int) -> str:
        """Moves a rejected step out of Orbax's sight, so the step number can be saved again."""
        source = os.path.join(self.directory, str(step))
        target = os.path.join(self.directory, DAMAGED, str(step))
        n = 1
        while os.path.exists(target):
            target = os.path.join(self.directory, DAMAGED, f"{step}.{n}")
            n += 1
        if jax.process_index() == 0:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.move(source, target)
        self._manager.reload()
        return target

    def read_config(self, step: int | None = None) -> dict[str, Any] | None:
        """The config JSON saved with ``step`` (default: the latest complete step), or None."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise ValueError(f"no complete checkpoint in {self.directory}.")
        loaded = self._manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))
        return loaded["config"] or None

    def close(self) -> None:
        """Waits for background saves, then releases Orbax (raises :class:`WriteFailed` too)."""
        try:
            self.wait()
        finally:
            self._hasher.shutdown(wait=True)
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


def _short(err: BaseException, limit: int = 300) -> str:
    """One line for an error (Orbax and TensorStore messages run to thousands of lines)."""
    text = str(err).strip().splitlines()
    first = text[0] if text else ""
    if len(first) > limit:
        first = first[:limit] + "..."
    return f"{type(err).__name__}: {first}" if first else type(err).__name__


def _step_files(path: str) -> list[str]:
    """Paths of every file under a step folder, relative to it, sorted (the manifest excluded)."""
    files = []
    for root, _, names in os.walk(path):
        for name in names:
            rel = os.path.relpath(os.path.join(root, name), path)
            if rel != MANIFEST:
                files.append(rel)
    return sorted(files)


def _crc32(path: str) -> str:
    """CRC-32 of a file (catches truncation, bit flips and torn writes; ~6x faster than SHA-256
    here, which matters when a checkpoint is gigabytes)."""
    crc = 0
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            crc = zlib.crc32(chunk, crc)
    return f"{crc:08x}"


def write_manifest(path: str) -> None:
    """Writes ``path/manifest.json``: size and CRC-32 of every file of a final step folder."""
    files = {
        rel: {
            "size": os.path.getsize(os.path.join(path, rel)),
            "crc32": _crc32(os.path.join(path, rel)),
        }
        for rel in _step_files(path)
    }
    temporary = os.path.join(path, MANIFEST + ".tmp")
    with open(temporary, "w", encoding="utf-8") as f:
        json.dump({"algorithm": "crc32", "files": files}, f, indent=1, sort_keys=True)
    os.replace(temporary, os.path.join(path, MANIFEST))


def verify_manifest(path: str) -> bool:
    """Checks a step folder against its manifest; False when it has none (not verified).

    Raises:
      ValueError: a file missing, of another size or with another hash (named). Files the
        manifest does not list are not checked.
    """
    manifest_path = os.path.join(path, MANIFEST)
    if not os.path.exists(manifest_path):
        return False
    try:
        with open(manifest_path, encoding="utf-8") as f:
            files = json.load(f)["files"]
    except (ValueError, KeyError) as err:
        raise ValueError(f"{manifest_path} is damaged ({type(err).__name__})") from None
    present = set(_step_files(path))
    missing = sorted(set(files) - present)
    if missing:
        raise ValueError(f"file {os.path.join(path, missing[0])} is missing")
    for rel, want in files.items():
        full = os.path.join(path, rel)
        if os.path.getsize(full) != want["size"]:
            raise ValueError(
                f"file {full} has {os.path.getsize(full)} bytes, the manifest says {want['size']}"
            )
        if _crc32(full) != want["crc32"]:
            raise ValueError(f"file {full} does not match its CRC-32 in {MANIFEST}")
    return True
