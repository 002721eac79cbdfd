"""MAE pretraining: the jit-compiled, sharded train step and the pretraining job.

``mim_jax.train.run(config, workdir)`` pretrains a config from Python (notebooks);
``python -m mim_jax.train --config ... --workdir ...`` does the same from the shell and also
runs the periodic kNN evaluator that ``config.eval_every`` asks for.
"""

from mim_jax.train.pretrain import compile_step, run, step_signature
from mim_jax.train.step import CompiledStep, build_train_step, compile_train_step

__all__ = [
    "CompiledStep",
    "build_train_step",
    "compile_step",
    "compile_train_step",
    "run",
    "step_signature",
]
