"""The one training loop every job runs: pretraining, fine-tuning and linear probing alike.

``run_job(job, workdir)`` trains ``job`` to ``job.total_steps`` and leaves in ``workdir``:
``checkpoints/<step>/`` (Orbax: state, iterator state, config), ``metrics.jsonl`` and
``tensorboard/``. Running it again on the same workdir resumes from the last complete checkpoint
at the exact step, with the same data order and the same random draws an uninterrupted run would
have used: the iterator state is restored and the step's randomness comes from
``fold_in(key(seed), step)``. SIGTERM (a preemption) saves a checkpoint at the next step boundary
and returns cleanly. A NaN or infinite loss stops the run with a message; the bad state is not
saved, so the last good checkpoint stays the latest.

What a job adds goes in through :class:`Hook`: the pretraining job's reconstruction pictures and
periodic kNN accuracy, a fine-tuning job's validation accuracy. A hook's metrics are logged and,
when it runs at checkpoint saves, stored with the checkpoint (``job.best_metric`` keeps the best
one).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import io
import logging
import math
import os
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from typing import IO, Any

import jax
import jax.numpy as jnp
import numpy as np

from mim_jax.core import distributed, paths, wandb_log
from mim_jax.core.checkpoint import CheckpointStore
from mim_jax.core.errors import WorkdirBusy
from mim_jax.core.metrics import MetricsWriter
from mim_jax.core.resume import check_resume
from mim_jax.core.state import TrainState
from mim_jax.core.workdir_lock import WorkdirLock

PREFETCH = 2  # batches placed on device ahead of the step that consumes them


@dataclasses.dataclass
class RunResult:
    """How a run ended: the last step reached, its loss and why it stopped."""

    step: int
    loss: float | None
    stopped: str  # "finished" | "preempted" | "paused" (max_steps) | "nan"
    workdir: str


@dataclasses.dataclass
class Hook:
    """Something a job does every ``every`` steps besides training.

    Attributes:
      name: for messages.
      fn: ``fn(state, step) -> metrics or None``; metrics are logged at ``step``.
      every: steps between calls (0: never periodically).
      at_save: also call it at every checkpoint save and preemption; its metrics are stored with
        the checkpoint (for ``Job.best_metric``).
      at_finish: also call it once when the run finishes.
    """

    name: str
    fn: Callable[[TrainState, int], dict[str, float] | None]
    every: int = 0
    at_save: bool = False
    at_finish: bool = False


@dataclasses.dataclass
class Job:
    """What :func:`run_job` trains.

    Attributes:
      name: "pretraining", "fine-tuning", ... (messages).
      step: the compiled ``step(state, batch, key) -> (state, metrics)``; metrics hold at least
        a float32 scalar ``loss``; the state argument is donated.
      state: the initial, placed state (also the restore template: its arrays carry the
        shardings wanted now).
      iterator: a checkpointable iterator (``get_state`` / ``set_state``) of dicts of
        process-local numpy arrays.
      batch_shardings: a ``NamedSharding`` per batch key the step takes (other keys are dropped).
      total_steps: the schedule's length.
      batch_size: global examples per step (img/s).
      config: the ConfigDict saved with every checkpoint; ``seed``, ``log_every``,
        ``checkpoint_every`` and ``keep_checkpoints`` are read from it.
      hooks: see :class:`Hook`.
      best_metric: keep the best checkpoint by this hook metric (``best_mode``: max or min).
      start_message: printed when the run starts fresh.
      finish_notes: called at the end; each returned line is printed (e.g. skipped files).
      stream: where progress lines go (default stdout; evaluation jobs use stderr, their
        stdout carries the JSON result).
    """

    name: str
    step: Callable[[TrainState, dict[str, jax.Array], jax.Array], tuple[TrainState, Any]]
    state: TrainState
    iterator: Any
    batch_shardings: dict[str, jax.sharding.Sharding]
    total_steps: int
    batch_size: int
    config: Any
    hooks: Sequence[Hook] = ()
    best_metric: str | None = None
    best_mode: str = "max"
    start_message: str = ""
    finish_notes: Callable[[], Sequence[str]] = lambda: ()
    stream: IO[str] | None = None


def prefetch_to_device(
    iterator: Any, shardings: dict[str, jax.sharding.Sharding], size: int = PREFETCH
) -> Iterator[tuple[dict[str, np.ndarray], dict[str, jax.Array], Any]]:
    """Yields ``(local_batch, global_batch, data_state)`` with ``size`` batches in flight.

    Each batch is put on the devices (``jax.make_array_from_process_local_data``, asynchronous)
    ``size`` steps before it is used, so host-to-device copies overlap the running step.
    ``data_state`` is the iterator's state right after that batch was read: the state to
    checkpoint once the batch has been trained on (the iterator itself is ``size`` batches ahead).
    """
    queue: collections.deque = collections.deque()
    while True:
        while len(queue) < size:
            local = next(iterator)
            placed = {
                key: jax.make_array_from_process_local_data(sharding, np.asarray(local[key]))
                for key, sharding in shardings.items()
            }
            queue.append((local, placed, iterator.get_state()))
        yield queue.popleft()


class Preemption:
    """Turns SIGTERM into a flag the loop checks between steps (main thread only)."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def __enter__(self) -> Preemption:
        try:
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # not the main thread (e.g. a notebook worker): no handler
            self._previous = None
        # A SIGTERM the command line's start-up handler saw (and could not act on) counts.
        self.requested = bool(getattr(self._previous, "fired", False))
        return self

    def _handle(self, signum, frame) -> None:
        self.requested = True

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


