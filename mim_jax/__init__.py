"""mim_jax: masked image modelling pretraining in JAX/Flax with on-device, pure-function masks."""

__version__ = "0.1.0"
