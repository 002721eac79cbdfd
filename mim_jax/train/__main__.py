"""``python -m mim_jax.train --config configs/X.py[:args] --workdir DIR [--config.a.b=value ...]``.

Rerunning the same command resumes from the last complete checkpoint in DIR. ``--max-steps N``
stops (with a checkpoint) after N steps of this invocation, e.g. to fit a job's time limit.

Multi-process runs (TPU pod slices, SLURM jobs, several local processes) run the same command in
every process; ``--distributed`` and ``--coordinator/--num-processes/--process-id`` say how the
processes find each other (see :mod:`mim_jax.core.distributed`). The workdir must be a place every
process sees: a bucket URL (``gs://bucket/run``, with ``pip install 'mim_jax[gcs]'``), a shared
disk, or a bucket mounted on every host.

``--print-config`` prints the resolved config (after overrides) as JSON and exits; every run
writes it to ``WORKDIR/config.json`` when it starts.

Exit status: 0 finished, paused or preempted (rerun to resume); 2 bad arguments or config;
3 the loss became NaN.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from mim_jax import runtime

EXIT_CODES = {"finished": 0, "paused": 0, "preempted": 0, "nan": 3}


def main(argv: Sequence[str] | None = None) -> int:
    from mim_jax.core import distributed

    parser = argparse.ArgumentParser(
        prog="python -m mim_jax.train",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", required=True, help="configs/file.py[:key=value,...]")
    parser.add_argument(
        "--workdir", help="checkpoints, metrics and pictures go here (required to train)"
    )
    parser.add_argument(
        "--print-config",
        action="store_true",
        help="print the resolved config (after overrides) as JSON and exit; a run also writes "
        "it to WORKDIR/config.json",
    )
    parser.add_argument(
        "--max-steps", type=int, default=None, help="stop after this many steps (then rerun)"
    )
    distributed.add_arguments(parser)
    args, rest = parser.parse_known_args(argv)
    bad = [r for r in rest if not r.startswith("--config.")]
    if bad:
        parser.error(f"unrecognised arguments {bad}; overrides look like --config.field=value")
    if args.print_config:
        from mim_jax import configs

        try:
            print(configs.to_json(configs.load(args.config, [r[2:] for r in rest])), end="")
        except ValueError as err:
            parser.exit(2, f"error: {err}\n")
        return 0
    if not args.workdir:
        parser.error("the following arguments are required: --workdir")
    if args.max_steps is not None and args.max_steps < 1:
        parser.error(f"--max-steps must be >= 1, got {args.max_steps}")

    try:
        # Before anything starts JAX's backend: joining other processes changes the devices.
        group = distributed.initialize(distributed.from_args(args))
    except ValueError as err:
        parser.exit(2, f"error: {err}\n")
    if group is not None:
        print(distributed.describe(), flush=True)

    from mim_jax import configs
    from mim_jax.evaluate.periodic import run_pretraining

    try:
        config = configs.load(args.config, [r[2:] for r in rest])
        result = run_pretraining(config, args.workdir, max_steps=args.max_steps)
    except ValueError as err:
        parser.exit(2, f"error: {err}\n")
    return EXIT_CODES[result.stopped]


if __name__ == "__main__":
    runtime.reexec_with_retained_memory()  # malloc keeps freed memory: see mim_jax.runtime
    sys.exit(main())