def run_job(
    job: Job, workdir: str, max_steps: int | None = None, *, allow_config_change: bool = False
) -> RunResult:
    """Trains ``job`` in ``workdir``, resuming from its last usable checkpoint.

    Resuming checks the latest step (manifest, load, finite values, an iterator state the
    pipeline accepts) and falls back past rejected steps, moving them aside; the config must
    equal the checkpoint's up to :data:`mim_jax.core.resume.SAFE_TO_CHANGE` fields. Only finite
    states are saved. ``workdir`` is locked for the run (:mod:`mim_jax.core.workdir_lock`).

    Args:
      job: what to train (see :class:`Job`).
      workdir: where checkpoints and metrics go.
      max_steps: stop (with a checkpoint) after this many steps in this invocation, e.g. to fit
        a job's time limit; rerunning continues. None runs to ``job.total_steps``.
      allow_config_change: resume even when the config differs from the checkpoint's in fields
        not safe to change (they are printed).

    Raises:
      mim_jax.core.errors.RunError subclasses, each with its exit code: WorkdirBusy,
      ConfigChanged, CheckpointUnusable, WriteFailed.
    """
    workdir = os.fspath(workdir)  # a path or a URL (gs://...): files go through core.paths
    paths.makedirs(workdir)
    with _workdir_lock(workdir):
        return _run_locked(job, workdir, max_steps, allow_config_change)


@contextlib.contextmanager
def _workdir_lock(workdir: str):
    """Process 0 holds the workdir's lock; every process stops when it cannot."""
    # A URL (gs://) has no exclusive create: the lock needs a local or mounted workdir.
    lock = WorkdirLock(workdir, enabled=jax.process_index() == 0 and not paths.is_url(workdir))
    busy = None
    try:
        lock.__enter__()
    except WorkdirBusy as err:
        busy = err
    if jax.process_count() > 1 and distributed.any_process(busy is not None) and busy is None:
        busy = WorkdirBusy(f"process 0 could not lock {workdir}: another run holds it")
    if busy is not None:
        raise busy
    try:
        yield
    finally:
        lock.__exit__(None, None, None)


