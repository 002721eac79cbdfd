"""Masking strategy vs linear-probe / kNN accuracy on the bundled digits, as a markdown table.

For each seed and each strategy, pretrains the demo config (``configs/demo.py``) for ``steps``
steps as one sweep (``mim_jax.sweep``: one compiled step for every run, a finished run in the
workdir is reused), then evaluates its frozen cls
features with the linear probe (digits recipe, cached features) and kNN (k = 20, T = 0.07); the
encoder of the same config at its random initialisation (the pretraining's starting point for
that seed) is the baseline. Rows report mean and sample standard deviation over the seeds.

Command::

    python -m mim_jax.evaluate.compare --steps 1000 --seeds 0,1,2 --workdir /tmp/mim_compare

(``scripts/compare_masks.py`` is the same). Writes ``<workdir>/compare.md`` and
``<workdir>/compare.json``; prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from mim_jax import runtime

MASKS = ("random", "red", "blue", "green", "purple")


def evaluate_encoder(
    encoder,
    config,
    *,
    probe_epochs: int = 90,
    log: Callable[[str], None] = lambda _: None,
) -> dict[str, float]:
    """``{"linear_top1", "knn_top1"}`` of a frozen encoder on the run's train/val splits."""
    from mim_jax import configs
    from mim_jax.evaluate.data import FeatureExtractor, eval_sources, extract_features
    from mim_jax.evaluate.knn import knn_classify
    from mim_jax.evaluate.linear_probe import LinearProbeConfig, train_on_features

    splits = eval_sources(config)
    extractor = FeatureExtractor(encoder, "cls", 256)
    size, crop = splits.image_size, splits.crop_fraction  # digits: the whole image, as the recipe
    train = extract_features(extractor, splits.train, size, log=log, crop_fraction=crop)
    val = extract_features(extractor, splits.val, size, log=log, crop_fraction=crop)
    knn = knn_classify(*train, *val, num_classes=splits.num_classes, ks=(20,))
    job = configs.load("linprobe_digits")
    recipe = dict(
        epochs=probe_epochs,
        warmup_epochs=min(int(job.warmup_epochs), max(probe_epochs // 9, 1)),
        batch_size=job.batch_size,
        blr=job.blr,
    )
    probe = train_on_features(
        *train, *val, num_classes=splits.num_classes, config=LinearProbeConfig(**recipe), log=log
    )
    return {"linear_top1": probe["linear_top1"], "knn_top1": knn["knn_top1"]}


def run_comparison(
    workdir: str,
    *,
    masks: Sequence[str] = MASKS,
    seeds: Sequence[int] = (0, 1, 2),
    steps: int = 1000,
    config_spec: str = "configs/demo.py",
    probe_epochs: int = 90,
    overrides: Sequence[str] = (),
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """One record per (strategy or "random init", seed): accuracies and seconds.

    The pretraining runs are a sweep over ``seed`` x ``mask`` (:func:`mim_jax.sweep.run_locally`:
    one compiled train step shared by every run, finished runs skipped); each run's encoder, and
    the same config's random initialisation per seed, is then evaluated.
    """
    from mim_jax import sweep
    from mim_jax.core.workdir import load_pretrained, random_init

    spec = f"{config_spec}:steps={steps}"
    common = ["recon_every=0", f"checkpoint_every={steps}", "log_every=100", *overrides]
    runs = sweep.expand([("seed", [str(s) for s in seeds]), ("mask", list(masks))], workdir)
    sweep.run_locally(runs, spec, common, log=log)
    records = []
    for seed in seeds:
        for mask in ("random init", *masks):
            start = time.perf_counter()
            name = sweep.run_name(
                (("seed", str(seed)), ("mask", masks[0] if mask == "random init" else mask))
            )
            run = next(r for r in runs if r.name == name)
            config = sweep.load_config(spec, common, run)
            if mask == "random init":
                encoder = random_init(config, seed).encoder
            else:
                encoder = load_pretrained(run.workdir).encoder
            scores = evaluate_encoder(encoder, config, probe_epochs=probe_epochs)
            record = {
                "strategy": mask,
                "seed": seed,
                "steps": 0 if mask == "random init" else steps,
            }
            record.update(scores, seconds=round(time.perf_counter() - start, 1))
            log(json.dumps(record))
            records.append(record)
    return records


def markdown_table(records: Sequence[dict[str, Any]]) -> str:
    """Rows per strategy (random init first): mean +- sample std over seeds, in percent (one
    seed: the value alone, since one run has no spread)."""
    order: list[str] = []
    for r in records:
        if r["strategy"] not in order:
            order.append(r["strategy"])
    lines = [
        "| masking strategy | linear probe top-1 (%) | kNN top-1, k=20 (%) | seeds |",
        "|---|---|---|---|",
    ]
    for name in order:
        rows = [r for r in records if r["strategy"] == name]
        cells = []
        for metric in ("linear_top1", "knn_top1"):
            values = 100 * np.asarray([r[metric] for r in rows])
            if len(values) > 1:
                cells.append(f"{values.mean():.1f} ± {np.std(values, ddof=1):.1f}")
            else:
                cells.append(f"{values.mean():.1f}")
        label = f"{name} (no pretraining)" if name == "random init" else name
        lines.append(f"| {label} | {cells[0]} | {cells[1]} | {len(rows)} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mim_jax.evaluate.compare",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--workdir", required=True, help="runs, compare.md and compare.json")
    parser.add_argument("--masks", default=",".join(MASKS), help="comma-separated strategies")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    parser.add_argument(
        "--steps", type=int, default=1000, help="pretraining steps per run (the demo's 1000)"
    )
    parser.add_argument("--config", default="configs/demo.py", help="config spec (digits)")
    parser.add_argument("--probe-epochs", type=int, default=90)
    parser.add_argument(
        "--override", action="append", default=[], help="config override, e.g. lr=3e-3"
    )
    args = parser.parse_args(argv)
    masks = tuple(m.strip() for m in args.masks.split(",") if m.strip())
    try:
        seeds = tuple(int(s) for s in args.seeds.split(",") if s.strip())
    except ValueError:
        parser.error(f"--seeds must be comma-separated ints, got {args.seeds!r}")
    if not masks or not seeds or args.steps < 1:
        parser.error("need at least one mask, one seed and --steps >= 1")
    start = time.perf_counter()
    records = run_comparison(
        args.workdir,
        masks=masks,
        seeds=seeds,
        steps=args.steps,
        config_spec=args.config,
        probe_epochs=args.probe_epochs,
        overrides=args.override,
    )
    table = markdown_table(records)
    os.makedirs(args.workdir, exist_ok=True)
    with open(os.path.join(args.workdir, "compare.md"), "w", encoding="utf-8") as f:
        f.write(table + "\n")
    with open(os.path.join(args.workdir, "compare.json"), "w", encoding="utf-8") as f:
        json.dump({"records": records, "seconds": time.perf_counter() - start}, f, indent=1)
    print(table)
    print(f"total {time.perf_counter() - start:.0f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    runtime.reexec_with_retained_memory()  # malloc keeps freed memory: see mim_jax.runtime
    sys.exit(main())
