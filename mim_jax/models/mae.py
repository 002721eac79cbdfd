"""Masked autoencoder (He et al. 2022) with an MAE or CrossMAE decoder, in Flax NNX.

Forward pass of :class:`MAE` (``facebookresearch/mae`` ``models_mae.py``, docs/mae_recipes.md):

1. ``patches = patchify(inputs)`` (float32, also the target);
2. the encoder embeds only the visible patches ``patches[masks.keep]`` with their position rows
   (cls token prepended with the zero row 0), runs its blocks and final norm;
3. MAE decoder: ``embed`` to the decoder width, append N - K mask tokens, un-shuffle with
   ``masks.restore`` into raster order, add the decoder positions, blocks, norm, ``pred`` to
   p*q*C per patch, drop cls. CrossMAE decoder: see :mod:`mim_jax.models.crossmae`;
4. :func:`mim_jax.models.loss.mae_loss` over the masked (MAE) or queried (CrossMAE) patches.

Train-step usage (pure function over ``nnx.split`` state)::

    model = mae_model("vit_base", image_size=224, patch_size=16, rngs=0)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def loss_fn(params, rest, images, masks, key):
        loss, out = nnx.merge(graphdef, params, rest)(images, masks, key=key)
        return loss, out

    grads, out = jax.grad(loss_fn, has_aux=True)(params, rest, images, masks, key)

MAE decoder parameter paths: ``decoder.embed`` [De, Dd] (embed, embed_out); ``decoder.mask_token``
[1,1,Dd]; ``decoder.pos_embed`` (FixedEmbed [cls + N, Dd]); ``decoder.blocks.{i}.*`` (as the
encoder's); ``decoder.norm``; ``decoder.pred`` [Dd, patch_dim] (embed, patch). Encoder paths are
listed in :mod:`mim_jax.models.vit` under the ``encoder.`` prefix.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import chex
import jax
import jax.numpy as jnp
from flax import nnx, struct

from mim_jax.masking import Masks
from mim_jax.models import layers
from mim_jax.models.config import DecoderConfig, DecoderKind, MAEConfig, vit_config
from mim_jax.models.crossmae import CrossMAEDecoder, num_queries, select_queries
from mim_jax.models.loss import mae_loss
from mim_jax.models.patching import PatchSpec
from mim_jax.models.posembed import sincos_pos_embed
from mim_jax.models.tokens import GatherMethod, gather_tokens
from mim_jax.models.vit import ViTEncoder, make_patch_spec


class MAEDecoder(nnx.Module):
    """MAE's lightweight decoder: self-attention over all N tokens (+ cls)."""

    def __init__(
        self,
        config: DecoderConfig,
        encoder_width: int,
        tokens: PatchSpec,
        *,
        cls_token: bool = True,
        dtype: layers.Dtype = jnp.float32,
        param_dtype: layers.Dtype = jnp.float32,
        remat: bool = False,
        gather: GatherMethod = "take",
        rngs: nnx.Rngs,
    ):
        if config.kind != "mae":
            raise ValueError(f"MAEDecoder needs kind='mae', got {config.kind!r}.")
        self.config = config
        self.tokens = tokens
        self.use_cls = cls_token
        self.dtype = dtype
        self.remat = remat
        self.gather = gather
        d = config.width
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.embed = layers.dense(encoder_width, d, ("embed", "embed_out"), **kw)
        self.mask_token = layers.token_param(d, param_dtype, rngs)
        self.pos_embed = layers.fixed_embed(sincos_pos_embed(d, tokens.grid, cls_token))
        self.blocks = nnx.List(
            [layers.Block(d, config.num_heads, config.mlp_dim, **kw) for _ in range(config.depth)]
        )
        self.norm = layers.layer_norm(d, **kw)
        self.pred = layers.dense(d, tokens.patch_dim, ("embed", "patch"), **kw)

    def unshuffle(self, latent: jax.Array, restore: jax.Array) -> jax.Array:
        """Decoder input in raster order.

        Args:
          latent: [B, cls + K, De] encoder output (visible tokens in ``masks.keep`` order).
          restore: int32[B, N] (``masks.restore``).

        Returns:
          [B, cls + N, Dd]: embedded visible tokens and mask tokens, un-shuffled so that token i is
          grid patch i, plus the decoder position embedding (cls keeps its zero row 0).
        """
        b, n = restore.shape
        c = int(self.use_cls)
        chex.assert_equal(n, self.tokens.num_patches)
        x = self.embed(latent)
        k = x.shape[1] - c
        fill = jnp.broadcast_to(self.mask_token[...].astype(x.dtype), (b, n - k, x.shape[-1]))
        x_ = gather_tokens(jnp.concatenate([x[:, c:], fill], axis=1), restore, self.gather)
        x = jnp.concatenate([x[:, :c], x_], axis=1)
        return x + self.pos_embed[...][None].astype(x.dtype)

    def __call__(
        self, latent: jax.Array, restore: jax.Array, positions: jax.Array | None = None
    ) -> jax.Array:
        """Predicted patches.

        Args:
          latent: [B, cls + K, De] encoder output.
          restore: int32[B, N] (``masks.restore``).
          positions: optional int32[B, Q] grid indices whose predictions are wanted (the masked
            ones in training). The last block, the final norm and the prediction head then run
            on those Q tokens only (every earlier block still attends over all N); the result
            equals the full prediction gathered at ``positions``.

        Returns:
          float32[B, N, patch_dim], or [B, Q, patch_dim] with ``positions``.
        """
        x = self.unshuffle(latent, restore)
        c = int(self.use_cls)
        blocks = list(self.blocks)
        if positions is not None:
            chex.assert_shape(positions, (x.shape[0], None))
            last, blocks = blocks[-1], blocks[:-1]
        for block in blocks:
            x = layers.apply_block(block, x, remat=self.remat)
        if positions is None:
            x = x[:, c:]
        else:
            at = lambda blk, x, idx: blk.at(x, idx, self.gather)
            if self.remat:
                at = jax.checkpoint(at)
            x = at(last, x, positions + c)
        return self.pred(self.norm(x)).astype(jnp.float32)


