"""``python -m mim_jax.evaluate {linear,knn,finetune,reconstruct} --checkpoint WORKDIR [options]``.

Evaluates a pretraining run's encoder on its own dataset (the run's config decides it: digits
train/test by default). The result is printed on stdout as one JSON line and written to
``<out>/<protocol>.json`` (default ``<out>``: ``WORKDIR/eval``); progress lines go to stderr.

Examples::

    python -m mim_jax.evaluate knn --checkpoint /tmp/mim_demo
    python -m mim_jax.evaluate linear --checkpoint /tmp/mim_demo --epochs 90
    python -m mim_jax.evaluate linear --config configs/demo.py --out /tmp/rnd   # random init
    python -m mim_jax.evaluate finetune --checkpoint /tmp/mim_demo --epochs 30
    python -m mim_jax.evaluate reconstruct --checkpoint /tmp/mim_demo --mask random,green
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

from mim_jax.core import paths
from mim_jax.core.errors import RunError

PROTOCOLS = ("linear", "knn", "finetune", "reconstruct")

#: The shipped job configs of ``--recipe NAME`` (``configs/<file>_<NAME>.py``).
RECIPE_FILES = {"linear": "linprobe", "finetune": "finetune"}
RECIPES = ("digits", "mae")

#: Command-line flags that set a job-config field of the same meaning.
JOB_FLAGS = {
    "epochs": "epochs", "warmup_epochs": "warmup_epochs", "batch_size": "batch_size",
    "blr": "blr", "lr": "lr", "weight_decay": "weight_decay", "seed": "seed",
    "min_lr": "min_lr", "layer_decay": "layer_decay", "drop_path": "drop_path",
    "smoothing": "smoothing", "mixup": "mixup", "cutmix": "cutmix", "mixup_prob": "mixup_prob",
    "switch_prob": "switch_prob", "eval_every_epochs": "eval_every_epochs",
    "crop_fraction": "crop_fraction", "data_workers": "data_workers", "aa": "aa",
    "reprob": "reprob", "remode": "remode", "recount": "recount",
}  # fmt: skip


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated ints, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive ints, got {text!r}")
    return values


def _names(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mim_jax.evaluate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="protocol", required=True, metavar="PROTOCOL")
    helps = {
        "linear": "linear probe (frozen encoder, BN + linear head, MAE's LARS)",
        "knn": "weighted kNN on frozen features (DINO: cosine, T=0.07, k=10,20,100,200)",
        "finetune": "end-to-end fine-tuning (layer-wise lr decay, drop path, mixup/cutmix)",
        "reconstruct": "reconstruction PNGs for mask strategies and a ratio",
    }
    for name in PROTOCOLS:
        p = sub.add_parser(name, help=helps[name], description=helps[name])
        _common(p)
        {"linear": _linear, "knn": _knn, "finetune": _finetune, "reconstruct": _reconstruct}[name](
            p
        )
    return parser


def _common(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    src = g.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="a pretraining run's workdir (or its checkpoints/)")
    src.add_argument(
        "--config",
        help="a config spec (configs/demo.py[:args]): evaluate its model at random init",
    )
    g.add_argument("--step", type=int, help="checkpoint step (default: the latest)")
    g.add_argument(
        "--random-init",
        action="store_true",
        help="use the checkpoint's config but freshly initialised weights (the baseline)",
    )
    g.add_argument("--init-seed", type=int, default=0, help="seed of a random init (default 0)")
    g.add_argument(
        "--out",
        help="output folder (default: WORKDIR/eval; with --config: out/eval/random_init_<name>)",
    )
    d = p.add_argument_group("data (default: the run's config.data)")
    d.add_argument("--train-split", help="digits: train|test|all; TFDS: a split string")
    d.add_argument("--val-split", help="digits: test (default); TFDS: validation (default)")
    d.add_argument("--val-path", help="validation folder or list (folder, video, audio data)")
    d.add_argument("--data-dir", help="TFDS data directory")
    d.add_argument("--num-classes", type=int, help="override the class count")
    d.add_argument("--train-limit", type=int, help="use a random subset of the train split")
    d.add_argument("--val-limit", type=int, help="use a random subset of the val split")
    d.add_argument(
        "--crop-fraction",
        type=float,
        help="evaluation transform: shorter side to size / fraction (bicubic), centre crop "
        "(linear, finetune: the recipe's crop_fraction, mae: 0.875 up to 224 px and 1.0 above, "
        "digits: 1.0; knn, reconstruct: 1.0 for digits runs, else MAE's rule)",
    )
    d.add_argument(
        "--feature-batch-size", type=int, default=256, help="images per encoder forward pass"
    )


def _recipe_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--recipe",
        default="auto",
        help="the job config: digits or mae (configs/linprobe_<name>.py, configs/finetune_"
        "<name>.py), or a config file (FILE.py[:args]); auto picks digits for digits runs, else "
        "mae. --recipe.FIELD=VALUE overrides a field; the options below override it too.",
    )
    p.add_argument("--max-steps", type=int, help="stop after this many steps (rerun resumes)")


def _workers_arg(g) -> None:
    g.add_argument(
        "--data-workers",
        type=int,
        help="grain worker processes preparing training batches (default: the recipe's, 0)",
    )


def _linear(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("linear probe")
    _recipe_arg(g)
    g.add_argument("--pool", choices=("cls", "mean"), help="feature (default: the recipe's, cls)")
    g.add_argument("--epochs", type=int)
    g.add_argument("--warmup-epochs", type=int)
    g.add_argument("--batch-size", type=int)
    g.add_argument("--blr", type=float, help="base lr: lr = blr * batch / 256")
    g.add_argument("--lr", type=float, help="absolute lr (overrides --blr)")
    g.add_argument("--weight-decay", type=float)
    g.add_argument(
        "--augment",
        action=argparse.BooleanOptionalAction,
        help="train on MAE's one-draw RandomResizedCrop(0.08-1) + flip of every batch, else the "
        "evaluation transform (default: the recipe's; mae: on, digits: off)",
    )
    _workers_arg(g)
    g.add_argument("--seed", type=int)


def _knn(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("kNN")
    g.add_argument("--pool", choices=("cls", "mean"), default="cls")
    g.add_argument("--k", type=_ints, default=(10, 20, 100, 200), help="10,20,100,200")
    g.add_argument("--temperature", type=float, default=0.07)


def _finetune(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("fine-tuning")
    _recipe_arg(g)
    g.add_argument("--epochs", type=int)
    g.add_argument("--warmup-epochs", type=float)
    g.add_argument("--batch-size", type=int, help="global batch")
    g.add_argument("--blr", type=float, help="base lr: lr = blr * batch / 256")
    g.add_argument("--lr", type=float, help="absolute lr (overrides --blr)")
    g.add_argument("--min-lr", type=float)
    g.add_argument("--layer-decay", type=float, help="default: 0.65 vit_base, 0.75 otherwise (MAE)")
    g.add_argument("--weight-decay", type=float)
    g.add_argument("--drop-path", type=float)
    g.add_argument("--smoothing", type=float, help="label smoothing")
    g.add_argument("--mixup", type=float, help="mixup alpha (0 = off)")
    g.add_argument("--cutmix", type=float, help="cutmix alpha (0 = off)")
    g.add_argument("--mixup-prob", type=float)
    g.add_argument("--switch-prob", type=float)
    g.add_argument("--pool", choices=("avg", "cls"), help="avg: global pool + fc_norm (MAE)")
    g.add_argument(
        "--augment",
        action=argparse.BooleanOptionalAction,
        help="RandomResizedCrop(0.08-1) + flip + RandAugment (--aa) + RandomErasing (--reprob), "
        "else the evaluation transform (default: the recipe's; mae: on, digits: off)",
    )
    g.add_argument(
        "--aa", help="RandAugment policy, timm's string (mae: rand-m9-mstd0.5-inc1), or none"
    )
    g.add_argument("--reprob", type=float, help="RandomErasing probability (mae: 0.25; 0 = off)")
    g.add_argument("--remode", choices=("pixel", "rand", "const"), help="RandomErasing fill")
    g.add_argument("--recount", type=int, help="RandomErasing: at most this many boxes (mae: 1)")
    _workers_arg(g)
    g.add_argument("--eval-every-epochs", type=int)
    g.add_argument("--no-save", action="store_true", help="do not save the fine-tuned model")
    g.add_argument("--seed", type=int)


def _reconstruct(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("reconstruction")
    g.add_argument(
        "--mask",
        type=_names,
        help="comma-separated strategies (random, block, green, ...; default: the run's)",
    )
    g.add_argument("--mask-ratio", type=float, help="default: the run's")
    g.add_argument("--num-images", type=int, default=8)
    g.add_argument("--seed", type=int, default=0)


def _load_model(args):
    from mim_jax import configs
    from mim_jax.core.workdir import load_pretrained, random_init

    if args.config:
        config = configs.load(args.config)
        return random_init(config, args.init_seed), "random init of " + args.config
    pretrained = load_pretrained(args.checkpoint, args.step)
    if args.random_init:
        return random_init(pretrained.config, args.init_seed), "random init"
    return pretrained, f"pretrained step {pretrained.step}"


def job_config(args, run_config):
    """The linear / finetune job config: the recipe file, ``--recipe.*`` overrides, then flags."""
    from mim_jax import configs

    name = args.recipe
    if name == "auto":
        name = "digits" if run_config.data.source == "digits" else "mae"
    spec = f"{RECIPE_FILES[args.protocol]}_{name}" if name in RECIPES else name
    config = configs.load(spec, list(args.recipe_overrides))
    if config.get("job") != args.protocol:
        raise ValueError(
            f"--recipe {args.recipe} is a {config.get('job')!r} job config, not {args.protocol!r}."
        )
    for flag, field in JOB_FLAGS.items():
        value = getattr(args, flag, None)
        if value is not None and field in config:
            config[field] = value
    if getattr(args, "augment", None) is not None:
        config.augment = bool(args.augment)
    if getattr(args, "pool", None) is not None:
        if args.protocol == "linear":
            config.pool = args.pool
        else:
            config.global_pool = args.pool == "avg"
    return config


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Runs one protocol; returns the result dict (also written to ``<out>/<protocol>.json``)."""
    from mim_jax.evaluate.data import FeatureExtractor, eval_sources, extract_features, progress

    start = time.perf_counter()
    pretrained, what = _load_model(args)
    config = pretrained.config
    job = crop = None
    if args.protocol in RECIPE_FILES:
        from mim_jax import data
        from mim_jax.evaluate.jobs import job_crop_fraction, train_transform

        job = job_config(args, config)
        side = data.square_side(config.model.image_size)
        crop = job_crop_fraction(job, side)
        train_transform(job, side)  # a bad policy or erasing setting fails before any work
    elif args.crop_fraction is not None:
        crop = args.crop_fraction
    eval_data = eval_sources(
        config,
        train_split=args.train_split,
        val_split=args.val_split,
        val_path=args.val_path,
        data_dir=args.data_dir,
        num_classes=args.num_classes,
        train_limit=args.train_limit,
        val_limit=args.val_limit,
        crop_fraction=crop,
    )
    progress(
        f"{args.protocol}: {what} ({config.model.name}, mask {config.mask}); "
        f"{eval_data.description}"
    )
    result: dict[str, Any] = {
        "protocol": args.protocol,
        "checkpoint": args.checkpoint,
        "config": args.config,
        "step": pretrained.step,
        "model": what,
        "mask": config.mask,
        "data": eval_data.description,
        "crop_fraction": eval_data.crop_fraction,
    }
    if args.protocol == "knn":
        from mim_jax.evaluate.knn import knn_classify

        extractor = FeatureExtractor(pretrained.encoder, args.pool, args.feature_batch_size)
        size, crop = eval_data.image_size, eval_data.crop_fraction
        train = extract_features(extractor, eval_data.train, size, name="train", crop_fraction=crop)
        val = extract_features(extractor, eval_data.val, size, name="val", crop_fraction=crop)
        result["pool"] = args.pool
        result.update(
            knn_classify(
                *train, *val, num_classes=eval_data.num_classes, ks=args.k,
                temperature=args.temperature,
            )
        )  # fmt: skip
    elif args.protocol in ("linear", "finetune"):
        from mim_jax.evaluate.jobs import job_workdir, run_classification

        save = args.protocol == "finetune" and not args.no_save
        classifier_dir = paths.join(_out_dir(args), "finetuned") if save else None
        out = run_classification(
            job,
            pretrained,
            eval_data,
            job_workdir(_out_dir(args), args.protocol),
            max_steps=args.max_steps,
            classifier_dir=classifier_dir,
        )
        prefix = "linear" if args.protocol == "linear" else "finetune"
        result.update(job.to_dict(), crop_fraction=eval_data.crop_fraction)
        result.update(
            {
                f"{prefix}_top1": out.top1,
                f"{prefix}_top5": out.top5,
                f"{prefix}_best_top1": out.best_top1,
                f"{prefix}_train_loss": out.run.loss,
                "stopped": out.run.stopped,
                "lr": out.lr,
                "batch_size": out.batch_size,
                "steps": out.steps,
                "history": out.history,
                "workdir": out.run.workdir,
                **out.extra,
            }
        )
        if classifier_dir is not None:
            result["saved"] = classifier_dir
        if out.run.stopped == "nan":
            raise FloatingPointError(
                f"the {args.protocol} loss became NaN; lower the learning rate (--blr)."
            )
    else:
        from mim_jax.evaluate.data import load_arrays, subset
        from mim_jax.evaluate.reconstruct import reconstruction_figures

        images, _ = load_arrays(
            subset(eval_data.val, args.num_images, args.seed),
            eval_data.image_size,
            crop_fraction=eval_data.crop_fraction,
        )
        masks = args.mask or (str(config.mask),)
        ratio = args.mask_ratio if args.mask_ratio is not None else float(config.mask_ratio)
        result.update(
            reconstruction_figures(
                pretrained,
                images,
                masks,
                ratio,
                _out_dir(args),
                seed=args.seed,
                step=pretrained.step,
            )
        )
    result["seconds"] = round(time.perf_counter() - start, 2)
    path = paths.join(_out_dir(args), f"{args.protocol}.json")
    paths.write_text(path, json.dumps(result, indent=1))  # a local folder or the run's bucket
    result["result_file"] = path
    return result


def _out_dir(args) -> str:
    if args.out:
        return args.out
    if args.checkpoint:
        return paths.join(args.checkpoint, "eval" if not args.random_init else "eval_random_init")
    # A config has no workdir: out/ (ignored by git), named after the config file.
    name = os.path.splitext(os.path.basename(args.config.split(":", 1)[0]))[0]
    return os.path.join("out", "eval", f"random_init_{name}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    overrides = [r for r in rest if r.startswith("--recipe.")]
    if len(overrides) != len(rest) or (overrides and args.protocol not in RECIPE_FILES):
        parser.error(
            f"unrecognised arguments: {' '.join(rest)} (--recipe.FIELD=VALUE overrides a linear "
            "or finetune job config)"
        )
    args.recipe_overrides = [r[len("--recipe.") :] for r in overrides]
    try:
        result = run(args)
    except RunError as err:  # e.g. no usable checkpoint: its own exit code (mim_jax.core.errors)
        parser.exit(err.exit_code, f"error: {err}\n")
    except FloatingPointError as err:
        parser.exit(3, f"error: {err}\n")
    except (ValueError, FileNotFoundError) as err:
        parser.exit(2, f"error: {err}\n")
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
