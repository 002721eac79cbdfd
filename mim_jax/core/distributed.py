"""Multi-process start-up: one call that joins this process to the others, or does nothing.

Every process of a multi-host run (a TPU pod slice's workers, a SLURM job's tasks, or several
local processes) runs the same command; before JAX starts its backend each one calls
:func:`initialize`, which finds out who it is and calls ``jax.distributed.initialize``:

- explicit flags: ``--coordinator HOST:PORT --num-processes N --process-id I``
  (``--local-device-ids 0,1`` optional) - local multi-process runs and any launcher;
- SLURM (``--distributed auto`` or ``slurm``): the coordinator is the first host of
  ``SLURM_STEP_NODELIST`` (port ``JAX_COORDINATOR_PORT``, else derived from ``SLURM_JOB_ID``), the
  process count ``SLURM_NTASKS`` and the id ``SLURM_PROCID``; with several tasks per node (one
  process per GPU) each task keeps only GPU ``SLURM_LOCALID``, with one task per node it uses all;
- ``--distributed jax``: ``jax.distributed.initialize()`` with no arguments, JAX's own detection
  (Cloud TPU pod slices, Open MPI, Kubernetes) - what ``launch/tpu_pod.sh`` uses;
- otherwise (one process, or ``--distributed none``) nothing happens.

After it, ``jax.process_index()`` / ``jax.process_count()`` say which data shard this process
reads and ``jax.devices()`` spans every process's devices.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import re
from collections.abc import Mapping, Sequence

log = logging.getLogger(__name__)

MODES = ("auto", "slurm", "jax", "none")


@dataclasses.dataclass(frozen=True)
class ProcessGroup:
    """Where this process sits in a multi-process run.

    Attributes:
      coordinator: ``host:port`` of process 0's coordination service (None: JAX detects it).
      num_processes: processes in the run (None: JAX detects it).
      process_id: this process's index in ``[0, num_processes)`` (None: JAX detects it).
      local_device_ids: the local accelerators this process uses (None: all visible ones).
      source: how it was found: ``"flags"``, ``"slurm"`` or ``"jax"``.
    """

    coordinator: str | None
    num_processes: int | None
    process_id: int | None
    local_device_ids: tuple[int, ...] | None
    source: str


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds ``--distributed``, ``--coordinator``, ``--num-processes``, ``--process-id`` and
    ``--local-device-ids`` to a command-line parser (read back with :func:`from_args`)."""
    group = parser.add_argument_group("multi-process (see mim_jax.core.distributed)")
    group.add_argument(
        "--distributed",
        default="auto",
        choices=MODES,
        help="auto: the flags below, else SLURM variables, else one process; slurm: require "
        "SLURM; jax: jax.distributed.initialize() auto-detection (TPU pods); none: never",
    )
    group.add_argument("--coordinator", default=None, help="HOST:PORT of process 0")
    group.add_argument("--num-processes", type=int, default=None)
    group.add_argument("--process-id", type=int, default=None)
    group.add_argument(
        "--local-device-ids", default=None, help="comma-separated local accelerator ids"
    )


def from_args(
    args: argparse.Namespace, env: Mapping[str, str] | None = None
) -> ProcessGroup | None:
    """:func:`resolve` for the flags added by :func:`add_arguments`."""
    ids = None
    if args.local_device_ids:
        try:
            ids = tuple(int(i) for i in args.local_device_ids.split(","))
        except ValueError:
            raise ValueError(
                f"--local-device-ids={args.local_device_ids!r} must be comma-separated ints, "
                "e.g. 0,1."
            ) from None
    return resolve(
        coordinator=args.coordinator,
        num_processes=args.num_processes,
        process_id=args.process_id,
        local_device_ids=ids,
        mode=args.distributed,
        env=env,
    )


def resolve(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    local_device_ids: Sequence[int] | None = None,
    mode: str = "auto",
    env: Mapping[str, str] | None = None,
) -> ProcessGroup | None:
    """Works out this process's place without touching JAX (pure; ``env`` defaults to os.environ).

    Returns:
      a :class:`ProcessGroup`, or None for a single-process run.

    Raises:
      ValueError: an unknown mode, flags given only in part, ids out of range, or
        ``mode="slurm"`` outside a SLURM job step.
    """
    env = os.environ if env is None else env
    if mode not in MODES:
        raise ValueError(f"--distributed={mode!r}; valid: {', '.join(MODES)}.")
    flags = {"--coordinator": coordinator, "--num-processes": num_processes,
             "--process-id": process_id}  # fmt: skip
    given = [name for name, value in flags.items() if value is not None]
    ids = None if local_device_ids is None else tuple(int(i) for i in local_device_ids)
    if mode == "none":
        if given:
            raise ValueError(f"--distributed=none but {', '.join(given)} given; drop one.")
        return None
    if mode == "jax":
        return ProcessGroup(coordinator, num_processes, process_id, ids, "jax")
    if given:
        if len(given) != len(flags):
            missing = [name for name in flags if name not in given]
            raise ValueError(
                f"multi-process flags must come together: {', '.join(given)} given but "
                f"{', '.join(missing)} missing (e.g. --coordinator 127.0.0.1:12355 "
                "--num-processes 2 --process-id 0)."
            )
        _check_ids(num_processes, process_id, "--num-processes/--process-id")
        if ":" not in coordinator:
            raise ValueError(f"--coordinator={coordinator!r} must be HOST:PORT.")
        return ProcessGroup(coordinator, num_processes, process_id, ids, "flags")
    group = from_slurm(env)
    if mode == "slurm" and group is None:
        raise ValueError(
            "--distributed=slurm but this is not a SLURM job step (SLURM_NTASKS, SLURM_PROCID, "
            "SLURM_STEP_NODELIST and SLURM_JOB_ID are needed; start it with srun)."
        )
    if group is not None and ids is not None:
        group = dataclasses.replace(group, local_device_ids=ids)
    return group


