"""'blockwise' attention: online softmax over key blocks in plain JAX (flash attention's recurrence).

Portable (any backend), any bias and any mask (built per block from the AttentionMask's per-token
vectors). The forward pass keeps only the float32 output and the per-query log-sum-exp; the backward
pass recomputes each block's probabilities, so no [B, H, Q, K] array is ever stored (a custom VJP;
benchmarks/attention.py measures the memory). Attention-weight dropout is not supported (the
selector in arch/kernels/__init__.py falls back to the reference).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from arch import masks

BLOCK_K = 512
_F32 = jnp.float32


def attention(q_BxQxHxDh, k_BxKxHxDh, v_BxKxHxDh, bias_bxhxQxK, mask: masks.AttentionMask,
              block_k: int = BLOCK_K):
  """The reference attention's numbers, computed block by block over the keys."""
  k_len = k_BxKxHxDh.shape[1]
  bk = min(block_k, k_len)
  pad = -k_len % bk

  def pad_keys(x, axis):  # padded keys are invalid, so every query masks them
    if x is None or not pad:
      return x
    widths = [(0, 0)] * x.ndim
    widths[axis] = (0, pad)
    return jnp.pad(x, widths)

  k_BxKxHxDh, v_BxKxHxDh = pad_keys(k_BxKxHxDh, 1), pad_keys(v_BxKxHxDh, 1)
  vecs = (mask.q_valid_BxQ, pad_keys(mask.k_valid_BxK, 1), mask.q_segment_BxQ,
          pad_keys(mask.k_segment_BxK, 1), mask.q_marked_BxQ, pad_keys(mask.k_marked_BxK, 1))
  has_bias = bias_bxhxQxK is not None
  bias = pad_keys(bias_bxhxQxK, 3).astype(_F32) if has_bias else jnp.zeros((), _F32)
  return _attention(bk, mask.causal, has_bias, q_BxQxHxDh, k_BxKxHxDh, v_BxKxHxDh, bias, vecs)


