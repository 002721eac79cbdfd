"""mim_jax: masked image modelling pretraining in JAX/Flax with on-device, pure-function masks."""

from mim_jax import moved as _moved

__version__ = "0.1.0"
_moved.install()
