"""What a run shows and records: a console progress line, JSON-lines metrics, TensorBoard events.

Files go through :mod:`mim_jax.core.paths`, so the workdir may be a URL (``gs://...``).
``workdir/metrics.jsonl`` gets one JSON object per logged step (``{"step": ..., "loss": ...}``),
easy to plot with pandas; ``workdir/tensorboard/`` gets the same scalars as TensorBoard events
(tensorboardX, no TensorFlow needed).
"""

from __future__ import annotations

import json
import math
import sys
import time
from typing import IO, Any

from mim_jax.core import paths


def format_duration(seconds: float) -> str:
    """``1h02m``, ``3m05s`` or ``12s``."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class Eta:
    """Progress with an estimate of the time left, for loops of known length.

    ``Eta(total, "fine-tune epoch").line(done, "loss 0.5")`` returns
    ``fine-tune epoch 3/30 | loss 0.5 | 12s elapsed | ETA 1m48s``: the remaining units at the
    mean rate so far (the first unit, which compiles, counts in it, so early ETAs run high).
    """

    def __init__(self, total: int, what: str):
        self.total = total
        self.what = what
        self._start = time.perf_counter()

    def line(self, done: int, detail: str = "") -> str:
        elapsed = time.perf_counter() - self._start
        left = elapsed / done * (self.total - done) if done > 0 else float("nan")
        parts = [f"{self.what} {done}/{self.total}"] + ([detail] if detail else [])
        parts += [f"{format_duration(elapsed)} elapsed", f"ETA {format_duration(left)}"]
        return " | ".join(parts)


class MetricsWriter:
    """Writes scalars to ``metrics.jsonl`` and TensorBoard and prints progress lines.

    Args:
      workdir: the run's folder.
      total_steps: for the ETA.
      batch_size: global images per step, for img/s.
      stream: where progress lines go (stdout by default).
      wandb_run: a W&B run (:mod:`mim_jax.core.wandb_log`) that gets the same scalars, or None.
      progress: print the per-step progress lines (False on processes other than 0 of a
        multi-process run, unless ``config.log_all_processes``); messages are printed either way.
    """

    def __init__(
        self,
        workdir: str,
        total_steps: int,
        batch_size: int,
        stream: IO[str] | None = None,
        progress: bool = True,
        wandb_run: Any | None = None,
    ):
        self.path = paths.join(workdir, "metrics.jsonl")
        self._file = paths.JsonLines(self.path)  # appends locally, rewrites on a URL
        from tensorboardX import SummaryWriter  # lazy: Eta users (bench) need not load it

        self._tb_dir = paths.MirroredDir(paths.join(workdir, "tensorboard"))
        self._tb = SummaryWriter(self._tb_dir.local)
        self._stream = stream or sys.stdout
        self.total_steps = total_steps
        self.batch_size = batch_size
        self.progress = progress
        self._wandb = wandb_run
        self._last: tuple[int, float] | None = None

    def drop_after(self, step: int) -> int:
        """Removes records past ``step`` from ``metrics.jsonl`` (a run killed after logging them
        resumes from an earlier checkpoint and logs those steps again). Returns how many."""
        self._file.close()
        lines = (
            paths.read_text(self.path).splitlines(keepends=True) if paths.exists(self.path) else []
        )
        kept = [line for line in lines if not line.strip() or _step_of(line) <= step]
        if len(kept) != len(lines):
            paths.write_text(self.path, "".join(kept))
        self._file = paths.JsonLines(self.path)
        return len(lines) - len(kept)

    def start(self, step: int) -> None:
        """Marks the step the timing starts from (after compilation or a restore)."""
        self._last = (step, time.perf_counter())

    def write(self, step: int, scalars: dict[str, Any]) -> dict[str, float]:
        """Records ``scalars`` at ``step`` (plus img_per_s since the last call); prints a line."""
        now = time.perf_counter()
        values = {k: float(v) for k, v in scalars.items()}
        eta = float("nan")
        if self._last is not None and step > self._last[0]:
            per_step = (now - self._last[1]) / (step - self._last[0])
            values["img_per_s"] = self.batch_size / per_step
            eta = per_step * (self.total_steps - step)
        self._last = (step, now)
        self._file.write(json.dumps({"step": step, **values}) + "\n")
        self._file.flush()
        for name, value in values.items():
            self._tb.add_scalar(f"train/{name}", value, step)
        self._tb.flush()
        self._tb_dir.sync()
        if self._wandb is not None:
            self._wandb.log({f"train/{k}": v for k, v in values.items()}, step=step)
        parts = [f"step {step}/{self.total_steps}"]
        parts += [f"{k} {v:.4g}" for k, v in values.items() if k != "img_per_s"]
        if "img_per_s" in values:
            parts.append(f"{values['img_per_s']:.1f} img/s")
        parts.append(f"ETA {format_duration(eta)}")
        if self.progress:
            print(" | ".join(parts), file=self._stream, flush=True)
        return values

    def message(self, text: str, progress: bool = False) -> None:
        """Prints ``text``; a ``progress`` message only where progress lines are shown."""
        if self.progress or not progress:
            print(text, file=self._stream, flush=True)

    def close(self) -> None:
        self._file.close()
        self._tb.close()
        self._tb_dir.sync(force=True)
        if self._wandb is not None:
            self._wandb.finish()


def _step_of(line: str) -> float:
    try:
        return float(json.loads(line).get("step", -1))
    except ValueError:  # a line cut by a kill: drop it with the records after the checkpoint
        return float("inf")


def read_metrics(workdir: str) -> list[dict[str, float]]:
    """The records of ``workdir/metrics.jsonl`` in order (for notebooks and tests)."""
    text = paths.read_text(paths.join(workdir, "metrics.jsonl"))
    return [json.loads(line) for line in text.splitlines() if line.strip()]
