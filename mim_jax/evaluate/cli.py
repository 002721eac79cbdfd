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
import dataclasses
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

PROTOCOLS = ("linear", "knn", "finetune", "reconstruct")

#: Per-dataset defaults. "mae" is MAE's ImageNet recipe (linear probe: batch 16384, blr 0.1,
#: 90 epochs, 10 warmup; fine-tune: ViT-B, batch 1024, blr 5e-4, 100 epochs, 5 warmup, drop
#: path 0.1, mixup 0.8, cutmix 1.0, smoothing 0.1). "digits" is for the 1437-image digits train
#: split: MAE's LARS moves each weight matrix by about lr * 0.001 * |W| per step, so the
#: 32x fewer steps per epoch need a proportionally larger lr (measured in the evaluate README).
RECIPES: dict[str, dict[str, dict[str, Any]]] = {
    "mae": {
        "linear": dict(epochs=90, warmup_epochs=10, batch_size=16384, blr=0.1),
        "finetune": dict(
            epochs=100, warmup_epochs=5, batch_size=1024, blr=5e-4, drop_path=0.1,
            mixup=0.8, cutmix=1.0, smoothing=0.1,
        ),
    },
    "digits": {
        "linear": dict(epochs=90, warmup_epochs=10, batch_size=256, blr=20.0),
        "finetune": dict(
            epochs=30, warmup_epochs=3, batch_size=64, blr=1e-3, drop_path=0.1,
            mixup=0.0, cutmix=0.0, smoothing=0.1,
        ),
    },
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
    d.add_argument("--val-path", help="image folder for validation (folder datasets)")
    d.add_argument("--data-dir", help="TFDS data directory")
    d.add_argument("--num-classes", type=int, help="override the class count")
    d.add_argument("--train-limit", type=int, help="use a random subset of the train split")
    d.add_argument("--val-limit", type=int, help="use a random subset of the val split")
    d.add_argument(
        "--feature-batch-size", type=int, default=256, help="images per encoder forward pass"
    )


def _recipe_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--recipe",
        choices=("auto", *RECIPES),
        default="auto",
        help="default hyper-parameters: mae (ImageNet recipe) or digits; auto picks digits for "
        "digits runs, else mae. Explicit options override it.",
    )


