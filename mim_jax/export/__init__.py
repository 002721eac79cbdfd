"""mim_jax.export (arrives with its issue)."""
