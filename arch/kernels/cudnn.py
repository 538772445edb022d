"""'cudnn' attention: jax.nn.dot_product_attention(implementation='cudnn') on GPUs.

Takes the [1, H, Q, K] position bias and the causal flag; trailing padding of unpacked rows goes as
sequence lengths, packed segments as a [B, 1, Q, K] boolean mask. The ND prefix mask, dropout and
float32 activations go to the reference instead (arch/kernels/__init__.py: select_attention).
Untested on this project's CPU CI beyond that selection: it compiles on GPUs only.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from arch import masks


def attention(q_BxQxHxDh, k_BxKxHxDh, v_BxKxHxDh, bias_bxhxQxK, mask: masks.AttentionMask):
  """cuDNN flash attention with the scale already folded into the query (T5)."""
  kwargs = {}
  if mask.has_segments:
    kwargs["mask"] = mask.dense()
  else:  # unpacked seqio rows: the valid tokens are a prefix of each row
    kwargs["query_seq_lengths"] = jnp.sum(mask.q_valid_BxQ, axis=-1, dtype=jnp.int32)
    kwargs["key_value_seq_lengths"] = jnp.sum(mask.k_valid_BxK, axis=-1, dtype=jnp.int32)
  bias = None if bias_bxhxQxK is None else bias_bxhxQxK.astype(q_BxQxHxDh.dtype)
  return jax.nn.dot_product_attention(q_BxQxHxDh, k_BxKxHxDh, v_BxKxHxDh, bias=bias, scale=1.0,
                                      is_causal=mask.causal, implementation="cudnn", **kwargs)
