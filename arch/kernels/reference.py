"""The reference ('xla') kernels: plain einsum, add, softmax; the others are tested against these.

Products that feed a softmax (query x key, and the vocabulary logits) accumulate and return float32
(`preferred_element_type`), so bfloat16 activations keep a float32 softmax.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from arch import masks


def attention(q_BxQxHxDh, k_BxKxHxDh, v_BxKxHxDh, bias_bxhxQxK, mask: masks.AttentionMask,
              dropout=None):
  """softmax(q k^T + bias, masked) v; `dropout` (or None) acts on the attention weights."""
  logits_BxHxQxK = jnp.einsum("bqhd,bkhd->bhqk", q_BxQxHxDh, k_BxKxHxDh,
                              preferred_element_type=jnp.float32)
  if bias_bxhxQxK is not None:
    logits_BxHxQxK = logits_BxHxQxK + bias_bxhxQxK.astype(jnp.float32)
  logits_BxHxQxK = jnp.where(mask.dense(), logits_BxHxQxK, masks.NEG_INF)
  weights_BxHxQxK = jax.nn.softmax(logits_BxHxQxK, axis=-1).astype(v_BxKxHxDh.dtype)
  if dropout is not None:
    weights_BxHxQxK = dropout(weights_BxHxQxK)
  return jnp.einsum("bhqk,bkhd->bqhd", weights_BxHxQxK, v_BxKxHxDh)


def vocab_dot(x_NxD, kernel_DxV):
  """The vocabulary projection of flattened tokens, float32 out."""
  return jnp.dot(x_NxD, kernel_DxV, preferred_element_type=jnp.float32)


def token_correct(logits_BxLxV, targets_BxL):
  """float32 [B, L]: 1 where the target is the argmax (the first of ties)."""
  return (jnp.argmax(logits_BxLxV, axis=-1) == targets_BxL).astype(jnp.float32)
