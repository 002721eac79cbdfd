"""The skip-and-replace rule that the file-backed sources share (image, video and audio folders).

A record whose file cannot be read is replaced by the next readable file (cyclically), and the
bad file is recorded once with its error, so a few damaged files never stop a run and the run can
report exactly which ones it skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any


def first_readable(
    paths: Sequence[str],
    index: int,
    read: Callable[[str], Any],
    skipped: dict[str, str],
    record_bad: Callable[[str, BaseException], None],
    what: str,
) -> tuple[int, Any]:
    """``(i, read(paths[i]))`` for the first readable ``i`` from ``index`` on, cyclically.

    Paths already in ``skipped`` are passed over; a path whose ``read`` raises is handed to
    ``record_bad`` and passed over.

    Raises:
      IndexError: ``index`` outside ``[0, len(paths))``.
      RuntimeError: no path is readable (``what`` names the files in the message).
    """
    n = len(paths)
    index = int(index)
    if not 0 <= index < n:
        raise IndexError(f"index {index} out of range for {n} {what}")
    for k in range(n):
        i = (index + k) % n
        path = paths[i]
        if path in skipped:
            continue
        try:
            return i, read(path)
        except Exception as e:  # decoders raise many types
            record_bad(path, e)
    raise RuntimeError(f"no readable {what} ({n} unreadable)")
