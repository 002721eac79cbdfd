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


def one_device_xla_flags() -> str:
    """This session's ``XLA_FLAGS`` without the virtual device count, for a subprocess (or
    notebook kernel) that runs on one CPU device as a user's would; the other flags stay."""
    flags = os.environ.get("XLA_FLAGS", "").split()
    return " ".join(f for f in flags if not f.startswith("--xla_force_host_platform_device_count"))


# A tiny MAE (mim_jax.models.mae_model kwargs) shared by the train-step and checkpoint tests.
TINY_MAE = dict(
    image_size=32,
    patch_size=8,
    encoder_overrides=dict(width=32, depth=2, num_heads=2, mlp_dim=64),
    decoder_width=16,
    decoder_depth=1,
    decoder_num_heads=2,
)


# configs/demo.py cut down to seconds per run (``configs.load`` overrides), shared by the loop's
# resume and robustness tests; each test module adds its own total_steps and checkpoint_every.
TINY_DEMO = [
    "mask=random",
    "model.patch_size=8",
    "model.encoder_overrides.depth=1",
    "model.decoder_depth=1",
    "batch_size=16",
    "log_every=1",
    "recon_every=0",
]


def sigterm_after(cmd: list[str], line_prefix: str, **popen_kwargs) -> list[str]:
    """Runs ``cmd``, sends it SIGTERM when an output line starts with ``line_prefix`` and returns
    its output lines, once it has exited 0 after saying it saved a checkpoint."""
    import signal
    import subprocess

    child = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen_kwargs
    )
    lines = []
    for line in child.stdout:
        lines.append(line)
        if line.startswith(line_prefix):
            child.send_signal(signal.SIGTERM)
    assert child.wait(timeout=300) == 0, "".join(lines)
    assert any("SIGTERM: saved a checkpoint" in line for line in lines), "".join(lines)
    return lines
