"""``python -m mim_jax.train --config configs/X.py[:args] --workdir DIR [--config.a.b=value ...]``.

Rerunning the same command resumes from the last complete checkpoint in DIR. ``--max-steps N``
stops (with a checkpoint) after N steps of this invocation, e.g. to fit a job's time limit.

Multi-process runs (TPU pod slices, SLURM jobs, several local processes) run the same command in
every process; ``--distributed`` and ``--coordinator/--num-processes/--process-id`` say how the
processes find each other (see :mod:`mim_jax.core.distributed`). The workdir must be a place every
process sees: a bucket URL (``gs://bucket/run``, with ``pip install 'mim_jax[gcs]'``), a shared
disk, or a bucket mounted on every host.

``--print-config`` prints the resolved config (after overrides) as JSON and exits; every run
writes it to ``WORKDIR/config.json`` when it starts.

Exit status (:mod:`mim_jax.core.errors`): 0 finished, paused or stopped by SIGTERM, also during
start-up (rerun to resume); 1 an unexpected error; 2 bad arguments or config; 3 the loss or the
parameters became NaN/inf; 4 another run holds the workdir; 5 the config differs from the
checkpoint's (``--allow-config-change`` resumes anyway); 6 no usable checkpoint; 7 writing failed
(disk full, permissions). Each failure prints one line; ``--verbose`` adds the traceback, which
also goes to WORKDIR/error.log (for a gs:// workdir, mim_jax_error.log in the temp folder).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Sequence

from mim_jax import runtime
from mim_jax.core.errors import EXIT_CODES, ConfigError, RunError, WriteFailed

# OSErrors that mean the outputs cannot be written (exit 7) rather than a bad path (exit 2).
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EACCES, errno.EPERM,
                 errno.EFBIG}  # fmt: skip


_SIGTERM_MESSAGE = (
    "SIGTERM outside the training steps (start-up, shutdown): nothing new to save; rerun"
)


_AS_SCRIPT = False  # run as ``python -m mim_jax.train`` (not main() called in-process)


class _StartupSigterm(BaseException):
    """SIGTERM before the loop took over its handling (a BaseException: nothing may swallow it,
    least of all a checkpoint fallback that would take it for a damaged step)."""


class _SigtermInStartup:
    """SIGTERM handler until the loop installs its own: raises :class:`_StartupSigterm`. Python
    drops an exception raised where it cannot propagate (a GC callback), so ``fired`` also tells
    the loop's handler, which then stops at the first step with a checkpoint."""

    fired = False

    def __call__(self, signum, frame) -> None:
        self.fired = True
        raise _StartupSigterm


def main(argv: Sequence[str] | None = None) -> int:
    previous = signal.signal(signal.SIGTERM, _SigtermInStartup())  # the loop takes over later
    try:
        return _main(argv)
    except _StartupSigterm:
        print(_SIGTERM_MESSAGE, flush=True)
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)


