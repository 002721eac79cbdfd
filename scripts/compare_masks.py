"""Masking strategy vs linear-probe / kNN accuracy on digits (see mim_jax.evaluate.compare).

python scripts/compare_masks.py --steps 600 --seeds 0,1,2 --workdir /tmp/mim_compare
"""

import sys

from mim_jax.evaluate.compare import main

if __name__ == "__main__":
    sys.exit(main())