@struct.dataclass
class MAEOutput:
    """Auxiliary outputs of :meth:`MAE.__call__`.

    Q = N for MAE, N - K with ``masked_only`` (the train step), the query count for CrossMAE.

    Attributes:
      pred: float32[B, Q, patch_dim] predictions (normalised units when norm_pix_loss).
      target: float32[B, Q, patch_dim] raw patchified pixels at the same positions.
      positions: int32[B, Q] grid index of each prediction (arange(N) for MAE, ``masks.masked``
        with ``masked_only``).
      weights: float32[B, Q], 1 where the patch enters the loss (masked / queried).
    """

    pred: jax.Array
    target: jax.Array
    positions: jax.Array
    weights: jax.Array


class MAE(nnx.Module):
    """Encoder on visible tokens + MAE or CrossMAE decoder + masked-patch loss."""

    def __init__(self, config: MAEConfig, *, rngs: nnx.Rngs):
        self.config = config
        dtype, param_dtype = jnp.dtype(config.dtype), jnp.dtype(config.param_dtype)
        common = dict(
            dtype=dtype, param_dtype=param_dtype, remat=config.remat, gather=config.gather
        )
        self.encoder = ViTEncoder(
            config.encoder, config.tokens, cls_token=config.cls_token, rngs=rngs, **common
        )
        if config.decoder.kind == "mae":
            self.decoder = MAEDecoder(
                config.decoder,
                config.encoder.width,
                config.tokens,
                cls_token=config.cls_token,
                rngs=rngs,
                **common,
            )
        else:
            self.decoder = CrossMAEDecoder(
                config.decoder,
                config.encoder.width,
                config.encoder.depth,
                config.tokens,
                rngs=rngs,
                **common,
            )

    def num_queries(self, num_masked: int) -> int:
        """Decoded patches per sample: N for MAE, ``pred_fraction`` of the masked for CrossMAE."""
        if self.config.decoder.kind == "mae":
            return self.config.tokens.num_patches
        return num_queries(num_masked, self.config.decoder.pred_fraction)

    def __call__(
        self,
        inputs: jax.Array,
        masks: Masks,
        *,
        key: jax.Array | None = None,
        query_count: int | None = None,
        masked_only: bool = False,
    ) -> tuple[jax.Array, MAEOutput]:
        """Loss and predictions for a batch.

        Args:
          inputs: [B, *tokens.input_shape] channels-last images / videos / spectrograms (float).
          masks: masks over ``tokens.grid`` (from ``mim_jax.masking``), K visible per sample.
          key: CrossMAE only: PRNG key choosing the uniform random query subset of the masked
            patches (see :func:`select_queries`; ``None`` takes the first Q of ``masks.masked``).
          query_count: CrossMAE only: override the static query count (e.g. all masked patches
            for reconstructions).
          masked_only: decode just the N - K masked patches, the ones the loss reads (the
            train step does). The loss is the same; the last decoder block, the final norm and
            the head skip the visible tokens (~3% of a ViT-Tiny/16 MAE step's FLOPs, 7% of its
            CPU time), and the outputs have Q = N - K rows at ``positions = masks.masked``.
            CrossMAE decodes only its queries anyway and ignores it.

        Returns:
          ``(loss, MAEOutput)``; loss is a float32 scalar.
        """
        b = inputs.shape[0]
        n = self.config.tokens.num_patches
        chex.assert_shape(inputs, (b, *self.config.tokens.input_shape))
        chex.assert_shape(masks.restore, (b, n))
        chex.assert_rank(masks.keep, 2)
        chex.assert_equal(masks.keep.shape[0], b)
        patches = self.config.tokens.patchify(inputs).astype(jnp.float32)
        visible = gather_tokens(patches, masks.keep, self.config.gather)
        if self.config.decoder.kind == "mae":
            latent = self.encoder(visible, masks.keep)
            if masked_only:
                positions = masks.masked
                pred = self.decoder(latent, masks.restore, positions)
                target = gather_tokens(patches, positions, self.config.gather)
                weights = jnp.ones(positions.shape, jnp.float32)
            else:
                pred = self.decoder(latent, masks.restore)
                target = patches
                positions = jnp.broadcast_to(jnp.arange(n, dtype=jnp.int32), (b, n))
                weights = masks.mask.astype(jnp.float32)
        else:
            weight_fm = self.config.decoder.weight_fm
            encoded, hidden = self.encoder(visible, masks.keep, return_hidden=True)
            count = query_count or self.num_queries(masks.masked.shape[1])
            positions = select_queries(masks, count, key)
            pred = self.decoder(None if weight_fm else encoded, positions, hidden)
            target = gather_tokens(patches, positions, self.config.gather)
            weights = jnp.ones(positions.shape, jnp.float32)
        loss = mae_loss(pred, target, weights, self.config.norm_pix_loss)
        return loss, MAEOutput(pred=pred, target=target, positions=positions, weights=weights)


