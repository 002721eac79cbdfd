"""One run per workdir: a lock file that a second run on the same workdir refuses to pass.

``WORKDIR/run.lock`` holds the owner's host, process id and start time; it is created with
``O_CREAT | O_EXCL`` (two runs started together: exactly one wins) and removed when the run ends.
A run killed with ``kill -9`` or by a lost machine leaves the file behind; the next run takes it
over when it is stale:

* on the same host, when the owner's process id is no longer alive;
* from another host, when the owner has not refreshed it for ``stale_after`` seconds (the owner
  touches it every ``stale_after / 4`` seconds from a background thread).

Anything else raises :class:`~mim_jax.core.errors.WorkdirBusy` naming the owner (exit code 4).
In a multi-process run only process 0 takes the lock: the processes of one job share the workdir.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time

from mim_jax.core.errors import WorkdirBusy

LOCK_NAME = "run.lock"
STALE_AFTER = 120.0  # seconds without a heartbeat before another host may take the lock


class WorkdirLock:
    """Context manager holding ``workdir``'s lock (see the module docstring).

    Args:
      workdir: the run's folder (created if missing).
      stale_after: seconds without a heartbeat after which another host's lock is stale.
      enabled: False makes it a no-op (processes other than 0 of a multi-process run).
    """

    def __init__(self, workdir: str, stale_after: float = STALE_AFTER, enabled: bool = True):
        self.path = os.path.join(workdir, LOCK_NAME)
        self.stale_after = float(stale_after)
        self.enabled = enabled
        self._owner = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.time()}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> WorkdirLock:
        if not self.enabled:
            return self
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        for _ in range(3):  # a stale lock removed, then a fresh create (another run may race us)
            if self._create():
                break
            holder = self._read()
            reason = self._stale(holder)
            if reason is None:
                raise WorkdirBusy(_busy_message(self.path, holder))
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.path)
        else:
            raise WorkdirBusy(_busy_message(self.path, self._read()))
        self._thread = threading.Thread(target=self._heartbeat, name="workdir-lock", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if not self.enabled or self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        if self._read().get("pid") == self._owner["pid"]:
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.path)

    def _create(self) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(self._owner, f)
        return True

    def _read(self) -> dict:
        try:
            with open(self.path, encoding="utf-8") as f:
                holder = json.load(f)
            holder["age"] = time.time() - os.path.getmtime(self.path)
            return holder
        except FileNotFoundError:
            return {}
        except ValueError:  # a half-written file: the writer died, or is writing right now
            return {"age": time.time() - os.path.getmtime(self.path)}

    def _stale(self, holder: dict) -> str | None:
        """Why ``holder``'s lock may be taken over, or None when it is live."""
        if not holder:
            return "removed"
        if holder.get("host") == self._owner["host"] and "pid" in holder:
            pid = int(holder["pid"])
            if pid == self._owner["pid"]:  # a restarted container reuses process ids
                return "left by an earlier process with this process id"
            return None if _alive(pid, holder.get("started")) else "its process is gone"
        if holder.get("age", 0.0) > self.stale_after:
            return f"no heartbeat for {holder['age']:.0f} s"
        return None

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.stale_after / 4):
            with contextlib.suppress(OSError):  # removed or unreachable: the next run decides
                os.utime(self.path)


def _alive(pid: int, started: float | None = None) -> bool:
    """Whether ``pid`` runs and (where /proc tells) began before ``started`` (not a reused id)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        pass
    began = _process_start(pid)
    return began is None or started is None or began <= float(started) + 1.0


def _process_start(pid: int) -> float | None:
    """When ``pid`` started (Unix time) from /proc, or None where /proc is not there."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/stat", encoding="ascii") as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith("btime"))
    except (OSError, ValueError, IndexError, StopIteration):
        return None
    return boot + ticks / os.sysconf("SC_CLK_TCK")


def _busy_message(path: str, holder: dict) -> str:
    who = (
        f"process {holder.get('pid', '?')} on {holder.get('host', '?')}, started "
        f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(holder.get('started', 0)))}"
        if holder
        else "another run"
    )
    return (
        f"the workdir is in use by {who} (lock {path}); wait for it, use another --workdir, or "
        f"delete the lock if that run is gone"
    )
