"""ViT encoder (Flax NNX) for images, videos and spectrograms, by size name.

Parameter paths (``nnx.to_flat_state``), shapes and logical axes; names follow MAE/timm to keep
checkpoint conversion plain (D width, H heads, hd head width, M MLP width):

- ``patch_embed.kernel`` [patch_dim, D] (patch, embed); ``.bias`` [D] (embed,)
- ``cls_token`` [1, 1, D] (None, None, embed), only with a cls token
- ``pos_embed`` [cls + N, D] (pos, embed): a ``FixedEmbed``, not an ``nnx.Param``
- ``blocks.{i}.norm1`` / ``norm2``: ``.scale``, ``.bias`` [D] (embed,)
- ``blocks.{i}.attn.qkv.kernel`` [D, 3, H, hd] (embed, qkv, heads, kv); ``.bias`` [3, H, hd]
- ``blocks.{i}.attn.proj.kernel`` [H, hd, D] (heads, kv, embed); ``.bias`` [D]
- ``blocks.{i}.mlp.fc1.kernel`` [D, M] (embed, mlp); ``.bias`` [M] (mlp,)
- ``blocks.{i}.mlp.fc2.kernel`` [M, D] (mlp, embed); ``.bias`` [D]
- ``norm.scale``, ``norm.bias`` [D] (embed,)

The patch embedding is a Linear on patchified pixels, identical to MAE's stride-p conv: the kernel
[p*q*C, D] in (p, q, c) order reshapes to the conv's HWIO [p, q, C, D] (video: [pt, p, q, C, D]).
"""

from __future__ import annotations

from collections.abc import Sequence

import chex
import jax
import jax.numpy as jnp
from flax import nnx

from mim_jax.models import layers
from mim_jax.models.config import ViTConfig, vit_config
from mim_jax.models.patching import PatchSpec
from mim_jax.models.posembed import sincos_pos_embed
from mim_jax.models.tokens import GatherMethod, gather_tokens