def _run_locked(job: Job, workdir: str, max_steps, allow_config_change: bool) -> RunResult:
    """:func:`run_job` inside the workdir's lock."""
    config = job.config
    process_count, process_index = jax.process_count(), jax.process_index()
    store = CheckpointStore(
        paths.join(workdir, "checkpoints"),
        keep=config.keep_checkpoints,
        **(dict(best_metric=job.best_metric, best_mode=job.best_mode) if job.best_metric else {}),
    )
    # Process 0 writes the run's metrics; others keep their own copy (they must agree).
    own_dir = workdir if process_index == 0 else paths.join(workdir, f"process_{process_index}")
    # Only process 0 prints progress lines, unless config.log_all_processes.
    progress = process_index == 0 or bool(config.get("log_all_processes", False))
    wandb_run = wandb_log.start(config, workdir) if process_index == 0 else None
    writer = MetricsWriter(
        own_dir, job.total_steps, job.batch_size, stream=job.stream, progress=progress,
        wandb_run=wandb_run,
    )  # fmt: skip
    if process_index == 0:  # the resolved config, readable, at every start (resumes too)
        paths.write_text(paths.join(workdir, "config.json"), configs_json(config))
    try:
        state = job.state
        if store.latest_step() is not None:
            restored = store.restore(
                state,
                accept=_resumable(job.iterator, process_index, store.directory),
                move_aside=True,
            )
            for reason in restored.rejected:
                writer.message(reason)
            state = restored.state
            changed = check_resume(
                restored.config, config, step=restored.step, allow=allow_config_change
            )
            writer.drop_after(restored.step)  # records a killed run logged past its checkpoint
            writer.message(f"resumed from {store.directory} at step {restored.step} ({job.name})")
            if changed:
                writer.message(changed)
        elif job.start_message:
            writer.message(job.start_message)
        key = jax.random.key(config.seed)
        step = int(state.step)
        last_loss: float | None = None
        stopped = "finished"
        batches = prefetch_to_device(job.iterator, job.batch_shardings)
        data_state = job.iterator.get_state()

        last_called: dict[int, int] = {}  # id(hook) -> the step it last ran at

        def call_hooks(hooks: Sequence[Hook], at_step: int) -> dict[str, float]:
            values: dict[str, float] = {}
            for hook in hooks:
                last_called[id(hook)] = at_step
                out = hook.fn(state, at_step)
                if out:
                    values.update(out)
            if values:
                writer.write(at_step, values)
            writer.start(at_step)  # img/s measures training, not the hooks
            return values

        first_step = step
        with Preemption() as preemption:
            while step < job.total_steps:
                _, placed, data_state = next(batches)
                if step == first_step:
                    writer.message("compiling the train step ...", progress=True)
                    started = time.perf_counter()
                state, metrics = job.step(state, placed, key)
                step += 1
                store.poll()  # a failed background save stops the run now, naming its step
                if step == first_step + 1:  # timing starts after the step compiled
                    jax.block_until_ready(metrics)
                    seconds = time.perf_counter() - started
                    writer.message(
                        f"compiled the train step and ran step {step} in {seconds:.1f} s "
                        "(a step compiled earlier in this process is reused)",
                        progress=True,
                    )
                    writer.start(step)
                due_log = step % config.log_every == 0 or step == job.total_steps
                pause = max_steps is not None and step - first_step >= max_steps
                due_save = step % config.checkpoint_every == 0 or step == job.total_steps or pause
                if process_count > 1:  # stop together: a SIGTERM seen by any process, at a log step
                    preempted = (due_log or due_save) and distributed.any_process(
                        preemption.requested
                    )
                else:
                    preempted = preemption.requested
                saving = due_save or preempted
                due = [
                    h
                    for h in job.hooks
                    if (h.every and step % h.every == 0) or (h.at_save and saving)
                ]
                if due_log or saving:
                    values = {k: float(v) for k, v in jax.device_get(metrics).items()}
                    if not math.isfinite(values["loss"]):
                        writer.message(_nan_message(step, values["loss"], store))
                        stopped = "nan"
                        break
                    last_loss = values["loss"]
                    if due_log:
                        writer.write(step, values)
                    hooked = call_hooks(due, step)
                    if saving and not _all_finite(state):
                        writer.message(_nan_message(step, values["loss"], store, "the parameters"))
                        stopped = "nan"
                        break
                    if saving:
                        store.save(
                            step,
                            state,
                            data_state=_all_data_states(data_state, process_count),
                            config=config.to_dict(),
                            metrics={"loss": values["loss"], **hooked},
                        )
                elif due:
                    call_hooks(due, step)
                if preempted:
                    writer.message(f"SIGTERM: saved a checkpoint at step {step}; exiting cleanly")
                    stopped = "preempted"
                    break
                if pause and step < job.total_steps:
                    writer.message(
                        f"paused after {max_steps} steps at step {step}; rerun to resume"
                    )
                    stopped = "paused"
                    break
        store.wait()
        store.close()
        for line in job.finish_notes():
            writer.message(line)
        if stopped == "finished":
            # A hook that already ran at this step (e.g. at the final save) is not run again.
            call_hooks(
                [h for h in job.hooks if h.at_finish and last_called.get(id(h)) != step], step
            )
            loss_text = "no new steps" if last_loss is None else f"loss {last_loss:.4f}"
            writer.message(f"done: step {step}, {loss_text}; outputs in {workdir}")
        writer.close()
        return RunResult(step=step, loss=last_loss, stopped=stopped, workdir=workdir)
    except BaseException:  # stop background saves and close files before the error surfaces
        _close_quietly(store, writer)
        raise


