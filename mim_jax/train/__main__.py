"""``python -m mim_jax.train --config configs/X.py[:args] --workdir DIR [--config.a.b=value ...]``.

Rerunning the same command resumes from the last complete checkpoint in DIR. ``--max-steps N``
stops (with a checkpoint) after N steps of this invocation, e.g. to fit a job's time limit.

Multi-process runs (TPU pod slices, SLURM jobs, several local processes) run the same command in
every process; ``--distributed`` and ``--coordinator/--num-processes/--process-id`` say how the
processes find each other (see :mod:`mim_jax.distributed`). The workdir must be a path every
process sees: a shared disk, or a bucket mounted on every host (gcsfuse); the loop writes through
the local filesystem API, so a bare gs:// URL does not work.

Exit status (:mod:`mim_jax.errors`): 0 finished, paused or stopped by SIGTERM, also during
start-up (rerun to resume); 1 an unexpected error; 2 bad arguments or config; 3 the loss or the
parameters became NaN/inf; 4 another run holds the workdir; 5 the config differs from the
checkpoint's (``--allow-config-change`` resumes anyway); 6 no usable checkpoint; 7 writing failed
(disk full, permissions). Each failure prints one line; ``--verbose`` adds the traceback, which
also goes to WORKDIR/error.log.
"""

from __future__ import annotations

import argparse
import errno
import os
import signal
import sys
import time
import traceback
from collections.abc import Sequence

from mim_jax import runtime
from mim_jax.errors import EXIT_CODES, ConfigError, RunError, WriteFailed

# OSErrors that mean the outputs cannot be written (exit 7) rather than a bad path (exit 2).
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EACCES, errno.EPERM,
                 errno.EFBIG}  # fmt: skip


_SIGTERM_MESSAGE = (
    "SIGTERM outside the training steps (start-up, shutdown): nothing new to save; rerun"
)


class _StartupSigterm(BaseException):
    """SIGTERM before the loop took over its handling (a BaseException: nothing may swallow it,
    least of all a checkpoint fallback that would take it for a damaged step)."""


def _sigterm_in_startup(signum, frame) -> None:
    raise _StartupSigterm


def main(argv: Sequence[str] | None = None) -> int:
    previous = signal.signal(signal.SIGTERM, _sigterm_in_startup)  # the loop takes over later
    try:
        return _main(argv)
    except _StartupSigterm:
        print(_SIGTERM_MESSAGE, flush=True)
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)


def _main(argv: Sequence[str] | None) -> int:
    from mim_jax import distributed

    parser = argparse.ArgumentParser(
        prog="python -m mim_jax.train",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", required=True, help="configs/file.py[:key=value,...]")
    parser.add_argument(
        "--workdir", required=True, help="checkpoints, metrics and pictures go here"
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
    from mim_jax.train.loop import run

    try:
        config = configs.load(args.config, [r[2:] for r in rest])
        result = run(
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
    path = os.path.join(workdir, "error.log")
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} exit {code}\n{text}")
    except OSError:
        return
    if not verbose:
        print(f"(traceback: {path}, or rerun with --verbose)", file=sys.stderr, flush=True)


if __name__ == "__main__":
    runtime.reexec_with_retained_memory()  # malloc keeps freed memory: see mim_jax.runtime
    sys.exit(main())