class ViTEncoder(nnx.Module):
    """Pre-norm ViT over patch tokens, with fixed sin-cos position embeddings.

    The encoder takes patchified pixels (any subset of the grid, given by ``positions``), so MAE
    can embed only the visible patches. ``encode`` runs it on full inputs (fine-tune / probe).
    """

    def __init__(
        self,
        config: ViTConfig,
        tokens: PatchSpec,
        *,
        cls_token: bool = True,
        dtype: layers.Dtype = jnp.float32,
        param_dtype: layers.Dtype = jnp.float32,
        remat: bool = False,
        gather: GatherMethod = "take",
        drop_path: float = 0.0,
        rngs: nnx.Rngs,
    ):
        """Builds the encoder.

        Args:
          config: width D, depth, heads, MLP width.
          tokens: patch geometry; fixes the position table (2-D or 3-D sin-cos on its grid).
          cls_token: prepend a learned cls token (with the zero position row 0, as MAE).
          dtype: compute dtype; param_dtype: parameter dtype.
          remat: rematerialise each block in the backward pass.
          gather: token/position selection method (see :func:`gather_tokens`).
          drop_path: stochastic-depth rate of the last block; block i gets
            ``drop_path * i / (depth - 1)`` (timm's linear rule). Acts only when ``__call__`` gets
            a ``key``; the default 0 leaves the encoder exactly as without it.
          rngs: ``nnx.Rngs`` with a ``params`` stream.
        """
        self.config = config
        self.tokens = tokens
        self.use_cls = cls_token
        self.dtype = dtype
        self.remat = remat
        self.gather = gather
        d = config.width
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.patch_embed = layers.dense(tokens.patch_dim, d, ("patch", "embed"), **kw)
        self.cls_token = layers.token_param(d, param_dtype, rngs) if cls_token else None
        self.pos_embed = layers.fixed_embed(sincos_pos_embed(d, tokens.grid, cls_token))
        rates = [
            drop_path * i / max(config.depth - 1, 1) if drop_path else 0.0
            for i in range(config.depth)
        ]
        self.blocks = nnx.List(
            [
                layers.Block(d, config.num_heads, config.mlp_dim, drop_path=rate, **kw)
                for rate in rates
            ]
        )
        self.norm = layers.layer_norm(d, **kw)

    @property
    def num_prefix_tokens(self) -> int:
        """1 with a cls token, else 0: the number of tokens in front of the patch tokens."""
        return int(self.use_cls)

    def embed(self, patches: jax.Array, positions: jax.Array | None = None) -> jax.Array:
        """Patch embedding + position embedding (+ cls token).

        Args:
          patches: [B, L, patch_dim] patchified pixels (any float dtype).
          positions: int32[B, L] grid index of each patch (``masks.keep``); ``None`` means the full
            grid in raster order (L = N).

        Returns:
          [B, cls + L, D] in the compute dtype.
        """
        b, length = patches.shape[:2]
        chex.assert_shape(patches, (b, length, self.tokens.patch_dim))
        table = self.pos_embed[...]
        x = self.patch_embed(patches.astype(self.dtype))
        if positions is None:
            chex.assert_equal(length, self.tokens.num_patches)
            pos = table[self.num_prefix_tokens :][None]
        else:
            chex.assert_shape(positions, (b, length))
            pos = gather_tokens(table, positions + self.num_prefix_tokens, self.gather)
        x = x + pos.astype(x.dtype)
        if self.use_cls:
            cls = self.cls_token[...] + table[None, :1]
            x = jnp.concatenate([jnp.broadcast_to(cls.astype(x.dtype), (b, 1, x.shape[-1])), x], 1)
        return x

    def __call__(
        self,
        patches: jax.Array,
        positions: jax.Array | None = None,
        *,
        return_hidden: bool = False,
        key: jax.Array | None = None,
    ) -> jax.Array | tuple[jax.Array, list[jax.Array]]:
        """Encodes patch tokens.

        Args:
          patches: [B, L, patch_dim] pixels of the patches to encode.
          positions: int32[B, L] their grid indices, or ``None`` for the full grid.
          return_hidden: also return the hidden states.
          key: PRNG key for stochastic depth (training only); ``None`` disables it.

        Returns:
          [B, cls + L, D] final-normed tokens (compute dtype); with ``return_hidden``, also the list
          of depth + 1 un-normed hidden states (embedded input, then each block's output).
        """
        x = self.embed(patches, positions)
        hidden = [x]
        keys = [None] * len(self.blocks) if key is None else jax.random.split(key, len(self.blocks))
        for block, block_key in zip(self.blocks, keys, strict=True):
            if block_key is None:
                x = layers.apply_block(block, x, remat=self.remat)
            else:
                x = layers.apply_block(block, x, block_key, remat=self.remat)
            hidden.append(x)
        out = self.norm(x)
        return (out, hidden) if return_hidden else out

    def encode(self, inputs: jax.Array, *, key: jax.Array | None = None) -> jax.Array:
        """[B, *tokens.input_shape] raw inputs -> [B, cls + N, D] tokens (no masking).

        ``key`` enables stochastic depth (see ``drop_path``); evaluation passes none.
        """
        return self(self.tokens.patchify(inputs), key=key)


def vit_encoder(
    name: str,
    *,
    image_size: int | Sequence[int] = 224,
    patch_size: int | Sequence[int] = 16,
    channels: int = 3,
    num_frames: int | None = None,
    tubelet_size: int = 2,
    tokens: PatchSpec | None = None,
    cls_token: bool = True,
    dtype: str = "float32",
    param_dtype: str = "float32",
    remat: bool = False,
    rngs: nnx.Rngs | int = 0,
    **overrides: int,
) -> ViTEncoder:
    """A named ViT encoder (``vit_tiny`` ... ``vit_giant``).

    Images by default; ``num_frames`` gives a video encoder over (T/pt, H/p, W/p) tubelets;
    a spectrogram is a 1-channel image with ``image_size=(T, F)`` (or pass ``tokens``).
    ``overrides`` replace ViTConfig fields (e.g. ``depth=2``).
    """
    if tokens is None:
        tokens = make_patch_spec(image_size, patch_size, channels, num_frames, tubelet_size)
    if isinstance(rngs, int):
        rngs = nnx.Rngs(params=rngs)
    return ViTEncoder(
        vit_config(name, **overrides),
        tokens,
        cls_token=cls_token,
        dtype=jnp.dtype(dtype),
        param_dtype=jnp.dtype(param_dtype),
        remat=remat,
        rngs=rngs,
    )


def make_patch_spec(
    image_size: int | Sequence[int],
    patch_size: int | Sequence[int],
    channels: int = 3,
    num_frames: int | None = None,
    tubelet_size: int = 2,
) -> PatchSpec:
    """Image PatchSpec, or a video one when ``num_frames`` is given."""
    if num_frames is None:
        return PatchSpec.image(image_size, patch_size, channels)
    return PatchSpec.video(num_frames, image_size, patch_size, tubelet_size, channels)
