"""Sweeps: a grid of config overrides, one workdir per point, run here or printed as commands.

    python -m mim_jax.sweep --config configs/demo.py \\
        --grid mask=random,red,blue,green,purple --grid mask_ratio=0.75,0.9 \\
        --workdir /tmp/sweep [--config.total_steps=100 ...] [--print-commands [--launcher slurm]]

Each point of the grid (the cartesian product of the ``--grid`` lists, in order) is a run in
``WORKDIR/<name>``, named from its overrides (``mask=red__mask_ratio=0.9``). Locally the runs go
one after another; a finished run is skipped and an interrupted one resumes, so rerunning the
sweep continues it. Runs whose configs differ only in the mask strategy (and other fields a
compiled step does not depend on: seed, logging) share one compiled train step, the strategy
chosen by a traced index (``lax.switch``), so five mask strategies cost one compilation.

``--print-commands`` prints one command per run instead (``python -m mim_jax.train ...``, or
wrapped with ``launch/local.sh``, ``launch/gpu_slurm.sh`` or ``launch/tpu_pod.sh`` via
``--launcher``; ``--launcher-args`` go before the config). Either way the sweep then writes
``WORKDIR/summary.{md,csv,json}`` from each run's ``metrics.jsonl`` and prints the table
(``--summary-only`` just does that, e.g. after the printed commands ran elsewhere).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import itertools
import json
import math
import os
import re
import shlex
import sys
import time
from collections.abc import Sequence
from typing import Any

from mim_jax import runtime

LAUNCHERS = {
    "python": None,
    "local": "launch/local.sh",
    "slurm": "launch/gpu_slurm.sh",
    "tpu": "launch/tpu_pod.sh",
}
STATUS_FILE = "sweep_status.json"


@dataclasses.dataclass(frozen=True)
class SweepRun:
    """One point of the grid: its name, the grid overrides and where it runs."""

    name: str
    overrides: tuple[tuple[str, str], ...]  # (field, value) from the grid, in grid order
    workdir: str

    def override_args(self) -> list[str]:
        return [f"--config.{key}={value}" for key, value in self.overrides]


def parse_grid(items: Sequence[str]) -> list[tuple[str, list[str]]]:
    """``["mask=random,red", "mask_ratio=0.75,0.9"]`` -> ``[("mask", [...]), ...]``.

    Values split on commas outside brackets (``model.image_size=(32,32),(64,64)``).

    Raises:
      ValueError: an item without ``=``, an empty value list or a field given twice.
    """
    from mim_jax.configs import split_top_level

    axes: list[tuple[str, list[str]]] = []
    for item in items:
        if "=" not in item:
            raise ValueError(f"--grid {item!r} must look like field=value1,value2,...")
        key, values = item.split("=", 1)
        key = key.strip().removeprefix("--").removeprefix("config.")
        parsed = split_top_level(values)
        if not key or not parsed:
            raise ValueError(f"--grid {item!r}: need a field and at least one value.")
        if key in (k for k, _ in axes):
            raise ValueError(f"--grid field {key!r} given twice; put all its values in one list.")
        axes.append((key, parsed))
    return axes


def run_name(overrides: Sequence[tuple[str, str]]) -> str:
    """A directory name for a grid point: ``mask=red__mask_ratio=0.9`` (unsafe chars -> '-')."""
    parts = [f"{key}={value}" for key, value in overrides]
    return re.sub(r"[^A-Za-z0-9._=+-]", "-", "__".join(parts)) or "default"


def expand(axes: Sequence[tuple[str, list[str]]], workdir: str) -> list[SweepRun]:
    """The grid's runs (cartesian product, first axis slowest)."""
    keys = [key for key, _ in axes]
    runs = []
    for values in itertools.product(*(values for _, values in axes)):
        overrides = tuple(zip(keys, values, strict=True))
        name = run_name(overrides)
        runs.append(SweepRun(name, overrides, os.path.join(workdir, name)))
    return runs


def load_config(spec: str, common: Sequence[str], run: SweepRun, check_devices: int = 0):
    """The run's config; validated for ``check_devices`` devices (0: the config's own mesh
    size, for commands that run elsewhere).

    Raises:
      ValueError: a bad field, value or combination (naming the run).
    """
    from mim_jax import configs

    config = configs.load(spec, [*common, *(f"{k}={v}" for k, v in run.overrides)])
    devices = check_devices or math.prod(max(1, int(v)) for v in config.mesh.values())
    try:
        configs.validate(config, num_devices=devices)
    except ValueError as err:
        raise ValueError(f"run {run.name}: {err}") from None
    return config


