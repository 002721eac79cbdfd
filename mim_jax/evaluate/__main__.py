"""``python -m mim_jax.evaluate {linear,knn,finetune,reconstruct} --checkpoint WORKDIR`` (see
:mod:`mim_jax.evaluate.cli`)."""

import sys

from mim_jax import runtime
from mim_jax.evaluate.cli import main

if __name__ == "__main__":
    runtime.reexec_with_retained_memory()  # malloc keeps freed memory: see mim_jax.runtime
    sys.exit(main())
