"""'pallas_tpu' attention: JAX's Pallas TPU flash attention with the bias and segment ids.

Unpacked rows pass validity as segment ids (1 real, 0 padding); packed rows their segment ids
(padding is 0). The ND prefix mask, dropout and lengths that are not multiples of 128 go to the
reference instead (arch/kernels/__init__.py: select_attention). Untested on this project's CPU CI
beyond that selection: it compiles on TPUs only.
"""

from __future__ import annotations

import jax.numpy as jnp
from jax.experimental.pallas.ops.tpu import flash_attention as tpu_flash

from arch import masks


def attention(q_BxQxHxDh, k_BxKxHxDh, v_BxKxHxDh, bias_bxhxQxK, mask: masks.AttentionMask):
  """TPU flash attention ([B, H, L, Dh] layout inside), scale folded into the query (T5)."""
  if mask.has_segments:
    q_seg, k_seg = mask.q_segment_BxQ, mask.k_segment_BxK
  else:
    q_seg, k_seg = mask.q_valid_BxQ, mask.k_valid_BxK
  segment_ids = tpu_flash.SegmentIds(q=q_seg.astype(jnp.int32), kv=k_seg.astype(jnp.int32))
  b, q_len, h, _ = q_BxQxHxDh.shape
  ab = None
  if bias_bxhxQxK is not None:  # the kernel takes a full [B, H, Q, K] bias
    ab = jnp.broadcast_to(bias_bxhxQxK.astype(jnp.float32),
                          (b, h, q_len, k_BxKxHxDh.shape[1]))
  to_bhld = lambda x: jnp.transpose(x, (0, 2, 1, 3))  # noqa: E731
  out_BxHxQxDh = tpu_flash.flash_attention(
      to_bhld(q_BxQxHxDh), to_bhld(k_BxKxHxDh), to_bhld(v_BxKxHxDh), ab=ab,
      segment_ids=segment_ids, causal=mask.causal, sm_scale=1.0)
  return to_bhld(out_BxHxQxDh)
