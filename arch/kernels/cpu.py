"""The 'cpu' kernels: the reference's numbers, shaped for XLA:CPU (figures in benchmarks/README.md).

- attention: the mask enters as an additive bias, and the [1, H, Q, K] position bias meets it
  through `broadcast_add`, whose gradient sums the batch axis as a ones-GEMV (YNNPACK's outer-axis
  reduction is slow);
- vocab_dot: the vocabulary weight gradient multiplies a materialized x^T, a plain GEMM;
- token_correct: argmax == target without argmax's (value, index) reduction pass.
The values agree with arch/kernels/reference.py up to float32 summation order
(tests/test_arch_kernels.py).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp

from arch import masks


def attention(q_BxQxHxDh, k_BxKxHxDh, v_BxKxHxDh, bias_bxhxQxK, mask: masks.AttentionMask,
              dropout=None):
  """The reference attention with the mask as an additive bias joined by `broadcast_add`."""
  full_bias = masks.mask_to_bias(mask.dense())
  if bias_bxhxQxK is not None:
    full_bias = broadcast_add(full_bias, bias_bxhxQxK.astype(jnp.float32))
  logits_BxHxQxK = jnp.einsum("bqhd,bkhd->bhqk", q_BxQxHxDh, k_BxKxHxDh,
                              preferred_element_type=jnp.float32)
  weights_BxHxQxK = jax.nn.softmax(logits_BxHxQxK + full_bias, axis=-1).astype(v_BxKxHxDh.dtype)
  if dropout is not None:
    weights_BxHxQxK = dropout(weights_BxHxQxK)
  return jnp.einsum("bhqk,bkhd->bqhd", weights_BxHxQxK, v_BxKxHxDh)


def broadcast_add(x, y):
  """x + y with numpy broadcasting; the gradient sums broadcast leading axes as a ones-GEMV."""
  x_shape, y_shape = tuple(jnp.shape(x)), tuple(jnp.shape(y))
  if x_shape == y_shape:
    return x + y
  return _add_with_gemv_unbroadcast((x_shape, jnp.result_type(x)), (y_shape, jnp.result_type(y)),
                                    x, y)


def _sum_to_shape(g, shape):
  """Sums the cotangent g down to the broadcast-compatible `shape`; leading axes as a GEMV."""
  full = (1,) * (g.ndim - len(shape)) + tuple(shape)
  lead = 0
  while lead < g.ndim and full[lead] == 1:
    lead += 1
  lead_size = math.prod(g.shape[:lead])
  if lead_size > 1:
    summed = jnp.dot(jnp.ones((lead_size,), g.dtype), g.reshape(lead_size, -1),
                     preferred_element_type=jnp.float32)
    g = summed.astype(g.dtype).reshape((1,) * lead + g.shape[lead:])
  rest = tuple(d for d in range(lead, g.ndim) if full[d] == 1 and g.shape[d] != 1)
  if rest:
    g = jnp.sum(g, axis=rest, keepdims=True)
  return g.reshape(shape)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _add_with_gemv_unbroadcast(x_aval, y_aval, x, y):
  """x + y; x_aval and y_aval are the operands' static (shape, dtype), which the cotangents take."""
  del x_aval, y_aval
  return x + y


def _add_with_gemv_unbroadcast_fwd(x_aval, y_aval, x, y):
  del x_aval, y_aval
  return x + y, None


def _add_with_gemv_unbroadcast_bwd(x_aval, y_aval, _, g):
  return tuple(_sum_to_shape(g, shape).astype(dtype) for shape, dtype in (x_aval, y_aval))


_add_with_gemv_unbroadcast.defvjp(_add_with_gemv_unbroadcast_fwd, _add_with_gemv_unbroadcast_bwd)


@jax.custom_vjp
def vocab_dot(x_NxI, kernel_IxO):
  """x @ kernel whose weight gradient multiplies a materialized x^T (the same numbers).

  XLA:CPU hands x^T @ dy written as one dot contracting dim 0 of both operands to Eigen; with x^T
  materialized (an [I, N] copy) it is a plain GEMM that YNNPACK takes.
  """
  return jnp.dot(x_NxI, kernel_IxO, preferred_element_type=jnp.float32)


def _vocab_dot_fwd(x_NxI, kernel_IxO):
  return vocab_dot(x_NxI, kernel_IxO), (x_NxI, kernel_IxO)


def _vocab_dot_bwd(residuals, dy_NxO):
  x_NxI, kernel_IxO = residuals
  xt_IxN = jax.lax.optimization_barrier(x_NxI.T)  # keeps XLA from folding the transpose back
  return (jnp.dot(dy_NxO, kernel_IxO.T, preferred_element_type=jnp.float32).astype(x_NxI.dtype),
          jnp.dot(xt_IxN, dy_NxO, preferred_element_type=jnp.float32).astype(kernel_IxO.dtype))


vocab_dot.defvjp(_vocab_dot_fwd, _vocab_dot_bwd)


def token_correct(logits_BxLxV, targets_BxL):
  """argmax == target without jnp.argmax: the target's logit is the maximum and no earlier index
  reaches it (argmax takes the first of ties)."""
  target_logit_BxL = jnp.take_along_axis(logits_BxLxV, targets_BxL[..., None], axis=-1)[..., 0]
  max_BxL = jnp.max(logits_BxLxV, axis=-1)
  vocab_ids = jax.lax.broadcasted_iota(jnp.int32, logits_BxLxV.shape, logits_BxLxV.ndim - 1)
  earlier_tie_BxL = jnp.any((vocab_ids < targets_BxL[..., None])
                            & (logits_BxLxV >= max_BxL[..., None]), axis=-1)
  return ((target_logit_BxL >= max_BxL) & ~earlier_tie_BxL).astype(jnp.float32)
