"""A fine-tuned classifier head on top of a mim_jax encoder, as arrays (for the timm export).

The three pooling forms below are exactly timm ``VisionTransformer``'s (``x`` = the encoder's
token sequence after its blocks, cls first, ``norm`` = the encoder's final LayerNorm):

- ``global_pool="avg"`` with ``fc_norm``: ``head(fc_norm(mean(x[:, 1:])))``; the encoder's
  ``norm`` is not used. MAE's fine-tuning recipe (``models_vit.py`` with ``global_pool=True``).
- ``global_pool="avg"`` without ``fc_norm``: ``head(mean(norm(x)[:, 1:]))``.
- ``global_pool="token"``: ``head(norm(x)[:, 0])`` (the cls token), no ``fc_norm``.

The first and last are what :class:`mim_jax.evaluate.classifier.Classifier` computes with
``global_pool=True`` / ``False``; :func:`load_finetuned` reads its saved checkpoints into an
encoder and a head.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import numpy as np

from mim_jax.evaluate import classifier


@dataclasses.dataclass(frozen=True)
class ClassifierHead:
    """Weights of a linear classifier head (and its optional pre-head LayerNorm, eps 1e-6).

    Attributes:
      kernel: float[D, num_classes] (flax layout: ``logits = features @ kernel + bias``).
      bias: float[num_classes].
      global_pool: "avg" (mean of the patch tokens) or "token" (the cls token).
      fc_norm_scale, fc_norm_bias: float[D] each, or both None (no fc_norm).
    """

    kernel: Any
    bias: Any
    global_pool: Literal["avg", "token"] = "avg"
    fc_norm_scale: Any = None
    fc_norm_bias: Any = None

    def __post_init__(self) -> None:
        kernel, bias = np.asarray(self.kernel), np.asarray(self.bias)
        if kernel.ndim != 2 or bias.shape != (kernel.shape[1],):
            raise ValueError(
                f"head kernel must be [D, num_classes] and bias [num_classes]; got kernel "
                f"{kernel.shape}, bias {bias.shape}."
            )
        if self.global_pool not in ("avg", "token"):
            raise ValueError(f"global_pool must be 'avg' or 'token', got {self.global_pool!r}.")
        if (self.fc_norm_scale is None) != (self.fc_norm_bias is None):
            raise ValueError("give both fc_norm_scale and fc_norm_bias, or neither.")
        if self.has_fc_norm:
            if self.global_pool != "avg":
                raise ValueError("fc_norm goes with global_pool='avg' (as timm and MAE do).")
            for name in ("fc_norm_scale", "fc_norm_bias"):
                shape = np.asarray(getattr(self, name)).shape
                if shape != (kernel.shape[0],):
                    raise ValueError(f"{name} must be [{kernel.shape[0]}] (D), got {shape}.")

    @property
    def has_fc_norm(self) -> bool:
        return self.fc_norm_scale is not None

    @property
    def width(self) -> int:
        return int(np.asarray(self.kernel).shape[0])

    @property
    def num_classes(self) -> int:
        return int(np.asarray(self.kernel).shape[1])

    def torch_tensors(self) -> dict[str, np.ndarray]:
        """``head.weight`` [C, D], ``head.bias`` and ``fc_norm.*`` as float32 timm tensors."""
        out = {
            "head.weight": np.ascontiguousarray(np.asarray(self.kernel, np.float32).T),
            "head.bias": np.asarray(self.bias, np.float32).reshape(-1),
        }
        if self.has_fc_norm:
            out["fc_norm.weight"] = np.asarray(self.fc_norm_scale, np.float32)
            out["fc_norm.bias"] = np.asarray(self.fc_norm_bias, np.float32)
        return out


def load_finetuned(directory: Any, step: int | None = None) -> tuple[Any, ClassifierHead]:
    """``(encoder, head)`` of a classifier saved by fine-tuning
    (:func:`mim_jax.evaluate.classifier.load_finetuned`), the head as a :class:`ClassifierHead`."""
    saved = classifier.load_finetuned(directory, step)
    head = ClassifierHead(
        kernel=saved.kernel,
        bias=saved.bias,
        global_pool="avg" if saved.global_pool else "token",
        fc_norm_scale=saved.fc_norm_scale,
        fc_norm_bias=saved.fc_norm_bias,
    )
    return saved.encoder, head
