"""mim_jax.evaluate (arrives with its issue)."""
