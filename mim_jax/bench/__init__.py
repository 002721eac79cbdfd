"""Benchmarks (``python -m mim_jax.bench``): mask throughput, the train step against PyTorch,
its matmul floor and the compile-ahead memory plan; JSON lines out (see :mod:`mim_jax.bench.cli`).
"""