def _linear(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("linear probe")
    _recipe_arg(g)
    g.add_argument("--pool", choices=("cls", "mean"), default="cls", help="feature (cls)")
    g.add_argument("--epochs", type=int)
    g.add_argument("--warmup-epochs", type=int)
    g.add_argument("--batch-size", type=int)
    g.add_argument("--blr", type=float, help="base lr: lr = blr * batch / 256")
    g.add_argument("--lr", type=float, help="absolute lr (overrides --blr)")
    g.add_argument("--weight-decay", type=float, default=0.0)
    g.add_argument(
        "--augment", action="store_true", help="RandomResizedCrop + flip (no feature cache)"
    )
    g.add_argument("--seed", type=int, default=0)


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
    g.add_argument("--min-lr", type=float, default=1e-6)
    g.add_argument("--layer-decay", type=float, help="default: 0.65 vit_base, 0.75 otherwise (MAE)")
    g.add_argument("--weight-decay", type=float, default=0.05)
    g.add_argument("--drop-path", type=float)
    g.add_argument("--smoothing", type=float, help="label smoothing")
    g.add_argument("--mixup", type=float, help="mixup alpha (0 = off)")
    g.add_argument("--cutmix", type=float, help="cutmix alpha (0 = off)")
    g.add_argument("--mixup-prob", type=float, default=1.0)
    g.add_argument("--switch-prob", type=float, default=0.5)
    g.add_argument(
        "--pool", choices=("avg", "cls"), default="avg", help="avg: global pool + fc_norm (MAE)"
    )
    g.add_argument("--augment", action="store_true", help="RandomResizedCrop(0.08-1) + flip")
    g.add_argument("--eval-every-epochs", type=int, default=0)
    g.add_argument("--no-save", action="store_true", help="do not save the fine-tuned model")
    g.add_argument("--seed", type=int, default=0)


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
    from mim_jax.evaluate.pretrained import load_pretrained, random_init

    if args.config:
        config = configs.load(args.config)
        return random_init(config, args.init_seed), "random init of " + args.config
    pretrained = load_pretrained(args.checkpoint, args.step)
    if args.random_init:
        return random_init(pretrained.config, args.init_seed), "random init"
    return pretrained, f"pretrained step {pretrained.step}"


def _recipe(args, config) -> dict[str, Any]:
    name = args.recipe
    if name == "auto":
        name = "digits" if config.data.source == "digits" else "mae"
    chosen = dict(RECIPES[name][args.protocol])
    for key in chosen:
        value = getattr(args, key, None)
        if value is not None:
            chosen[key] = value
    chosen["recipe"] = name
    return chosen


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Runs one protocol; returns the result dict (also written to ``<out>/<protocol>.json``)."""
    from mim_jax.evaluate.data import FeatureExtractor, eval_sources, extract_features, progress

    start = time.perf_counter()
    pretrained, what = _load_model(args)
    config = pretrained.config
    eval_data = eval_sources(
        config,
        train_split=args.train_split,
        val_split=args.val_split,
        val_path=args.val_path,
        data_dir=args.data_dir,
        num_classes=args.num_classes,
        train_limit=args.train_limit,
        val_limit=args.val_limit,
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
    }
    if args.protocol == "knn":
        from mim_jax.evaluate.knn import knn_classify

        extractor = FeatureExtractor(pretrained.encoder, args.pool, args.feature_batch_size)
        train = extract_features(extractor, eval_data.train, eval_data.image_size, name="train")
        val = extract_features(extractor, eval_data.val, eval_data.image_size, name="val")
        result["pool"] = args.pool
        result.update(
            knn_classify(
                *train, *val, num_classes=eval_data.num_classes, ks=args.k,
                temperature=args.temperature,
            )
        )  # fmt: skip
    elif args.protocol == "linear":
        from mim_jax.evaluate.linear_probe import LinearProbeConfig, linear_probe

        hp = _recipe(args, config)
        lp_config = LinearProbeConfig(
            epochs=hp["epochs"],
            warmup_epochs=hp["warmup_epochs"],
            batch_size=hp["batch_size"],
            blr=hp["blr"],
            lr=args.lr,
            weight_decay=args.weight_decay,
            seed=args.seed,
        )
        extractor = FeatureExtractor(pretrained.encoder, args.pool, args.feature_batch_size)
        out = linear_probe(extractor, eval_data, lp_config, augment=args.augment)
        result.update(pool=args.pool, recipe=hp["recipe"], **dataclasses.asdict(lp_config))
        result.update(out)
    elif args.protocol == "finetune":
        from mim_jax.evaluate.finetune import FinetuneConfig, finetune
        from mim_jax.evaluate.mixup import MixupConfig

        hp = _recipe(args, config)
        ft_config = FinetuneConfig(
            epochs=hp["epochs"],
            warmup_epochs=hp["warmup_epochs"],
            batch_size=hp["batch_size"],
            blr=hp["blr"],
            lr=args.lr,
            min_lr=args.min_lr,
            layer_decay=args.layer_decay,
            weight_decay=args.weight_decay,
            drop_path=hp["drop_path"],
            mixup=MixupConfig(
                mixup_alpha=hp["mixup"],
                cutmix_alpha=hp["cutmix"],
                prob=args.mixup_prob,
                switch_prob=args.switch_prob,
                label_smoothing=hp["smoothing"],
            ),
            global_pool=args.pool == "avg",
            augment=args.augment,
            eval_every_epochs=args.eval_every_epochs,
            seed=args.seed,
        )
        ckpt = None if args.no_save else os.path.join(_out_dir(args), "finetuned")
        out = finetune(pretrained, eval_data, ft_config, checkpoint_dir=ckpt)
        result.update(recipe=hp["recipe"], **_plain(dataclasses.asdict(ft_config)))
        result.update(out, saved=ckpt)
    else:
        from mim_jax.evaluate.data import load_arrays, subset
        from mim_jax.evaluate.reconstruct import reconstruction_figures

        images, _ = load_arrays(
            subset(eval_data.val, args.num_images, args.seed), eval_data.image_size
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
    out_dir = _out_dir(args)
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"{args.protocol}.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
    result["result_file"] = path
    return result


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _out_dir(args) -> str:
    if args.out:
        return args.out
    if args.checkpoint:
        return os.path.join(args.checkpoint, "eval" if not args.random_init else "eval_random_init")
    # A config has no workdir: out/ (ignored by git), named after the config file.
    name = os.path.splitext(os.path.basename(args.config.split(":", 1)[0]))[0]
    return os.path.join("out", "eval", f"random_init_{name}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = run(args)
    except (ValueError, FileNotFoundError) as err:
        parser.exit(2, f"error: {err}\n")
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
