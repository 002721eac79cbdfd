"""``python -m mim_jax.bench``: see :mod:`mim_jax.bench.cli`."""

import sys

from mim_jax import runtime
from mim_jax.bench.cli import main

if __name__ == "__main__":
    runtime.reexec_with_retained_memory()  # malloc keeps freed memory: see mim_jax.runtime
    sys.exit(main())
