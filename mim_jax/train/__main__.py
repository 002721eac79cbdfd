"""``python -m mim_jax.train --config configs/X.py[:args] --workdir DIR [--config.a.b=value ...]``.

Rerunning the same command resumes from the last complete checkpoint in DIR.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mim_jax.train", description=__doc__)
    parser.add_argument("--config", required=True, help="configs/file.py[:key=value,...]")
    parser.add_argument(
        "--workdir", required=True, help="checkpoints, metrics and pictures go here"
    )
    args, rest = parser.parse_known_args(argv)
    bad = [r for r in rest if not r.startswith("--config.")]
    if bad:
        parser.error(f"unrecognised arguments {bad}; overrides look like --config.field=value")

    from mim_jax import configs
    from mim_jax.train.loop import run

    try:
        config = configs.load(args.config, [r[2:] for r in rest])
        result = run(config, args.workdir)
    except ValueError as err:
        parser.exit(2, f"error: {err}\n")
    return {"finished": 0, "preempted": 0, "nan": 3}[result.stopped]


if __name__ == "__main__":
    sys.exit(main())