def command(
    run: SweepRun,
    spec: str,
    common: Sequence[str],
    launcher: str = "python",
    launcher_args: str = "",
) -> str:
    """The shell command that trains ``run`` (``launcher`` wraps the train CLI)."""
    overrides = [f"--config.{o}" for o in common] + run.override_args()
    script = LAUNCHERS[launcher]
    if script is None:
        words = ["python", "-m", "mim_jax.train", "--config", spec, "--workdir", run.workdir]
        words += overrides
    else:
        words = [script, *shlex.split(launcher_args), "--workdir", run.workdir, spec, *overrides]
        if launcher in ("slurm", "tpu"):  # distinct job / log names per run
            words[1:1] = ["--job-name", run.name]
    return shlex.join(words)


# --------------------------------------------------------------------------------------------
# Local execution
# --------------------------------------------------------------------------------------------


def read_status(workdir: str) -> dict[str, Any] | None:
    path = os.path.join(workdir, STATUS_FILE)
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def is_done(workdir: str) -> bool:
    """A run the sweep finished (or that stopped on a NaN: rerunning would not help)."""
    status = read_status(workdir)
    return status is not None and status.get("stopped") in ("finished", "nan")


def run_locally(
    runs: Sequence[SweepRun],
    spec: str,
    common: Sequence[str],
    reuse: bool = True,
    max_steps: int | None = None,
    log=print,
) -> dict[str, Any]:
    """Trains the unfinished runs in order, one compiled step per group of same-shaped runs.

    Args:
      runs: from :func:`expand`.
      spec / common: the config spec and the overrides every run shares.
      reuse: share compiled steps between runs that differ only in mask strategy / seed /
        logging; False compiles each run's own step (to measure what reuse saves).
      max_steps: passed to :func:`mim_jax.train.pretrain.run` (pause each run after that many).

    Returns:
      ``{"compiled_steps": n, "seconds": wall time, "skipped": [names], "ran": [names]}``.
    """
    from mim_jax import masking
    from mim_jax.evaluate.periodic import run_pretraining
    from mim_jax.train import pretrain

    configs_by_run = {run.name: load_config(spec, common, run) for run in runs}
    todo = [run for run in runs if not is_done(run.workdir)]
    skipped = [run.name for run in runs if run not in todo]
    for name in skipped:
        log(f"[sweep] {name}: finished before, skipped")
    groups: dict[str, list[SweepRun]] = {}
    for run in todo:
        key = pretrain.step_signature(configs_by_run[run.name]) if reuse else run.name
        groups.setdefault(key, []).append(run)

    start = time.perf_counter()
    compiled_steps = 0
    for group in groups.values():
        group_configs = [configs_by_run[run.name] for run in group]
        compiled = None
        if reuse:
            specs = list(dict.fromkeys(masking.mask_spec_from_config(c) for c in group_configs))
            compiled = pretrain.compile_step(group_configs[0], mask_specs=specs)
            compiled_steps += 1
            log(
                f"[sweep] compiled one train step for {len(group)} run(s) with masks "
                f"{', '.join(s.name for s in specs)}"
            )
        for run, config in zip(group, group_configs, strict=True):
            log(f"[sweep] {run.name}: training in {run.workdir}")
            run_start = time.perf_counter()
            result = run_pretraining(
                config, run.workdir, max_steps=max_steps, compiled=compiled, message=log
            )
            compiled_steps += compiled is None
            status = {
                "name": run.name,
                "stopped": result.stopped,
                "step": result.step,
                "loss": result.loss,
                "seconds": time.perf_counter() - run_start,
                "shared_compiled_step": compiled is not None,
            }
            if _is_primary():
                with open(os.path.join(run.workdir, STATUS_FILE), "w", encoding="utf-8") as f:
                    json.dump(status, f)
    return {
        "compiled_steps": compiled_steps,
        "seconds": time.perf_counter() - start,
        "skipped": skipped,
        "ran": [run.name for run in todo],
    }


def _local_device_count() -> int:
    import jax

    return jax.device_count()


