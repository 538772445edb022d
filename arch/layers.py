"""Shared T5.1.1-style blocks: RMS pre-norm, no biases, gated MLP, attention, embedding, logits.

Every parameter and the main activations carry logical axis names (batch, length, embed, mlp, heads,
kv, vocab, relpos_buckets); experiments/ maps them onto a device mesh with logical axis rules.
"""

from __future__ import annotations

from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.ad_checkpoint import checkpoint_name

from arch import kernels
from arch import masks
from arch import positions
from arch.config import TransformerConfig

_fan_in = nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal")


def _constrain(x, axes):
  return nn.with_logical_constraint(x, axes)


def token_matmul(x_BxLxI, kernel_IxO, in_dims: int = 1, dot=jnp.dot):
  """x @ kernel over the last `in_dims` axes of x, with batch and length flattened into one axis.

  A 2-D [B*L, I] x [I, O] product keeps the weight gradient a plain GEMM: contracting over both
  batch and length (as a 3-D einsum does) makes XLA's CPU and GPU emitters transpose the large
  [B, L, O] cotangent first (benchmarks/README.md). `dot` is the product of the flattened operands
  (the vocabulary projection takes its kernel set's: arch/kernels).
  """
  lead = x_BxLxI.shape[:-in_dims]
  in_size = 1
  for n in kernel_IxO.shape[:in_dims]:
    in_size *= n
  out_shape = kernel_IxO.shape[in_dims:]
  y_NxO = dot(x_BxLxI.reshape((-1, in_size)), kernel_IxO.reshape((in_size, -1)))
  return y_NxO.reshape(lead + out_shape)


def dropout(rate: float, x_BxLxD, deterministic: bool):
  """Dropout shared along the length axis, as t5x (call inside a module's compact method)."""
  return nn.Dropout(rate, broadcast_dims=(-2,))(x_BxLxD, deterministic=deterministic)


class RMSNorm(nn.Module):
  """x / rms(x) * scale, computed in float32 (T5 LayerNorm without mean or bias)."""

  epsilon: float = 1e-6
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x_BxLxD):
    scale_D = self.param("scale", nn.with_logical_partitioning(nn.initializers.ones, ("embed",)),
                         (x_BxLxD.shape[-1],), jnp.float32)
    x32 = x_BxLxD.astype(jnp.float32)
    ms_BxLx1 = jnp.mean(jnp.square(x32), axis=-1, keepdims=True)
    y = x32 * jax.lax.rsqrt(ms_BxLx1 + self.epsilon)
    return (y * scale_D[None, None, :]).astype(self.dtype)


class Embed(nn.Module):
  """Token embedding with rows padded to a multiple of 128; `attend` gives tied output logits."""

  num_embeddings: int
  features: int
  dtype: jnp.dtype = jnp.float32

  def setup(self):
    self.embedding = self.param(
        "embedding",
        nn.with_logical_partitioning(nn.initializers.normal(stddev=1.0), ("vocab", "embed")),
        (self.num_embeddings, self.features), jnp.float32)

  def __call__(self, ids_BxL):
    x_BxLxD = jnp.take(self.embedding, ids_BxL, axis=0).astype(self.dtype)
    return _constrain(x_BxLxD, ("batch", "length", "embed"))

  def attend(self, x_BxLxD, dot=kernels.reference.vocab_dot):
    """float32 logits against the embedding rows (`dot`: the kernel set's vocabulary product)."""
    return token_matmul(x_BxLxD, self.embedding.astype(self.dtype).T, dot=dot)


class MlpBlock(nn.Module):
  """Gated (GEGLU / SwiGLU / ReGLU: wi_0, wi_1) or plain (ReLU / GELU: wi) MLP, no biases."""

  config: TransformerConfig
  deterministic: bool = True

  @nn.compact
  def __call__(self, x_BxLxD):
    cfg = self.config
    dtype = cfg.activation_dtype
    d = x_BxLxD.shape[-1]
    act = {"geglu": nn.gelu, "swiglu": nn.silu, "reglu": nn.relu, "relu": nn.relu,
           "gelu": nn.gelu}[cfg.activations]

    def dense_in(name):
      kernel_DxF = self.param(name, nn.with_logical_partitioning(_fan_in, ("embed", "mlp")),
                              (d, cfg.mlp_dim), jnp.float32)
      return checkpoint_name(token_matmul(x_BxLxD.astype(dtype), kernel_DxF.astype(dtype)),
                             "mlp_wi")  # named for arch/stack.py's remat policies

    if cfg.gated:
      h_BxLxF = act(dense_in("wi_0")) * dense_in("wi_1")
    else:
      h_BxLxF = act(dense_in("wi"))
    h_BxLxF = _constrain(h_BxLxF, ("batch", "length", "mlp"))
    h_BxLxF = nn.Dropout(cfg.dropout_rate, broadcast_dims=(-2,))(
        h_BxLxF, deterministic=self.deterministic)
    wo_FxD = self.param("wo", nn.with_logical_partitioning(_fan_in, ("mlp", "embed")),
                        (cfg.mlp_dim, d), jnp.float32)
    out_BxLxD = token_matmul(h_BxLxF, wo_FxD.astype(dtype))
    return _constrain(out_BxLxD, ("batch", "length", "embed"))


