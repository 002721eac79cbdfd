"""One path abstraction for every file a run writes outside Orbax: local paths and URLs.

A workdir is a local path or a URL (``gs://bucket/run``, ``s3://...``, ``memory://...``); every
file the loop writes besides checkpoints (``config.json``, ``metrics.jsonl``, TensorBoard events,
reconstruction PNGs) goes through this module, which uses fsspec (the library etils.epath, and so
Orbax, uses for ``gs://``). Checkpoints are Orbax's, which takes the same strings. URLs are never
turned into local paths: ``os.path.abspath("gs://b/r")`` would make a ``./gs:/b/r`` folder.

Object stores cannot append, so :class:`JsonLines` rewrites the whole file on a URL (throttled,
and always at ``close``), and :class:`MirroredDir` lets a writer that needs a local folder
(tensorboardX) write to a local staging folder that is copied to the URL on ``sync``.
``pip install 'mim_jax[gcs]'`` brings gcsfs for ``gs://``.
"""

from __future__ import annotations

import os
import posixpath
import tempfile
import time

import fsspec


def is_url(path: str | os.PathLike) -> bool:
    """True for ``scheme://...`` (``file://`` included), False for a plain local path."""
    return "://" in os.fspath(path)


def resolve(path: str | os.PathLike) -> str:
    """A URL unchanged (trailing ``/`` removed); a local path made absolute."""
    path = os.fspath(path)
    return path.rstrip("/") if is_url(path) else os.path.abspath(path)


def join(base: str | os.PathLike, *parts: str) -> str:
    """``base/part/...`` with ``/`` for URLs and ``os.path.join`` for local paths."""
    base = os.fspath(base)
    if is_url(base):
        return posixpath.join(base.rstrip("/"), *parts)
    return os.path.join(base, *parts)


def filesystem(path: str | os.PathLike) -> tuple[fsspec.AbstractFileSystem, str]:
    """The fsspec filesystem of ``path`` and the path within it.

    Raises:
      ValueError: the URL's scheme needs a package that is not installed (e.g. gcsfs for gs://).
    """
    path = os.fspath(path)
    try:
        fs, inner = fsspec.core.url_to_fs(path)
    except (ImportError, ValueError) as err:
        scheme = path.split("://", 1)[0]
        hint = " pip install 'mim_jax[gcs]' for gs://." if scheme in ("gs", "gcs") else ""
        raise ValueError(f"cannot open {path!r}: {err}.{hint}") from None
    return fs, inner


def makedirs(path: str | os.PathLike) -> None:
    """Creates a folder and its parents (object stores have none to create: a no-op there)."""
    fs, inner = filesystem(path)
    fs.makedirs(inner, exist_ok=True)


def exists(path: str | os.PathLike) -> bool:
    fs, inner = filesystem(path)
    return fs.exists(inner)


def isdir(path: str | os.PathLike) -> bool:
    """True for a folder (on an object store: a prefix that holds objects)."""
    fs, inner = filesystem(path)
    return fs.isdir(inner)


def listdir(path: str | os.PathLike) -> list[str]:
    """The names (not paths) of the entries of a folder, sorted."""
    fs, inner = filesystem(path)
    return sorted(posixpath.basename(p.rstrip("/")) for p in fs.ls(inner, detail=False))


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Writes ``data`` to ``path`` (parents created), replacing what was there."""
    fs, inner = filesystem(path)
    parent = posixpath.dirname(inner) if is_url(path) else os.path.dirname(inner)
    if parent:
        fs.makedirs(parent, exist_ok=True)
    with fs.open(inner, "wb") as f:
        f.write(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def read_text(path: str | os.PathLike) -> str:
    fs, inner = filesystem(path)
    with fs.open(inner, "rb") as f:
        return f.read().decode("utf-8")


class JsonLines:
    """An append-only text file: appended to locally, rewritten whole on a URL.

    Args:
      path: the file (local path or URL); existing lines are kept.
      min_interval_s: on a URL, rewrite at most this often (``flush(force=True)`` and ``close``
        always do); locally every ``flush`` reaches the disk.
    """

    def __init__(self, path: str | os.PathLike, min_interval_s: float = 30.0):
        self.path = os.fspath(path)
        self.remote = is_url(self.path)
        self._interval = min_interval_s
        self._last_upload = 0.0
        if self.remote:
            self._lines = read_text(self.path) if exists(self.path) else ""
            self._dirty = False
        else:
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - see close()

    def write(self, line: str) -> None:
        if self.remote:
            self._lines += line
            self._dirty = True
        else:
            self._file.write(line)

    def flush(self, force: bool = False) -> None:
        if not self.remote:
            self._file.flush()
            return
        now = time.monotonic()
        if self._dirty and (force or now - self._last_upload >= self._interval):
            write_text(self.path, self._lines)
            self._dirty = False
            self._last_upload = now

    def close(self) -> None:
        if self.remote:
            self.flush(force=True)
        else:
            self._file.close()


class MirroredDir:
    """A local folder for writers that need one, mirrored to ``target`` when it is a URL.

    ``local`` is ``target`` itself for a local path (``sync`` does nothing), else a temporary
    folder whose files ``sync`` copies to ``target`` (each file whose size changed).
    """

    def __init__(self, target: str | os.PathLike, min_interval_s: float = 30.0):
        self.target = os.fspath(target)
        self.remote = is_url(self.target)
        self._interval = min_interval_s
        self._last = 0.0
        self._sizes: dict[str, int] = {}
        self.local = tempfile.mkdtemp(prefix="mim_jax_mirror_") if self.remote else self.target

    def sync(self, force: bool = False) -> None:
        now = time.monotonic()
        if not self.remote or not (force or now - self._last >= self._interval):
            return
        self._last = now
        for folder, _, names in os.walk(self.local):
            for name in names:
                local = os.path.join(folder, name)
                size = os.path.getsize(local)
                if self._sizes.get(local) == size:
                    continue
                relative = os.path.relpath(local, self.local).replace(os.sep, "/")
                with open(local, "rb") as f:
                    write_bytes(join(self.target, relative), f.read())
                self._sizes[local] = size
