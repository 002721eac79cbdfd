"""Evaluation of pretrained encoders: MAE's protocols on the run's own dataset.

- :mod:`~mim_jax.evaluate.linear_probe`: frozen encoder, BatchNorm + linear head, MAE's LARS
  (:mod:`~mim_jax.evaluate.lars`);
- :mod:`~mim_jax.evaluate.knn`: DINO's weighted kNN on L2-normalised features;
- :mod:`~mim_jax.evaluate.finetune`: end-to-end fine-tuning with layer-wise lr decay, drop path,
  label smoothing and mixup/cutmix (:mod:`~mim_jax.evaluate.mixup`), sharded like pretraining;
- :mod:`~mim_jax.evaluate.reconstruct`: reconstruction PNGs for any mask strategy and ratio;
- :mod:`~mim_jax.evaluate.periodic`: the cheap kNN evaluator the training loop runs every
  ``config.eval_every`` steps;
- :mod:`~mim_jax.evaluate.compare`: the masking-strategy comparison table on digits;
- :mod:`~mim_jax.core.workdir`: loading a run's checkpoint (or a random init).

Command line: ``python -m mim_jax.evaluate {linear,knn,finetune,reconstruct} --checkpoint DIR``.
Submodules are imported on use (``from mim_jax.evaluate import knn``).
"""
