"""Static model configuration: ViT sizes, decoder choices and the MAE bundle (no flax imports).

Everything here is a frozen, hashable dataclass, so a config can be a static argument of
``jax.jit`` and is shared by the modules (:mod:`mim_jax.models.mae`) and the analytic FLOP count
(:mod:`mim_jax.models.flops`).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from mim_jax.models.patching import PatchSpec

DecoderKind = Literal["mae", "crossmae"]


@dataclasses.dataclass(frozen=True)
class ViTConfig:
    """Width, depth, heads and MLP width of a transformer stack (encoder or decoder)."""

    width: int
    depth: int
    num_heads: int
    mlp_dim: int

    def __post_init__(self) -> None:
        for field in ("width", "depth", "num_heads", "mlp_dim"):
            value = getattr(self, field)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"ViTConfig.{field} must be a positive int, got {value!r}.")
        if self.width % self.num_heads:
            raise ValueError(
                f"ViTConfig: width {self.width} is not divisible by num_heads {self.num_heads}."
            )

    @property
    def head_dim(self) -> int:
        return self.width // self.num_heads


# Standard ViT sizes (ViT paper / DeiT / timm; giant = ViT-g/14 of Zhai et al., "Scaling Vision
# Transformers", width 1408, depth 40, 16 heads, MLP 6144, i.e. ratio 48/11). MLP ratio 4 otherwise.
VIT_SIZES: dict[str, ViTConfig] = {
    "vit_tiny": ViTConfig(width=192, depth=12, num_heads=3, mlp_dim=768),
    "vit_small": ViTConfig(width=384, depth=12, num_heads=6, mlp_dim=1536),
    "vit_base": ViTConfig(width=768, depth=12, num_heads=12, mlp_dim=3072),
    "vit_large": ViTConfig(width=1024, depth=24, num_heads=16, mlp_dim=4096),
    "vit_huge": ViTConfig(width=1280, depth=32, num_heads=16, mlp_dim=5120),
    "vit_giant": ViTConfig(width=1408, depth=40, num_heads=16, mlp_dim=6144),
}


def vit_config(name: str, **overrides: int) -> ViTConfig:
    """The named ViT size, with optional field overrides (e.g. ``depth=2`` for tests).

    Raises:
      ValueError: for an unknown name or field.
    """
    if name not in VIT_SIZES:
        raise ValueError(f"Unknown ViT size {name!r}; valid names: {sorted(VIT_SIZES)}.")
    fields = {f.name for f in dataclasses.fields(ViTConfig)}
    unknown = set(overrides) - fields
    if unknown:
        raise ValueError(f"Unknown ViTConfig fields {sorted(unknown)}; valid: {sorted(fields)}.")
    return dataclasses.replace(VIT_SIZES[name], **overrides)


@dataclasses.dataclass(frozen=True)
class DecoderConfig:
    """The MAE-family decoder.

    Attributes:
      kind: "mae" (self-attention over all N tokens, He et al. 2022) or "crossmae" (queries
        cross-attend to the encoder output, Fu et al. 2024, ``TonyLianLong/CrossMAE``).
      width, depth, num_heads, mlp_dim: transformer stack of the decoder (MAE default 512/8/16).
      pred_fraction: CrossMAE only: fraction of the masked positions that get a query and enter
        the loss (1.0 decodes every masked patch). CrossMAE's ``kept_mask_ratio`` is a fraction of
        *all* patches, so ``pred_fraction = kept_mask_ratio / mask_ratio`` (ViT-H recipe 0.25/0.75).
      self_attn: CrossMAE only: add a self-attention sublayer among the queries (reference
        default False; with it, a query's output depends on the other queries).
      weight_fm: CrossMAE only: each decoder block reads its own learned mix of encoder feature
        maps (``--weight_fm``) instead of the encoder's final normed output.
      use_input: CrossMAE + weight_fm: include the embedded encoder input as a feature map.
      use_fm: CrossMAE + weight_fm: encoder block indices whose outputs are mixed (negative
        indices count from the end); ``None`` means every block, as the reference's ``[-1]``.
    """

    kind: DecoderKind = "mae"
    width: int = 512
    depth: int = 8
    num_heads: int = 16
    mlp_dim: int = 2048
    pred_fraction: float = 1.0
    self_attn: bool = False
    weight_fm: bool = False
    use_input: bool = False
    use_fm: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("mae", "crossmae"):
            raise ValueError(f"DecoderConfig.kind must be 'mae' or 'crossmae', got {self.kind!r}.")
        ViTConfig(self.width, self.depth, self.num_heads, self.mlp_dim)  # validates the stack
        if not 0.0 < float(self.pred_fraction) <= 1.0:
            raise ValueError(f"pred_fraction must lie in (0, 1], got {self.pred_fraction}.")
        if self.kind == "mae" and (
            self.pred_fraction != 1.0 or self.self_attn or self.weight_fm or self.use_input
        ):
            raise ValueError(
                "pred_fraction, self_attn, weight_fm and use_input are CrossMAE options; "
                "set kind='crossmae' to use them."
            )
        if (self.use_input or self.use_fm is not None) and not self.weight_fm:
            raise ValueError("use_input and use_fm need weight_fm=True (as in CrossMAE).")

    @property
    def stack(self) -> ViTConfig:
        return ViTConfig(self.width, self.depth, self.num_heads, self.mlp_dim)


@dataclasses.dataclass(frozen=True)
class MAEConfig:
    """Everything that fixes an MAE model's parameters and compute.

    Attributes:
      encoder: the ViT encoder stack.
      decoder: the decoder choice and stack.
      tokens: patch geometry (token grid, patch extent, channels); see :class:`PatchSpec`.
      cls_token: prepend a learned cls token to the encoder sequence (MAE: True).
      norm_pix_loss: per-patch normalised pixel targets (MAE's released models: True).
      dtype: compute dtype name ("float32" or "bfloat16").
      param_dtype: parameter dtype name (keep "float32").
      remat: rematerialise each transformer block in the backward pass (saves activation memory).
      gather: "take" (XLA gather) or "onehot" (one-hot matmul; faster on TPU, exact only in
        bf16 or with HIGHEST precision) for selecting tokens by index.
    """

    encoder: ViTConfig
    decoder: DecoderConfig
    tokens: PatchSpec
    cls_token: bool = True
    norm_pix_loss: bool = True
    dtype: str = "float32"
    param_dtype: str = "float32"
    remat: bool = False
    gather: Literal["take", "onehot"] = "take"

    def __post_init__(self) -> None:
        if self.gather not in ("take", "onehot"):
            raise ValueError(f"gather must be 'take' or 'onehot', got {self.gather!r}.")
