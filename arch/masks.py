"""Attention masks from seqio's converted features: causal, prefix (ND), padding, packing segments.

All masks are boolean [B, 1, Q, K] (the 1 broadcasts over heads); `mask_to_bias` turns one into the
additive float bias the attention adds to its logits. `AttentionMask` keeps a mask as the per-token
vectors it is made of (validity, segment ids, the ND prefix marks, a causal flag): the reference
attention expands it with `dense()`, while blockwise and fused kernels build only the blocks they
need, or pass the causal flag and segment ids to the kernel.
"""

from __future__ import annotations

from typing import Optional

import flax.struct
import jax
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


@flax.struct.dataclass
class AttentionMask:
  """An attention mask as per-token vectors; `dense()` is the [B, 1, Q, K] boolean it stands for.

  Query i may see key j iff both are valid, they share a segment (when segment ids are given), and
  the structure allows it: every pair (causal=False), j <= i (causal), or also both marked (the ND
  prefix: causal plus the block of positions seqio marks in decoder_causal_attention).
  """

  q_valid_BxQ: jax.Array
  k_valid_BxK: jax.Array
  q_segment_BxQ: Optional[jax.Array] = None
  k_segment_BxK: Optional[jax.Array] = None
  q_marked_BxQ: Optional[jax.Array] = None
  k_marked_BxK: Optional[jax.Array] = None
  causal: bool = flax.struct.field(pytree_node=False, default=False)
  # Cached decoding (arch/decoding.py): query i is key slot q_offset + i (None: query i is key i).
  q_offset: Optional[jax.Array] = None

  @property
  def has_prefix(self) -> bool:
    return self.q_marked_BxQ is not None

  @property
  def has_segments(self) -> bool:
    return self.q_segment_BxQ is not None

  def block(self, q_idx_Q, k_idx_K, q_sl=slice(None), k_sl=slice(None)):
    """[B, 1, q, k] mask of the queries q_idx_Q (rows q_sl) against the keys k_idx_K (cols k_sl)."""
    def rows(x):
      return None if x is None else x[:, q_sl]

    def cols(x):
      return None if x is None else x[:, k_sl]

    structure = None
    if self.causal:
      structure = (q_idx_Q[:, None] >= k_idx_K[None, :])[None, None, :, :]
      if self.has_prefix:
        q_m, k_m = rows(self.q_marked_BxQ) > 0, cols(self.k_marked_BxK) > 0
        structure = structure | (q_m[:, :, None] & k_m[:, None, :])[:, None, :, :]
    seg = None
    if self.has_segments:
      seg = segment_mask(rows(self.q_segment_BxQ), cols(self.k_segment_BxK))
    return combine(structure, pair_mask(rows(self.q_valid_BxQ), cols(self.k_valid_BxK)), seg)

  def dense(self):
    """The [B, 1, Q, K] boolean mask."""
    q_len, k_len = self.q_valid_BxQ.shape[-1], self.k_valid_BxK.shape[-1]
    q_idx_Q = jnp.arange(q_len) if self.q_offset is None else self.q_offset + jnp.arange(q_len)
    return self.block(q_idx_Q, jnp.arange(k_len))


def decoder_only_attention_mask(target_tokens_BxL, segment_ids_BxL=None,
                                causal_attention_BxL=None, *, prefix: bool) -> AttentionMask:
  """`decoder_only_mask` as an AttentionMask (the same [B, 1, L, L] boolean from `dense()`)."""
  valid_BxL = target_tokens_BxL > 0
  marked = causal_attention_BxL if prefix and causal_attention_BxL is not None else None
  return AttentionMask(valid_BxL, valid_BxL, segment_ids_BxL, segment_ids_BxL, marked, marked,
                       causal=True)
