"""CrossMAE decoder: queries at a subset of the masked positions cross-attend to the encoder.

After Fu et al., "Rethinking Patch Dependence for Masked Autoencoders" (``TonyLianLong/CrossMAE``
``models_cross.py`` / ``transformer_utils.py``; docs/mae_recipes.md, "CrossMAE"):

- each query is ``mask_token + decoder_pos_embed[position]`` (no visible tokens in the decoder);
- blocks are pre-norm: ``x += CrossAttn(LN(x), y); x += MLP(LN(x))``, with an optional
  ``x += SelfAttn(LN(x))`` in front (off by default, so every query is independent and any
  subset can be decoded at a cost linear in the number of queries);
- K/V come from ``y``, the encoder output, projected from the encoder width to the decoder width
  inside every block (``kv = Linear(encoder_dim, 2 * decoder_dim)``);
- ``weight_fm``: block i reads ``LN_i(sum_k W[k, i] * feature_map_k)``, a learned mix of encoder
  hidden states (optionally the embedded input too), W ~ N(0, 1/sqrt(K)), no bias; the encoder's
  final norm is then unused;
- the loss covers only the queried tokens.

Parameter paths: ``mask_token`` [1,1,Dd]; ``pos_embed`` (FixedEmbed [N, Dd], no cls row);
``feature_mix.weight`` [K, depth] and ``feature_norms.{i}`` (weight_fm); ``blocks.{i}.norm0`` /
``self_attn`` (self_attn); ``blocks.{i}.norm1``, ``.cross_attn.q`` [Dd, H, hd],
``.cross_attn.kv`` [De, 2, H, hd], ``.cross_attn.proj``, ``.norm2``, ``.mlp.fc1/fc2``; ``norm``;
``pred`` [Dd, patch_dim].
"""

from __future__ import annotations

import math

import chex
import jax
import jax.numpy as jnp
from flax import nnx

from mim_jax.masking import Masks
from mim_jax.models import layers
from mim_jax.models.config import DecoderConfig
from mim_jax.models.patching import PatchSpec
from mim_jax.models.posembed import sincos_pos_embed
from mim_jax.models.tokens import GatherMethod, gather_tokens


def num_queries(num_masked: int, fraction: float) -> int:
    """Static query count: ``floor(num_masked * fraction + 1/2)``, at least 1, at most num_masked.

    The nearest-integer rule is the masking library's; it avoids CrossMAE's float-sensitive
    ``int(L * (mask_ratio - kept_mask_ratio))`` (ViT-H: 147 masked x 1/3 -> 49 queries).
    """
    return min(num_masked, max(1, math.floor(num_masked * fraction + 0.5)))


def select_queries(masks: Masks, count: int, key: jax.Array | None = None) -> jax.Array:
    """Grid indices of the masked patches that get a decoder query.

    Args:
      masks: a batch of masks (``masks.masked`` is int32[B, M]).
      count: static number of queries Q, 1 <= Q <= M.
      key: PRNG key. Given, each sample gets a uniformly random Q-subset of its masked set (what
        CrossMAE draws). ``None`` takes the first Q entries of ``masks.masked``: uniform for the
        "random" strategy, whose masked list is in random (noise) order, but **biased** for
        strategies that list masked patches in raster order (block, grid, tube) or by score
        (colour noise). Pass a key unless you know the order is random.

    Returns:
      int32[B, Q].
    """
    b, m = masks.masked.shape
    if not 1 <= count <= m:
        raise ValueError(f"Query count must be in [1, {m}] (masked patches), got {count}.")
    if count == m:
        return masks.masked
    if key is None:
        return masks.masked[:, :count]
    scores = jax.random.uniform(key, (b, m), jnp.float32)
    _, pick = jax.lax.top_k(scores, count)
    return jnp.take_along_axis(masks.masked, pick.astype(jnp.int32), axis=1)


class CrossBlock(nnx.Module):
    """Pre-norm cross-attention block ([B, Q, Dd], [B, Lk, De] -> [B, Q, Dd])."""

    def __init__(
        self,
        width: int,
        context_width: int,
        num_heads: int,
        mlp_dim: int,
        *,
        self_attn: bool = False,
        dtype: layers.Dtype,
        param_dtype: layers.Dtype,
        rngs: nnx.Rngs,
    ):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        if self_attn:
            self.norm0 = layers.layer_norm(width, **kw)
            self.self_attn = layers.SelfAttention(width, num_heads, **kw)
        else:
            self.norm0 = self.self_attn = None
        self.norm1 = layers.layer_norm(width, **kw)
        self.cross_attn = layers.CrossAttention(width, context_width, num_heads, **kw)
        self.norm2 = layers.layer_norm(width, **kw)
        self.mlp = layers.Mlp(width, mlp_dim, **kw)

    def __call__(self, x: jax.Array, context: jax.Array) -> jax.Array:
        if self.self_attn is not None:
            x = x + self.self_attn(self.norm0(x))
        x = x + self.cross_attn(self.norm1(x), context)
        return x + self.mlp(self.norm2(x))