def from_slurm(env: Mapping[str, str]) -> ProcessGroup | None:
    """The process group of a SLURM job step (``srun``), or None outside one or for 1 task."""
    needed = ("SLURM_JOB_ID", "SLURM_NTASKS", "SLURM_PROCID")
    nodelist = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST")
    if not nodelist or any(name not in env for name in needed):
        return None
    count, index = int(env["SLURM_NTASKS"]), int(env["SLURM_PROCID"])
    if count <= 1:
        return None
    _check_ids(count, index, "SLURM_NTASKS/SLURM_PROCID")
    port = env.get("JAX_COORDINATOR_PORT") or str(_port_from_job_id(int(env["SLURM_JOB_ID"])))
    coordinator = f"{first_host(nodelist)}:{port}"
    nodes = int(env.get("SLURM_STEP_NUM_NODES") or env.get("SLURM_JOB_NUM_NODES") or 1)
    ids = None
    if count > nodes and "SLURM_LOCALID" in env:  # several tasks per node: one GPU each
        ids = (int(env["SLURM_LOCALID"]),)
    return ProcessGroup(coordinator, count, index, ids, "slurm")


def _port_from_job_id(job_id: int) -> int:
    """A port in the top 4096 of the range, the same on every task of a job."""
    return 61440 + job_id % 4096


def first_host(nodelist: str) -> str:
    """The first host of a SLURM node list: ``gpu[003-010,012],cpu1`` -> ``gpu003``."""
    match = re.match(r"^([^,\[]+)(?:\[([^\],-]+))?", nodelist.strip())
    if not match:
        raise ValueError(f"cannot read a host name from SLURM node list {nodelist!r}.")
    return match.group(1) + (match.group(2) or "")


def _check_ids(count: int, index: int, what: str) -> None:
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"{what}: need 0 <= process id < process count, got {index} of {count}.")


def initialize(group: ProcessGroup | None, timeout_s: int = 300) -> ProcessGroup | None:
    """Calls ``jax.distributed.initialize`` for ``group`` (from :func:`resolve`); None: no-op.

    Must run before anything starts JAX's backend (``jax.devices()``, creating arrays).
    Logs the outcome and returns ``group``.
    """
    if group is None:
        return None
    import jax

    kwargs = {"initialization_timeout": timeout_s}
    if group.source != "jax" or group.coordinator is not None:
        kwargs.update(
            coordinator_address=group.coordinator,
            num_processes=group.num_processes,
            process_id=group.process_id,
        )
    if group.local_device_ids is not None:
        kwargs["local_device_ids"] = list(group.local_device_ids)
    jax.distributed.initialize(**kwargs)
    log.info(
        "joined %d processes as process %d (from %s; coordinator %s)",
        jax.process_count(),
        jax.process_index(),
        group.source,
        group.coordinator or "auto-detected",
    )
    return group


def describe() -> str:
    """One line saying which process this is and which devices it drives (backend started)."""
    import jax

    return (
        f"process {jax.process_index()}/{jax.process_count()}: {jax.local_device_count()} local "
        f"of {jax.device_count()} {jax.default_backend()} devices"
    )


def gather_strings(text: str) -> list[str]:
    """Every process's ``text``, ordered by process index (a collective: all must call it).

    Single process: ``[text]``. Used to checkpoint each process's input-iterator state.
    """
    import jax
    import numpy as np
    from jax.experimental import multihost_utils

    if jax.process_count() == 1:
        return [text]
    data = np.frombuffer(text.encode("utf-8"), np.uint8)
    lengths = np.asarray(multihost_utils.process_allgather(np.int32(len(data)))).reshape(-1)
    padded = np.zeros(int(lengths.max()), np.uint8)
    padded[: len(data)] = data
    rows = np.asarray(multihost_utils.process_allgather(padded)).reshape(len(lengths), -1)
    return [bytes(row[:n]).decode("utf-8") for row, n in zip(rows, lengths, strict=True)]


def any_process(flag: bool) -> bool:
    """True when ``flag`` is true on any process (a collective: all must call it)."""
    import jax
    import numpy as np
    from jax.experimental import multihost_utils

    if jax.process_count() == 1:
        return bool(flag)
    return bool(np.asarray(multihost_utils.process_allgather(np.int32(flag))).any())
