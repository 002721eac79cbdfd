"""mim_jax.train (arrives with its issue)."""
