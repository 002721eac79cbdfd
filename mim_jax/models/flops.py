"""Analytic, masking-aware matmul FLOP count of MAE / CrossMAE (for MFU reporting).

Counted: every matmul, at 2 FLOPs per multiply-accumulate. Not counted: LayerNorm, softmax,
GELU, residual adds, biases, position-embedding adds, gathers and the loss (all O(tokens x width),
a few percent at most). Training = 3 x forward (the backward pass costs two forward matmuls:
gradients with respect to activations and to weights).

Per sample, with N patches, K visible, c = 1 with a cls token (else 0), P = patch_dim and
``block(T, D, M) = 8*T*D^2 + 4*T^2*D + 4*T*D*M`` for a self-attention block on T tokens
(qkv 6TD^2, QK^T 2T^2 D, AV 2T^2 D, proj 2TD^2, MLP 4TDM):

- encoder on T_e = K + c tokens: ``2*K*P*D_e`` (patch embed of the visible patches only)
  ``+ depth_e * block(T_e, D_e, M_e)``;
- MAE decoder on T_d = N + c tokens, every patch decoded (Q = N):
  ``2*T_e*D_e*D_d`` (decoder embed) ``+ depth_d * block(T_d, D_d, M_d) + 2*Q*D_d*P`` (pred);
  with ``masked_only`` (the train step, Q = N - K) the last block computes keys and values for
  all T_d tokens but queries, attention rows, proj and MLP for the Q masked ones:
  ``(depth_d - 1) * block(T_d, ...) + 4*T_d*D_d^2 + 4*Q*D_d^2 + 4*Q*T_d*D_d + 4*Q*D_d*M_d``;
- CrossMAE decoder, Q queries attending to T_e encoder tokens, per block:
  ``2*Q*D_d^2`` (q) ``+ 4*T_e*D_e*D_d`` (kv) ``+ 4*Q*T_e*D_d`` (QK^T, AV) ``+ 2*Q*D_d^2`` (proj)
  ``+ 4*Q*D_d*M_d`` (MLP), plus ``8*Q*D_d^2 + 4*Q^2*D_d`` with self_attn; then ``2*Q*D_d*P``
  (pred), and ``2*F*depth_d*T_e*D_e`` for the weight_fm mix of F feature maps.
"""

from __future__ import annotations

from mim_jax.models.config import MAEConfig
from mim_jax.models.crossmae import feature_map_ids, num_queries


def block_flops(tokens: int, width: int, mlp_dim: int) -> int:
    """Forward matmul FLOPs of one self-attention block on ``tokens`` tokens."""
    t, d, m = tokens, width, mlp_dim
    return 8 * t * d * d + 4 * t * t * d + 4 * t * d * m


def cross_block_flops(
    queries: int, context: int, width: int, context_width: int, mlp_dim: int, self_attn: bool
) -> int:
    """Forward matmul FLOPs of one CrossMAE block (``queries`` attend to ``context`` tokens)."""
    q, s, d = queries, context, width
    flops = 4 * q * d * d + 4 * s * context_width * d + 4 * q * s * d + 4 * q * d * mlp_dim
    if self_attn:
        flops += 8 * q * d * d + 4 * q * q * d
    return flops


def mae_forward_flops(
    config: MAEConfig, num_visible: int, num_decoded: int | None = None
) -> dict[str, int]:
    """Per-sample forward matmul FLOPs by part (see the module docstring for the formula).

    Args:
      config: the model.
      num_visible: K, visible patches per sample (``masking.num_visible(N, ratio)``).
      num_decoded: Q, decoded patches. MAE: N (the default, ``model(x, masks)``) or N - K
        (``masked_only=True``, what the train step runs). CrossMAE: the query count (default:
        ``pred_fraction`` of the N - K masked patches).

    Returns:
      dict with ``patch_embed``, ``encoder_blocks``, ``decoder_embed``, ``feature_mix``,
      ``decoder_blocks``, ``pred`` and ``total``.
    """
    n = config.tokens.num_patches
    if not 0 < num_visible <= n:
        raise ValueError(f"num_visible must be in [1, {n}], got {num_visible}.")
    enc, dec = config.encoder, config.decoder
    c = int(config.cls_token)
    p = config.tokens.patch_dim
    t_e = num_visible + c
    parts = {
        "patch_embed": 2 * num_visible * p * enc.width,
        "encoder_blocks": enc.depth * block_flops(t_e, enc.width, enc.mlp_dim),
        "decoder_embed": 0,
        "feature_mix": 0,
    }
    if dec.kind == "mae":
        q = n if num_decoded is None else num_decoded
        if q not in (n, n - num_visible):
            raise ValueError(
                f"The MAE decoder decodes all {n} patches or the {n - num_visible} masked ones "
                f"(masked_only); got num_decoded={q}."
            )
        t_d, d, m = n + c, dec.width, dec.mlp_dim
        parts["decoder_embed"] = 2 * t_e * enc.width * d
        parts["decoder_blocks"] = dec.depth * block_flops(t_d, d, m)
        if q != n:  # masked_only: the last block's query side runs on the Q masked tokens
            last = 4 * t_d * d * d + 4 * q * d * d + 4 * q * t_d * d + 4 * q * d * m
            parts["decoder_blocks"] += last - block_flops(t_d, d, m)
    else:
        q = num_queries(n - num_visible, dec.pred_fraction) if num_decoded is None else num_decoded
        num_maps = len(feature_map_ids(dec, enc.depth))
        parts["feature_mix"] = 2 * num_maps * dec.depth * t_e * enc.width
        parts["decoder_blocks"] = dec.depth * cross_block_flops(
            q, t_e, dec.width, enc.width, dec.mlp_dim, dec.self_attn
        )
    parts["pred"] = 2 * q * dec.width * p
    parts["total"] = sum(parts.values())
    return parts


def mae_train_flops(
    config: MAEConfig, num_visible: int, num_decoded: int | None = None, batch_size: int = 1
) -> int:
    """Training matmul FLOPs for ``batch_size`` samples: ``3 * forward`` (forward + backward)."""
    return 3 * batch_size * mae_forward_flops(config, num_visible, num_decoded)["total"]
