"""Attention masks from seqio's converted features: causal, prefix (ND), padding, packing segments.

All masks are boolean [B, 1, Q, K] (the 1 broadcasts over heads); `mask_to_bias` turns one into the
additive float bias the attention adds to its logits.
"""

from __future__ import annotations

import jax.numpy as jnp

# Large but finite: a fully masked row (padding) then gives uniform weights instead of NaNs.
NEG_INF = -1e10


def causal_mask(length: int):
  """[1, 1, L, L]: query i sees keys j <= i."""
  idx = jnp.arange(length)
  return (idx[None, :] <= idx[:, None])[None, None, :, :]


def prefix_mask(causal_attention_BxL):
  """[B, 1, L, L]: causal, plus full attention among positions marked by decoder_causal_attention.

  seqio marks the inputs and one more position (the first target's input token), so that block is
  bidirectional and everything after it stays causal.
  """
  length = causal_attention_BxL.shape[-1]
  marked_BxL = causal_attention_BxL > 0
  both_BxLxL = marked_BxL[:, :, None] & marked_BxL[:, None, :]
  return causal_mask(length) | both_BxLxL[:, None, :, :]


def pair_mask(q_valid_BxQ, k_valid_BxK):
  """[B, 1, Q, K]: both the query and the key are real tokens."""
  return (q_valid_BxQ[:, :, None] & k_valid_BxK[:, None, :])[:, None, :, :]


def segment_mask(q_segment_BxQ, k_segment_BxK):
  """[B, 1, Q, K]: query and key belong to the same packed example."""
  return (q_segment_BxQ[:, :, None] == k_segment_BxK[:, None, :])[:, None, :, :]


def combine(*masks):
  """Logical AND of the masks given (None entries skipped)."""
  out = None
  for m in masks:
    if m is None:
      continue
    out = m if out is None else out & m
  return out


def mask_to_bias(mask_Bx1xQxK, dtype=jnp.float32):
  """0 where attention is allowed, NEG_INF where not."""
  return jnp.where(mask_Bx1xQxK, 0.0, NEG_INF).astype(dtype)


def decoder_only_mask(target_tokens_BxL, segment_ids_BxL=None, causal_attention_BxL=None,
                      *, prefix: bool):
  """The self-attention mask of the decoder-only network (CD: prefix=False; ND: prefix=True)."""
  length = target_tokens_BxL.shape[-1]
  if prefix and causal_attention_BxL is not None:
    structure = prefix_mask(causal_attention_BxL)
  else:
    structure = causal_mask(length)
  valid_BxL = target_tokens_BxL > 0
  seg = None if segment_ids_BxL is None else segment_mask(segment_ids_BxL, segment_ids_BxL)
  return combine(structure, pair_mask(valid_BxL, valid_BxL), seg)