class FeatureMix(nnx.Module):
    """Per-decoder-layer learned mix of K encoder feature maps (CrossMAE ``WeightedFeatureMaps``).

    ``weight`` [K, depth] ~ N(0, 1/sqrt(K)), no bias; out[i] = sum_k weight[k, i] * maps[k].
    """

    def __init__(self, num_maps: int, depth: int, *, param_dtype: layers.Dtype, rngs: nnx.Rngs):
        init = layers.partitioned(
            nnx.initializers.normal(1.0 / math.sqrt(num_maps)), ("feature_maps", "layers")
        )
        self.weight = nnx.Param(init(rngs.params(), (num_maps, depth), param_dtype))

    def __call__(self, maps: list[jax.Array]) -> jax.Array:
        """K arrays [B, L, De] -> [depth, B, L, De] (dtype of the maps)."""
        chex.assert_equal(len(maps), self.weight.shape[0])
        stacked = jnp.stack(maps, axis=0)
        return jnp.einsum("kbld,kj->jbld", stacked, self.weight[...].astype(stacked.dtype))


class CrossMAEDecoder(nnx.Module):
    """Decodes pixels at chosen grid positions from the encoder output by cross-attention."""

    def __init__(
        self,
        config: DecoderConfig,
        encoder_width: int,
        encoder_depth: int,
        tokens: PatchSpec,
        *,
        dtype: layers.Dtype = jnp.float32,
        param_dtype: layers.Dtype = jnp.float32,
        remat: bool = False,
        gather: GatherMethod = "take",
        rngs: nnx.Rngs,
    ):
        """Builds the decoder.

        Args:
          config: decoder stack and CrossMAE options (``kind`` must be "crossmae").
          encoder_width: De, the width of the K/V source.
          encoder_depth: number of encoder blocks (resolves ``use_fm``).
          tokens: patch geometry (position grid, prediction size ``patch_dim``).
        """
        if config.kind != "crossmae":
            raise ValueError(f"CrossMAEDecoder needs kind='crossmae', got {config.kind!r}.")
        self.config = config
        self.tokens = tokens
        self.dtype = dtype
        self.remat = remat
        self.gather = gather
        d = config.width
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.feature_ids = feature_map_ids(config, encoder_depth)
        self.mask_token = layers.token_param(d, param_dtype, rngs)
        self.pos_embed = layers.fixed_embed(sincos_pos_embed(d, tokens.grid, cls_token=False))
        if config.weight_fm:
            self.feature_mix = FeatureMix(
                len(self.feature_ids), config.depth, param_dtype=param_dtype, rngs=rngs
            )
            self.feature_norms = nnx.List(
                [layers.layer_norm(encoder_width, **kw) for _ in range(config.depth)]
            )
        else:
            self.feature_mix = self.feature_norms = None
        self.blocks = nnx.List(
            [
                CrossBlock(
                    d,
                    encoder_width,
                    config.num_heads,
                    config.mlp_dim,
                    self_attn=config.self_attn,
                    **kw,
                )
                for _ in range(config.depth)
            ]
        )
        self.norm = layers.layer_norm(d, **kw)
        self.pred = layers.dense(d, tokens.patch_dim, ("embed", "patch"), **kw)

    def queries(self, positions: jax.Array) -> jax.Array:
        """int32[B, Q] grid positions -> [B, Q, Dd] initial queries (mask token + position)."""
        pos = gather_tokens(self.pos_embed[...], positions, self.gather)
        return (self.mask_token[...] + pos).astype(self.dtype)

    def __call__(
        self,
        encoded: jax.Array | None,
        positions: jax.Array,
        hidden: list[jax.Array] | None = None,
    ) -> jax.Array:
        """Predicts the pixels of the patches at ``positions``.

        Args:
          encoded: [B, Lk, De] final-normed encoder output (cls + visible tokens); used unless
            ``weight_fm`` (may then be None).
          positions: int32[B, Q] grid indices to decode (e.g. from :func:`select_queries`).
          hidden: the encoder's depth + 1 hidden states (``return_hidden=True``); needed with
            ``weight_fm``.

        Returns:
          float32[B, Q, patch_dim].
        """
        chex.assert_rank(positions, 2)
        if self.config.weight_fm:
            if hidden is None:
                raise ValueError("weight_fm needs the encoder hidden states (hidden=...).")
            mixed = self.feature_mix([hidden[i] for i in self.feature_ids])
            contexts = [norm(mixed[i]) for i, norm in enumerate(self.feature_norms)]
        else:
            chex.assert_rank(encoded, 3)
            chex.assert_equal(encoded.shape[0], positions.shape[0])
            contexts = [encoded] * self.config.depth
        x = self.queries(positions)
        for block, context in zip(self.blocks, contexts, strict=True):
            x = layers.apply_block(block, x, context, remat=self.remat)
        return self.pred(self.norm(x)).astype(jnp.float32)


def feature_map_ids(config: DecoderConfig, encoder_depth: int) -> tuple[int, ...]:
    """Indices into the encoder's hidden states (0 = embedded input, i + 1 = block i output)."""
    if not config.weight_fm:
        return ()
    blocks = range(encoder_depth) if config.use_fm is None else config.use_fm
    ids = []
    for i in blocks:
        j = i + encoder_depth if i < 0 else i
        if not 0 <= j < encoder_depth:
            raise ValueError(f"use_fm index {i} is out of range for {encoder_depth} blocks.")
        ids.append(j + 1)
    return ((0,) if config.use_input else ()) + tuple(ids)
