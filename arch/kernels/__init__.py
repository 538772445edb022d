"""Backend kernels behind one switch, `TransformerConfig.attention_impl`; the network calls these.

  reference.py   'xla': plain einsum, add, softmax (the reference every other kernel is tested
                 against); argmax accuracy; the vocabulary projection as one dot
  cpu.py         'cpu': the same numbers shaped for XLA:CPU (bias gradient as a ones-GEMV, the
                 vocabulary weight gradient as a plain GEMM, accuracy without argmax)
  blockwise.py   'blockwise': online-softmax attention over key blocks, no [B, H, Q, K] residuals
  cudnn.py       'cudnn': jax.nn.dot_product_attention(implementation='cudnn') (GPU)
  pallas_tpu.py  'pallas_tpu': jax.experimental.pallas TPU flash attention (TPU)

'auto' is resolved by the platform the step compiles for: experiments' StepBuilder resolves it from
the mesh's devices (`arch.models.BaseModel.for_platform`) before anything is traced. A model traced
without that (a plain jit outside the trainer, e.g. eval) compiles for JAX's default backend, so
`resolve` falls back to that one. Per call, `select_attention` falls back to the reference where a
fused kernel cannot express the request (the ND prefix mask, attention dropout, float32 on cuDNN,
lengths the TPU kernel does not tile); the fallback is logged once per reason at trace time.
Only attention changes between 'cudnn', 'pallas_tpu', 'blockwise' and 'xla'; the vocabulary
projection and the accuracy take the 'cpu' forms only under 'cpu'.
"""

from __future__ import annotations

import logging
from typing import Optional

import jax
import jax.numpy as jnp

from arch import masks
from arch.kernels import blockwise
from arch.kernels import cpu
from arch.kernels import reference

IMPLS = ("auto", "xla", "cpu", "cudnn", "pallas_tpu", "blockwise")
AUTO_BY_PLATFORM = {"cpu": "cpu", "gpu": "cudnn", "cuda": "cudnn", "tpu": "pallas_tpu"}
# The platform each accelerator kernel compiles for (others run anywhere).
PLATFORM_OF = {"cudnn": ("gpu", "cuda"), "pallas_tpu": ("tpu",)}
_CUDNN_DTYPES = (jnp.bfloat16, jnp.float16)
_TPU_TILE = 128

_logged: set = set()


def resolve(impl: str, platform: Optional[str] = None) -> str:
  """The concrete kernel for `impl` on `platform` ('auto': cpu->cpu, gpu->cudnn, tpu->pallas_tpu)."""
  if impl != "auto":
    return impl
  # A jit with no shardings compiles for the default backend; the trainer passes its mesh's.
  platform = platform or jax.default_backend()
  return AUTO_BY_PLATFORM.get(platform, "xla")


def check_platform(impl: str, platform: str) -> Optional[str]:
  """Why `impl` cannot compile for `platform` (None when it can)."""
  allowed = PLATFORM_OF.get(impl)
  if allowed and platform not in allowed:
    return (f"attention_impl = {impl!r} runs on {' / '.join(allowed)} devices only, but the step "
            f"compiles for {platform!r}")
  return None


def select_attention(impl: str, q_BxQxHxDh, k_BxKxHxDh, mask: masks.AttentionMask,
                     dropout_active: bool) -> str:
  """The attention kernel used for this call: `impl` resolved, or 'xla' where it cannot serve."""
  impl = resolve(impl)
  reason = None
  if impl in ("cudnn", "pallas_tpu", "blockwise") and dropout_active:
    reason = "attention-weight dropout"
  elif impl in ("cudnn", "pallas_tpu", "blockwise") and mask.q_offset is not None:
    reason = "queries offset into a key/value cache (decoding)"
  elif impl in ("cudnn", "pallas_tpu") and mask.has_prefix:
    reason = "the ND prefix mask"
  elif impl == "cudnn" and q_BxQxHxDh.dtype not in _CUDNN_DTYPES:
    reason = f"{q_BxQxHxDh.dtype} activations (cuDNN takes bfloat16 / float16)"
  elif impl == "cudnn" and (q_BxQxHxDh.shape[-1] % 8 or q_BxQxHxDh.shape[-1] > 256):
    reason = f"head_dim {q_BxQxHxDh.shape[-1]} (cuDNN takes multiples of 8 up to 256)"
  elif impl == "pallas_tpu" and (q_BxQxHxDh.shape[1] % _TPU_TILE or
                                 k_BxKxHxDh.shape[1] % _TPU_TILE):
    reason = f"lengths {q_BxQxHxDh.shape[1]} x {k_BxKxHxDh.shape[1]} (not multiples of 128)"
  if reason is None:
    return impl
  if (impl, reason) not in _logged:
    _logged.add((impl, reason))
    logging.info("attention_impl %r falls back to 'xla' for %s.", impl, reason)
  return "xla"


def attend(q_BxQxHxDh, k_BxKxHxDh, v_BxKxHxDh, bias_bxhxQxK, mask: masks.AttentionMask, *,
           impl: str, dropout=None):
  """softmax(q k^T + bias, masked by `mask`) v with the selected kernel, [B, Q, H, Dh].

  bias is additive float32 ([1, H, Q, K] position bias, or None); `dropout` (a function of the
  attention weights, or None) forces the reference, the only kernel that has the weights.
  """
  chosen = select_attention(impl, q_BxQxHxDh, k_BxKxHxDh, mask, dropout is not None)
  if chosen == "cpu":
    return cpu.attention(q_BxQxHxDh, k_BxKxHxDh, v_BxKxHxDh, bias_bxhxQxK, mask, dropout)
  if chosen == "blockwise":
    return blockwise.attention(q_BxQxHxDh, k_BxKxHxDh, v_BxKxHxDh, bias_bxhxQxK, mask)
  if chosen == "cudnn":
    from arch.kernels import cudnn  # pylint: disable=g-import-not-at-top
    return cudnn.attention(q_BxQxHxDh, k_BxKxHxDh, v_BxKxHxDh, bias_bxhxQxK, mask)
  if chosen == "pallas_tpu":
    from arch.kernels import pallas_tpu  # pylint: disable=g-import-not-at-top
    return pallas_tpu.attention(q_BxQxHxDh, k_BxKxHxDh, v_BxKxHxDh, bias_bxhxQxK, mask)
  return reference.attention(q_BxQxHxDh, k_BxKxHxDh, v_BxKxHxDh, bias_bxhxQxK, mask, dropout)


def vocab_dot(impl: str):
  """The vocabulary projection [N, D] x [D, V] -> float32 [N, V] of this kernel set."""
  return cpu.vocab_dot if resolve(impl) == "cpu" else reference.vocab_dot


def token_correct(logits_BxLxV, targets_BxL, impl: str):
  """float32 [B, L]: 1 where the target is the argmax (first of ties)."""
  fn = cpu.token_correct if resolve(impl) == "cpu" else reference.token_correct
  return fn(logits_BxLxV, targets_BxL)
