"""CLI: export a checkpoint to timm or transformers, or start a run from imported weights.

    python -m mim_jax.export timm --checkpoint DIR --out OUT [--step N]
    python -m mim_jax.export transformers --checkpoint WORKDIR --out OUT [--step N] \\
        [--arch vit_mae|vit] [--mask-ratio R]
    python -m mim_jax.export init-run --weights FILE --config configs/X.py[:args] \\
        --workdir WORKDIR [--config.a.b=value ...]

``--checkpoint`` is a pretraining run's workdir, or (timm only) the folder a fine-tuning run saved
its classifier to, which exports with its head. ``init-run`` writes step 0 of a new run from an
MAE-layout file (see :mod:`mim_jax.export.init_run`). Prints what it wrote; bad input exits with
status 2 and a one-line reason.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from mim_jax.export.to_transformers import ARCHS

_LOAD_HINTS = {
    "timm": 'timm.create_model("local-dir:{out}", pretrained=True)',
    "vit_mae": 'transformers.ViTMAEForPreTraining.from_pretrained("{out}")',
    "vit": 'transformers.ViTModel.from_pretrained("{out}", add_pooling_layer=False)',
}
_TARGETS = "{timm,transformers,init-run}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mim_jax.export",
        description="Export a mim_jax pretraining checkpoint to PyTorch (safetensors + config).",
    )
    sub = parser.add_subparsers(dest="target", required=True, metavar=_TARGETS)
    for name, help_text in (
        ("timm", "timm VisionTransformer (encoder, with the head of a fine-tuned classifier)"),
        ("transformers", "transformers ViTMAEForPreTraining (default) or ViTModel"),
    ):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--checkpoint", required=True, help="the training run's --workdir")
        p.add_argument("--out", required=True, help="output folder (created)")
        p.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
        if name == "transformers":
            p.add_argument("--arch", choices=ARCHS, default="vit_mae", help="model class")
            p.add_argument(
                "--mask-ratio", type=float, default=None, help="ViTMAE mask ratio (default: run's)"
            )
    init = sub.add_parser("init-run", help="a new run's step-0 checkpoint from MAE-layout weights")
    init.add_argument("--weights", required=True, help=".pth / .safetensors / .npz state dict")
    init.add_argument("--config", required=True, help="configs/file.py[:key=value,...]")
    init.add_argument("--workdir", required=True, help="the new run's workdir")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the CLI; returns 0, or exits with status 2 and a message on bad input."""
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    bad = [r for r in rest if args.target != "init-run" or not r.startswith("--config.")]
    if bad:
        parser.error(f"unrecognised arguments {bad} (init-run takes --config.field=value)")
    from mim_jax.core.errors import RunError
    from mim_jax.export.to_timm import export_timm
    from mim_jax.export.to_transformers import export_transformers

    try:
        if args.target == "init-run":
            from mim_jax import configs
            from mim_jax.export.init_run import init_workdir

            config = configs.load(args.config, [r[2:] for r in rest])
            out = init_workdir(config, args.workdir, args.weights)
            print(
                f"wrote step 0 to {out}; train with python -m mim_jax.train --config "
                f"{args.config} --workdir {args.workdir} (same overrides)"
            )
            return 0
        if args.target == "timm":
            out = export_timm(args.checkpoint, args.out, step=args.step)
            hint = _LOAD_HINTS["timm"]
        else:
            out = export_transformers(
                args.checkpoint,
                args.out,
                arch=args.arch,
                step=args.step,
                mask_ratio=args.mask_ratio,
            )
            hint = _LOAD_HINTS[args.arch]
    except RunError as error:  # e.g. no usable checkpoint: its own exit code (mim_jax.core.errors)
        parser.exit(error.exit_code, f"error: {error}\n")
    except (FileNotFoundError, ImportError, ValueError) as error:
        parser.error(str(error))
    print(f"wrote {out}; load with {hint.format(out=out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
