"""mim_jax.data (arrives with its issue)."""