def _is_primary() -> bool:
    import jax

    return jax.process_index() == 0


# --------------------------------------------------------------------------------------------
# Summary
# --------------------------------------------------------------------------------------------


def summarize(runs: Sequence[SweepRun]) -> list[dict[str, Any]]:
    """One row per run from its ``metrics.jsonl``: final step and loss, best loss, speed."""
    rows = []
    for run in runs:
        row: dict[str, Any] = {"run": run.name, **dict(run.overrides)}
        path = os.path.join(run.workdir, "metrics.jsonl")
        records = []
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                records = [json.loads(line) for line in f if line.strip()]
        losses = [r["loss"] for r in records if "loss" in r and math.isfinite(r["loss"])]
        speeds = [r["img_per_s"] for r in records if "img_per_s" in r]
        status = read_status(run.workdir)
        row.update(
            status=(status or {}).get("stopped", "started" if records else "not started"),
            step=records[-1]["step"] if records else 0,
            final_loss=records[-1].get("loss") if records else None,
            best_loss=min(losses) if losses else None,
            img_per_s=speeds[-1] if speeds else None,
        )
        rows.append(row)
    return rows


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    if not rows:
        return "(no runs)"
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def write_summary(rows: Sequence[dict[str, Any]], workdir: str) -> dict[str, str]:
    """Writes ``summary.md``, ``summary.csv`` and ``summary.json`` in ``workdir``; their paths."""
    os.makedirs(workdir, exist_ok=True)
    paths = {ext: os.path.join(workdir, f"summary.{ext}") for ext in ("md", "csv", "json")}
    with open(paths["md"], "w", encoding="utf-8") as f:
        f.write(markdown_table(rows) + "\n")
    with open(paths["csv"], "w", encoding="utf-8", newline="") as f:
        if rows:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    with open(paths["json"], "w", encoding="utf-8") as f:
        json.dump(list(rows), f, indent=1)
    return paths


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mim_jax.sweep",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", required=True, help="configs/file.py[:key=value,...]")
    parser.add_argument(
        "--grid",
        action="append",
        default=[],
        help="field=v1,v2,... (repeatable; the sweep is their cartesian product)",
    )
    parser.add_argument("--workdir", required=True, help="one subfolder per run, plus summaries")
    parser.add_argument("--print-commands", action="store_true", help="print, do not run")
    parser.add_argument("--launcher", default="python", choices=sorted(LAUNCHERS))
    parser.add_argument("--launcher-args", default="", help="flags for the launcher script")
    parser.add_argument("--summary-only", action="store_true", help="only write the summary")
    parser.add_argument(
        "--no-reuse", action="store_true", help="compile each run's step (no sharing)"
    )
    parser.add_argument("--max-steps", type=int, default=None, help="pause each run after N")
    args, rest = parser.parse_known_args(argv)
    bad = [r for r in rest if not r.startswith("--config.")]
    if bad:
        parser.error(f"unrecognised arguments {bad}; overrides look like --config.field=value")
    common = [r[len("--config.") :] for r in rest]
    try:
        axes = parse_grid(args.grid)
        runs = expand(axes, args.workdir)
        local = not (args.print_commands or args.summary_only)
        devices = _local_device_count() if local else 0
        for run in runs:  # fail on a bad field or value before anything runs
            load_config(args.config, common, run, check_devices=devices)
    except ValueError as err:
        parser.exit(2, f"error: {err}\n")

    if args.print_commands:
        for run in runs:
            print(command(run, args.config, common, args.launcher, args.launcher_args))
    elif not args.summary_only:
        stats = run_locally(
            runs, args.config, common, reuse=not args.no_reuse, max_steps=args.max_steps
        )
        print(
            f"[sweep] {len(stats['ran'])} run(s) in {stats['seconds']:.1f}s with "
            f"{stats['compiled_steps']} compiled train step(s); {len(stats['skipped'])} skipped",
            flush=True,
        )
    if args.print_commands and not os.path.isdir(args.workdir):
        return 0
    rows = summarize(runs)
    paths = write_summary(rows, args.workdir)
    print(markdown_table(rows))
    print(f"[sweep] summary: {', '.join(paths.values())}", flush=True)
    return 0


if __name__ == "__main__":
    runtime.reexec_with_retained_memory()  # malloc keeps freed memory: see mim_jax.runtime
    sys.exit(main())