def configs_json(config: Any) -> str:
    """The config as indented JSON (sorted keys): ``WORKDIR/config.json``."""
    from mim_jax.configs import to_json  # configs sits below core

    return to_json(config)


def _all_data_states(data_state: Any, process_count: int) -> Any:
    """What to checkpoint as the iterator state: this process's, or every process's (each reads
    its own shard, and only process 0 writes the JSON item)."""
    if process_count == 1 or not isinstance(data_state, bytes):
        return data_state
    return {"per_process": distributed.gather_strings(data_state.decode("utf-8"))}


def _own_data_state(data_state: Any, process_index: int) -> Any:
    """This process's entry of a state saved by :func:`_all_data_states`."""
    if isinstance(data_state, dict) and "per_process" in data_state:
        states = data_state["per_process"]
        if process_index >= len(states):
            raise ValueError(
                f"the checkpoint holds iterator states of {len(states)} processes, this is "
                f"process {process_index}: resume with the same number of processes."
            )
        return states[process_index].encode("utf-8")
    return data_state


def _nan_message(step: int, loss: float, store: CheckpointStore, what: str = "") -> str:
    last = store.latest_step()
    where = f"the last good checkpoint is step {last}" if last is not None else "no checkpoint"
    problem = (
        f"{what} hold NaN or inf at step {step} (the loss is still {loss})"
        if what
        else f"loss is {loss} at step {step}"
    )
    return (
        f"{problem}: stopping. Nothing was saved from this state; {where}. "
        f"Lower the learning rate (config.lr / config.blr) or set config.clip_norm."
    )


@jax.jit
def _count_nonfinite(tree: Any) -> jax.Array:
    """How many arrays of ``tree`` (its float leaves) hold a NaN or inf."""
    leaves = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)]
    return sum((~jnp.all(jnp.isfinite(x))).astype(jnp.int32) for x in leaves) + jnp.int32(0)


def _all_finite(state: TrainState) -> bool:
    """Whether every parameter and optimizer value of ``state`` is finite (before a save: the
    loss of a step is computed before its update, so a finite loss can come with NaN weights)."""
    return int(_count_nonfinite((state.params, state.opt_state))) == 0


def _resumable(iterator: Any, process_index: int, directory: str) -> Callable[[Any], None]:
    """The check a restored step must pass to be resumed: a finite state and an iterator state
    the pipeline accepts (raising names the file and the step)."""

    def accept(restored) -> None:
        bad = int(_count_nonfinite((restored.state.params, restored.state.opt_state)))
        if bad:
            raise ValueError(f"{bad} arrays of its train state hold NaN or inf")
        if restored.data_state is not None:
            where = os.path.join(directory, str(restored.step), "data")
            try:
                iterator.set_state(_own_data_state(restored.data_state, process_index))
            except Exception as err:
                lines = str(err).strip().splitlines()
                raise ValueError(
                    f"the input pipeline refuses its iterator state ({where}): "
                    f"{type(err).__name__}: {lines[0][:300] if lines else ''}"
                ) from err

    return accept


def _close_quietly(store: CheckpointStore, writer: MetricsWriter) -> None:
    """Closes both after a failure, keeping the first error (a failed save raises again).

    Orbax's aborted background writes print a traceback per array on stderr while it shuts
    down; they are kept at debug level instead, so the failure stays one line."""
    captured = io.StringIO()
    with contextlib.redirect_stderr(captured):
        with contextlib.suppress(Exception):
            store.close()
        with contextlib.suppress(Exception):
            writer.close()
    if captured.getvalue():
        logging.getLogger(__name__).debug("while closing: %s", captured.getvalue())