def _key_blocks(x, axis: int, bk: int):
  """Splits `axis` into (blocks, bk) and moves the block axis to the front."""
  shape = x.shape[:axis] + (x.shape[axis] // bk, bk) + x.shape[axis + 1:]
  return jnp.moveaxis(x.reshape(shape), axis, 0)


def _unblock(x, axis: int):
  """The inverse of `_key_blocks` (block axis first, then the block's own axis at `axis` + 1)."""
  x = jnp.moveaxis(x, 0, axis)
  return x.reshape(x.shape[:axis] + (x.shape[axis] * x.shape[axis + 1],) + x.shape[axis + 2:])


def _scan_inputs(bk, k, v, vecs):
  q_valid, k_valid, q_seg, k_seg, q_marked, k_marked = vecs
  k_len = k.shape[1]
  # The bias is sliced per block inside the loop (`_bias_block`): blocking it up front would copy
  # the whole [1, H, Q, K] array.
  xs = dict(k=_key_blocks(k, 1, bk), v=_key_blocks(v, 1, bk), j=jnp.arange(k_len // bk),
            k_idx=jnp.arange(k_len).reshape(-1, bk), k_valid=_key_blocks(k_valid, 1, bk))
  if k_seg is not None:
    xs["k_seg"] = _key_blocks(k_seg, 1, bk)
  if k_marked is not None:
    xs["k_marked"] = _key_blocks(k_marked, 1, bk)
  return xs, (q_valid, q_seg, q_marked)


def _bias_block(bias, j, bk):
  return jax.lax.dynamic_slice_in_dim(bias, j * bk, bk, axis=3)


def _block_logits(causal, has_bias, q, xs, q_vecs, bias):
  """Masked float32 logits [B, H, Q, bk] of one key block, and its mask."""
  q_valid, q_seg, q_marked = q_vecs
  block_mask = masks.AttentionMask(q_valid, xs["k_valid"], q_seg, xs.get("k_seg"), q_marked,
                                   xs.get("k_marked"), causal=causal)
  m_Bx1xQxK = block_mask.block(jnp.arange(q.shape[1]), xs["k_idx"])
  s = jnp.einsum("bqhd,bkhd->bhqk", q, xs["k"], preferred_element_type=_F32)
  if has_bias:
    s = s + _bias_block(bias, xs["j"], xs["k"].shape[1])
  return jnp.where(m_Bx1xQxK, s, masks.NEG_INF), m_Bx1xQxK


def _forward(bk, causal, has_bias, q, k, v, bias, vecs):
  xs, q_vecs = _scan_inputs(bk, k, v, vecs)
  b, q_len, h, dh = q.shape

  def body(carry, x):
    m_BxHxQ, l_BxHxQ, acc_BxHxQxD = carry
    s, _ = _block_logits(causal, has_bias, q, x, q_vecs, bias)
    m_new = jnp.maximum(m_BxHxQ, jnp.max(s, axis=-1))
    corr = jnp.exp(m_BxHxQ - m_new)
    p = jnp.exp(s - m_new[..., None])
    l_BxHxQ = l_BxHxQ * corr + jnp.sum(p, axis=-1)
    pv = jnp.einsum("bhqk,bkhd->bhqd", p.astype(v.dtype), x["v"], preferred_element_type=_F32)
    return (m_new, l_BxHxQ, acc_BxHxQxD * corr[..., None] + pv), None

  init = (jnp.full((b, h, q_len), -jnp.inf, _F32), jnp.zeros((b, h, q_len), _F32),
          jnp.zeros((b, h, q_len, dh), _F32))
  (m, l, acc), _ = jax.lax.scan(body, init, xs)
  out32_BxQxHxD = jnp.transpose(acc / l[..., None], (0, 2, 1, 3))
  return out32_BxQxHxD, m + jnp.log(l)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def _attention(bk, causal, has_bias, q, k, v, bias, vecs):
  return _forward(bk, causal, has_bias, q, k, v, bias, vecs)[0].astype(q.dtype)


def _attention_fwd(bk, causal, has_bias, q, k, v, bias, vecs):
  out32, lse_BxHxQ = _forward(bk, causal, has_bias, q, k, v, bias, vecs)
  # The float32 output is kept for the backward pass's sum(dout * out): rounded to bfloat16 it
  # would cost that sum (and so every score gradient) its precision.
  return out32.astype(q.dtype), (q, k, v, bias, vecs, out32, lse_BxHxQ)


def _attention_bwd(bk, causal, has_bias, residuals, dout_BxQxHxD):
  q, k, v, bias, vecs, out, lse_BxHxQ = residuals
  xs, q_vecs = _scan_inputs(bk, k, v, vecs)
  dout32 = dout_BxQxHxD.astype(_F32)
  delta_BxHxQ = jnp.einsum("bqhd,bqhd->bhq", dout32, out)

  def body(carry, x):
    dq_BxQxHxD, dbias = carry
    s, m_Bx1xQxK = _block_logits(causal, has_bias, q, x, q_vecs, bias)
    p = jnp.exp(s - lse_BxHxQ[..., None])
    dv = jnp.einsum("bhqk,bqhd->bkhd", p.astype(v.dtype), dout_BxQxHxD,
                    preferred_element_type=_F32)
    dp = jnp.einsum("bqhd,bkhd->bhqk", dout_BxQxHxD, x["v"], preferred_element_type=_F32)
    ds = jnp.where(m_Bx1xQxK, p * (dp - delta_BxHxQ[..., None]), 0.0)
    dq_BxQxHxD = dq_BxQxHxD + jnp.einsum("bhqk,bkhd->bqhd", ds, x["k"].astype(_F32))
    dk = jnp.einsum("bhqk,bqhd->bkhd", ds, q.astype(_F32))
    if has_bias:  # summed over the axes the bias broadcasts (batch for a position bias)
      axes = tuple(d for d in range(2) if bias.shape[d] == 1 and ds.shape[d] != 1)
      ds_bias = jnp.sum(ds, axis=axes, keepdims=True) if axes else ds
      dbias = jax.lax.dynamic_update_slice_in_dim(dbias, ds_bias, x["j"] * bk, axis=3)
    return (dq_BxQxHxD, dbias), dict(dk=dk.astype(k.dtype), dv=dv.astype(v.dtype))

  (dq, dbias), outs = jax.lax.scan(body, (jnp.zeros(q.shape, _F32), jnp.zeros_like(bias)), xs)
  return (dq.astype(q.dtype), _unblock(outs["dk"], 1), _unblock(outs["dv"], 1), dbias,
          jax.tree_util.tree_map(lambda _: None, vecs))


_attention.defvjp(_attention_fwd, _attention_bwd)