def mae_config(
    name: str = "vit_base",
    *,
    image_size: int | Sequence[int] = 224,
    patch_size: int | Sequence[int] = 16,
    channels: int = 3,
    num_frames: int | None = None,
    tubelet_size: int = 2,
    tokens: PatchSpec | None = None,
    decoder: DecoderKind = "mae",
    decoder_width: int = 512,
    decoder_depth: int = 8,
    decoder_num_heads: int = 16,
    decoder_mlp_dim: int | None = None,
    pred_fraction: float = 1.0,
    self_attn: bool = False,
    weight_fm: bool = False,
    use_input: bool = False,
    use_fm: Sequence[int] | None = None,
    cls_token: bool = True,
    norm_pix_loss: bool = True,
    dtype: str = "float32",
    param_dtype: str = "float32",
    remat: bool = False,
    gather: GatherMethod = "take",
    encoder_overrides: dict[str, int] | None = None,
) -> MAEConfig:
    """An :class:`MAEConfig` from flat arguments (what config files and CLIs pass).

    Args:
      name: encoder size (``vit_tiny`` .. ``vit_giant``); ``encoder_overrides`` replace fields.
      image_size, patch_size, channels: image geometry (a spectrogram is ``image_size=(T, F)``,
        ``channels=1``); ``num_frames`` + ``tubelet_size`` make it a video model; ``tokens``
        overrides all of these.
      decoder: "mae" or "crossmae"; decoder_*: its stack (MLP width defaults to 4x).
      pred_fraction, self_attn, weight_fm, use_input, use_fm: CrossMAE options (see
        :class:`DecoderConfig`).
      cls_token, norm_pix_loss, dtype, param_dtype, remat, gather: see :class:`MAEConfig`.
    """
    if tokens is None:
        tokens = make_patch_spec(image_size, patch_size, channels, num_frames, tubelet_size)
    return MAEConfig(
        encoder=vit_config(name, **(encoder_overrides or {})),
        decoder=DecoderConfig(
            kind=decoder,
            width=decoder_width,
            depth=decoder_depth,
            num_heads=decoder_num_heads,
            mlp_dim=decoder_mlp_dim or 4 * decoder_width,
            pred_fraction=pred_fraction,
            self_attn=self_attn,
            weight_fm=weight_fm,
            use_input=use_input,
            use_fm=None if use_fm is None else tuple(use_fm),
        ),
        tokens=tokens,
        cls_token=cls_token,
        norm_pix_loss=norm_pix_loss,
        dtype=jnp.dtype(dtype).name,
        param_dtype=jnp.dtype(param_dtype).name,
        remat=remat,
        gather=gather,
    )


def mae_model(name: str = "vit_base", *, rngs: nnx.Rngs | int = 0, **kwargs) -> MAE:
    """Builds an :class:`MAE`; ``kwargs`` are :func:`mae_config`'s.

    Example: ``mae_model("vit_tiny", image_size=224, patch_size=16, decoder="crossmae",
    pred_fraction=0.5, dtype="bfloat16", rngs=0)``.
    """
    if isinstance(rngs, int):
        rngs = nnx.Rngs(params=rngs)
    return MAE(mae_config(name, **kwargs), rngs=rngs)


def _plain(value: Any) -> Any:
    """ConfigDicts / mappings as dicts and lists as tuples (hashable, mae_config-ready)."""
    if hasattr(value, "items"):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return tuple(_plain(v) for v in value)
    return value


def mae_kwargs(config: Any) -> dict[str, Any]:
    """A run config's ``config.model`` as keyword arguments of :func:`mae_config`.

    ``name`` is included (``mae_config(**kwargs)`` and ``mae_model(**kwargs)`` work);
    ``encoder_overrides`` becomes a plain dict (None when empty).

    Raises:
      ValueError: a model field that :func:`mae_config` does not take.
    """
    params = inspect.signature(mae_config).parameters
    kwargs = {k: _plain(v) for k, v in config.model.items()}
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        raise ValueError(
            f"config.model has fields mae_config does not take: {', '.join(unknown)}; "
            f"valid: {', '.join(params)}."
        )
    if "encoder_overrides" in kwargs:
        kwargs["encoder_overrides"] = dict(kwargs["encoder_overrides"] or {}) or None
    return kwargs