def _main(argv: Sequence[str] | None) -> int:
    from mim_jax.core import distributed

    parser = argparse.ArgumentParser(
        prog="python -m mim_jax.train",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", required=True, help="configs/file.py[:key=value,...]")
    parser.add_argument(
        "--workdir", help="checkpoints, metrics and pictures go here (required to train)"
    )
    parser.add_argument(
        "--print-config",
        action="store_true",
        help="print the resolved config (after overrides) as JSON and exit; a run also writes "
        "it to WORKDIR/config.json",
    )
    parser.add_argument(
        "--max-steps", type=int, default=None, help="stop after this many steps (then rerun)"
    )
    parser.add_argument(
        "--allow-config-change",
        action="store_true",
        help="resume even when the config differs from the checkpoint's in fields that are not "
        "safe to change (the changes are printed)",
    )
    parser.add_argument(
        "--verbose", action="store_true", help="print the full traceback of a failure"
    )
    distributed.add_arguments(parser)
    args, rest = parser.parse_known_args(argv)
    bad = [r for r in rest if not r.startswith("--config.")]
    if bad:
        parser.error(f"unrecognised arguments {bad}; overrides look like --config.field=value")
    if args.print_config:
        from mim_jax import configs

        try:
            print(configs.to_json(configs.load(args.config, [r[2:] for r in rest])), end="")
        except ValueError as err:
            parser.exit(2, f"error: {err}\n")
        return 0
    if not args.workdir:
        parser.error("the following arguments are required: --workdir")
    if args.max_steps is not None and args.max_steps < 1:
        parser.error(f"--max-steps must be >= 1, got {args.max_steps}")

    try:
        # Before anything starts JAX's backend: joining other processes changes the devices.
        group = distributed.initialize(distributed.from_args(args))
    except ValueError as err:
        parser.exit(2, f"error: {err}\n")
    if group is not None:
        print(distributed.describe(), flush=True)

    from mim_jax import configs
    from mim_jax.evaluate.periodic import run_pretraining

    quiet = contextlib.nullcontext() if args.verbose else _quiet_library_logs(args.workdir)

    try:
        with quiet:
            config = configs.load(args.config, [r[2:] for r in rest])
            result = run_pretraining(
                config,
                args.workdir,
                max_steps=args.max_steps,
                allow_config_change=args.allow_config_change,
            )
    except _StartupSigterm:
        print(_SIGTERM_MESSAGE, flush=True)
        return 0
    except Exception as err:  # every failure becomes one line and an exit code
        code, text = _classify(err)
        print(f"error: {text}", file=sys.stderr, flush=True)
        _log_traceback(args.workdir, args.verbose, code)
        return code
    return EXIT_CODES[result.stopped]


@contextlib.contextmanager
def _quiet_library_logs(workdir: str):
    """Orbax logs a failed background write with a full traceback per array (thousands of
    lines): its (absl) log goes to WORKDIR/error.log instead of the console."""
    import logging

    raise_exceptions = logging.raiseExceptions
    logging.raiseExceptions = False  # a full disk must not print logging's own tracebacks
    # absl: Orbax's log; asyncio: "Task exception was never retrieved" for each aborted write.
    loggers = [logging.getLogger(name) for name in ("absl", "asyncio")]
    try:
        path = _error_log(workdir)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        handler: logging.Handler = logging.FileHandler(path)
    except OSError:
        handler = logging.NullHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for logger in loggers:
        logger.addHandler(handler)
        logger.propagate = False
    stderr = sys.stderr
    sys.stderr = _TracebacksTo(stderr, handler)  # type: ignore[assignment]
    failed = False
    try:
        yield
    except BaseException:
        failed = True
        raise
    finally:
        # After a failure a script exits right away (os._exit) while background threads may
        # still print: keep the filter. Otherwise restore everything.
        if not (_AS_SCRIPT and failed):
            sys.stderr = stderr
            for logger in loggers:
                logger.removeHandler(handler)
                logger.propagate = True
            logging.raiseExceptions = raise_exceptions
            handler.close()


class _TracebacksTo:
    """A stderr that passes lines through but sends Python tracebacks (which TensorStore's
    threads print when Orbax aborts a write) to a log handler's file instead. Never raises.

    Several threads print their tracebacks at once, a few words per ``write`` each, so the
    partial line and the "inside a traceback" state are kept per OS thread: a line is judged
    by what its own thread printed before it, not by what another thread printed in between.
    """

    def __init__(self, stream, handler) -> None:
        self._stream = stream
        self._file = getattr(handler, "stream", None)
        self._threads: dict[int, tuple[bool, str]] = {}  # thread id -> (in traceback, partial)
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        thread = threading.get_ident()
        with self._lock:
            in_traceback, pending = self._threads.pop(thread, (False, ""))
            *lines, pending = (pending + str(text)).split("\n")
            for line in lines:
                if line.startswith(("Traceback (most recent call last)", "Exception ignored")):
                    in_traceback = True
                elif in_traceback and line and not line[0].isspace():
                    in_traceback = False  # "SomeError: message" ends it
                    self._emit(self._file, line)
                    continue
                self._emit(self._file if in_traceback else self._stream, line)
            if in_traceback or pending:
                self._threads[thread] = (in_traceback, pending)
        return len(text)

    def _emit(self, target, line: str) -> None:
        with contextlib.suppress(Exception):
            (target or self._stream).write(line + "\n")

    def flush(self) -> None:
        for target in (self._stream, self._file):
            with contextlib.suppress(Exception):
                if target is not None:
                    target.flush()

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def _error_log(workdir: str) -> str:
    """WORKDIR/error.log; for a bucket workdir (no appends there) a local file in the temp dir."""
    from mim_jax.core import paths

    if paths.is_url(workdir):
        return os.path.join(tempfile.gettempdir(), "mim_jax_error.log")
    return os.path.join(workdir, "error.log")


def _classify(err: Exception) -> tuple[int, str]:
    """The exit code and the one-line message for a failure (see the module docstring)."""
    if isinstance(err, RunError):
        return err.exit_code, str(err)
    if isinstance(err, OSError) and err.errno in _WRITE_ERRNOS:
        return WriteFailed.exit_code, f"cannot write: {err}"
    if isinstance(err, (ValueError, FileNotFoundError)):
        return ConfigError.exit_code, str(err)
    lines = str(err).strip().splitlines()
    return 1, f"{type(err).__name__}: {lines[0] if lines else ''} (an unexpected error)"


def _log_traceback(workdir: str, verbose: bool, code: int) -> None:
    """The full traceback: on stderr with ``--verbose``, and appended to WORKDIR/error.log."""
    text = traceback.format_exc()
    if verbose:
        print(text, file=sys.stderr, end="", flush=True)
    path = _error_log(workdir)
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} exit {code}\n{text}")
    except OSError:  # the disk that failed the run may fail the log too
        if not verbose:
            print("(rerun with --verbose for the traceback)", file=sys.stderr, flush=True)
        return
    if not verbose:
        print(f"(traceback: {path}, or rerun with --verbose)", file=sys.stderr, flush=True)


if __name__ == "__main__":
    runtime.reexec_with_retained_memory()  # malloc keeps freed memory: see mim_jax.runtime
    _AS_SCRIPT = True
    status = main()
    if status not in (0, 3):  # after a failure, skip the teardown where aborted background
        sys.stdout.flush()  # writes print more tracebacks (the lock is already released)
        sys.stderr.flush()
        os._exit(status)
    sys.exit(status)