class MultiHeadAttention(nn.Module):
  """Dot-product attention, no biases; 1/sqrt(Dh) is folded into the query init as in T5.

  Q and K are the query and key lengths, Dh the head dim. bias_bxhxQxK is an additive float32
  position bias ([1, H, Q, K], or None) and `mask` an arch.masks.AttentionMask (None: every pair
  allowed). The core is `kernels.attend`, the kernel chosen by config.attention_impl.
  """

  config: TransformerConfig
  deterministic: bool = True
  use_rotary: bool = False

  @nn.compact
  def __call__(self, xq_BxQxD, xkv_BxKxD, bias_bxhxQxK, q_pos_BxQ=None, k_pos_BxK=None,
               mask: Optional[masks.AttentionMask] = None):
    cfg = self.config
    dtype = cfg.activation_dtype
    d, h, dh = xq_BxQxD.shape[-1], cfg.num_heads, cfg.head_dim
    in_init = nn.initializers.variance_scaling(1.0, "fan_in", "normal", in_axis=0, out_axis=(1, 2))
    query_init = lambda *a: in_init(*a) / jnp.sqrt(dh).astype(jnp.float32)  # noqa: E731
    out_init = nn.initializers.variance_scaling(1.0, "fan_in", "normal", in_axis=(0, 1),
                                                out_axis=2)

    def project(name, x_BxLxD, init):
      kernel_DxHxDh = self.param(name, nn.with_logical_partitioning(init, ("embed", "heads", "kv")),
                                 (d, h, dh), jnp.float32)
      y_BxLxHxDh = token_matmul(x_BxLxD.astype(dtype), kernel_DxHxDh.astype(dtype))
      # Named for the remat policies that save projections (arch/stack.py).
      return checkpoint_name(_constrain(y_BxLxHxDh, ("batch", "length", "heads", "kv")),
                             f"{name}_proj")

    q_BxQxHxDh = project("query", xq_BxQxD, query_init)
    k_BxKxHxDh = project("key", xkv_BxKxD, in_init)
    v_BxKxHxDh = project("value", xkv_BxKxD, in_init)
    if self.use_rotary:
      q_BxQxHxDh = positions.apply_rotary(q_BxQxHxDh, q_pos_BxQ, cfg.rotary_max_wavelength)
      k_BxKxHxDh = positions.apply_rotary(k_BxKxHxDh, k_pos_BxK, cfg.rotary_max_wavelength)
    if self.has_variable("cache", "cached_key"):
      # Cached decoding (arch/decoding.py allocates the cache): this call's keys and values go in
      # at the cache index and the queries attend over every slot; the caller's bias is
      # [B, H|1, Q, cache length] and masks the slots not written yet.
      k_BxKxHxDh, v_BxKxHxDh = _update_kv_cache(self, k_BxKxHxDh, v_BxKxHxDh)
    if mask is None:
      mask = masks.AttentionMask(jnp.ones(q_BxQxHxDh.shape[:2], bool),
                                 jnp.ones(k_BxKxHxDh.shape[:2], bool))
    dropout = None
    if cfg.dropout_rate > 0.0 and not self.deterministic:
      dropout = lambda w: nn.Dropout(cfg.dropout_rate)(w, deterministic=False)  # noqa: E731
    ctx_BxQxHxDh = kernels.attend(q_BxQxHxDh, k_BxKxHxDh, v_BxKxHxDh, bias_bxhxQxK, mask,
                                  impl=cfg.attention_impl, dropout=dropout)
    out_HxDhxD = self.param("out", nn.with_logical_partitioning(out_init, ("heads", "kv", "embed")),
                            (h, dh, d), jnp.float32)
    out_BxQxD = token_matmul(ctx_BxQxHxDh, out_HxDhxD.astype(dtype), in_dims=2)
    return _constrain(out_BxQxD, ("batch", "length", "embed"))


def _update_kv_cache(module: nn.Module, k_BxQxHxDh, v_BxQxHxDh):
  """Writes Q new keys/values at the module's 'cache' index; returns the whole [B, C, H, Dh]."""
  key_c = module.variable("cache", "cached_key")
  value_c = module.variable("cache", "cached_value")
  index_c = module.variable("cache", "cache_index")
  start = (0, index_c.value, 0, 0)
  key_c.value = jax.lax.dynamic_update_slice(key_c.value, k_BxQxHxDh.astype(key_c.value.dtype),
                                             start)
  value_c.value = jax.lax.dynamic_update_slice(value_c.value,
                                               v_BxQxHxDh.astype(value_c.value.dtype), start)
  index_c.value = index_c.value + k_BxQxHxDh.shape[1]
  return key_c.value, value_c.value


class LogitsDense(nn.Module):
  """Untied output projection (used when tie_embeddings is off)."""

  vocab_rows: int
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x_BxLxD, dot=kernels.reference.vocab_dot):
    kernel_DxV = self.param("kernel", nn.with_logical_partitioning(_fan_in, ("embed", "vocab")),
                            (x_BxLxD.shape[-1], self.vocab_rows), jnp.float32)
    return token_matmul(x_BxLxD, kernel_DxV.astype(self.dtype), dot=dot)


def output_logits(config: TransformerConfig, embedder: Embed, logits_dense: Optional[LogitsDense],
                  y_BxLxD):
  """float32 [B, L, V_padded] logits; padded vocabulary rows are masked out of the softmax."""
  dot = kernels.vocab_dot(config.attention_impl)
  if config.tie_embeddings:
    # Tied embeddings are N(0, 1): rescale so the logits start at unit scale (as T5 does).
    logits_BxLxV = embedder.attend(y_BxLxD, dot) / jnp.sqrt(y_BxLxD.shape[-1]).astype(jnp.float32)
  else:
    logits_BxLxV = logits_dense(y_BxLxD, dot)
  logits_BxLxV = logits_BxLxV.astype(jnp.float32)
  rows = config.padded_vocab_size
  if rows > config.vocab_size:
    in_vocab_1x1xV = (jnp.arange(rows) < config.vocab_size)[None, None, :]
    logits_BxLxV = jnp.where(in_vocab_1x1xV, logits_BxLxV, -1e9)
  return _constrain(logits_BxLxV, ("batch", "length", "vocab"))
