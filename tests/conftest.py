"""Test-session setup: 8 virtual CPU devices, so sharded paths run on this machine.

XLA reads ``XLA_FLAGS`` once, when JAX first initialises its backend, so this runs before any test
module imports JAX. Single-device code still runs on device 0. The tests' programs are tiny and
compile time dominates them, so XLA's CPU backend optimisation is lowered too (numerics are the
same up to float rounding; benchmarks never run under this file).
"""

import os

_FLAGS = ("--xla_force_host_platform_device_count=8", "--xla_backend_optimization_level=0")
_current = os.environ.get("XLA_FLAGS", "")
os.environ["XLA_FLAGS"] = " ".join(
    [_current, *(f for f in _FLAGS if f.split("=")[0] not in _current)]
).strip()


# A tiny MAE (mim_jax.models.mae_model kwargs) shared by the train-step and checkpoint tests.
TINY_MAE = dict(
    image_size=32,
    patch_size=8,
    encoder_overrides=dict(width=32, depth=2, num_heads=2, mlp_dim=64),
    decoder_width=16,
    decoder_depth=1,
    decoder_num_heads=2,
)
