"""mim_jax.models (arrives with its issue)."""
