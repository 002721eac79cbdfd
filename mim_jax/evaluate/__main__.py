"""``python -m mim_jax.evaluate {linear,knn,finetune,reconstruct} --checkpoint WORKDIR`` (see
:mod:`mim_jax.evaluate.cli`)."""

import sys

from mim_jax.evaluate.cli import main

if __name__ == "__main__":
    sys.exit(main())
