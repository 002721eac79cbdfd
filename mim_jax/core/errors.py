"""Failure classes of a run, each with its own exit code (the command-line entry points map them).

| code | meaning | what to do |
|---|---|---|
| 0 | finished, paused (``--max-steps``), stopped by SIGTERM (even in start-up) | rerun |
| 1 | an unexpected error (a bug): the traceback is in ``WORKDIR/error.log`` | report it |
| 2 | bad arguments or config (one line names the field) | fix the command |
| 3 | the loss or the parameters became NaN/inf (nothing non-finite is saved) | lower lr, rerun |
| 4 | another run holds the workdir (:mod:`mim_jax.core.workdir_lock`) | wait, or another dir |
| 5 | the config differs from the checkpoint's in fields unsafe to change on resume | see message |
| 6 | no checkpoint in the workdir can be used (every step damaged or unloadable) | see message |
| 7 | writing failed: a checkpoint save, disk full, no permission | free space, rerun |

This module imports nothing from the package, so every layer may raise these.
"""

from __future__ import annotations


class RunError(Exception):
    """A failure the user can act on; ``exit_code`` is what the command-line entry points return."""

    exit_code = 1


class ConfigError(RunError, ValueError):
    """A bad argument or config value."""

    exit_code = 2


class NonFinite(RunError):
    """The loss or the train state became NaN or infinite."""

    exit_code = 3


class WorkdirBusy(RunError):
    """Another live run holds the workdir's lock."""

    exit_code = 4


class ConfigChanged(RunError):
    """The config differs from the one stored with the checkpoint, in fields not safe to change."""

    exit_code = 5


class CheckpointUnusable(RunError):
    """No checkpoint step could be restored (each one's reason is in the message)."""

    exit_code = 6


class WriteFailed(RunError):
    """Writing the run's outputs failed (a checkpoint save, disk full, permissions)."""

    exit_code = 7


EXIT_CODES = {
    "finished": 0,
    "paused": 0,
    "preempted": 0,
    "nan": NonFinite.exit_code,
}
