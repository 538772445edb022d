"""Position schemes: T5 relative position bias (bucketed), rotary embeddings, ALiBi slopes.

Positions are per-token ([B, L] or [1, L]) so packed sequences, whose positions restart at every
segment, get the same relative distances as the unpacked examples.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax.numpy as jnp
import numpy as np


def default_positions(length: int):
  """[1, L] positions 0..L-1 for unpacked batches."""
  return jnp.arange(length, dtype=jnp.int32)[None, :]


def relative_buckets(q_pos_BxQ, k_pos_BxK, *, bidirectional: bool, num_buckets: int,
                     max_distance: int):
  """T5 bucket of (key - query) distance: exact for short distances, log-spaced up to max_distance.

  Unidirectional buckets spend all buckets on keys at or behind the query (every key ahead maps to
  bucket 0, which a causal mask hides); bidirectional ones give each direction half.
  """
  rel_BxQxK = k_pos_BxK[:, None, :] - q_pos_BxQ[:, :, None]
  n_BxQxK = -rel_BxQxK  # > 0 when the key is behind the query
  if bidirectional:
    num_buckets //= 2
    ret_BxQxK = (n_BxQxK < 0).astype(jnp.int32) * num_buckets
    n_BxQxK = jnp.abs(n_BxQxK)
  else:
    ret_BxQxK = jnp.zeros_like(n_BxQxK)
    n_BxQxK = jnp.maximum(n_BxQxK, 0)
  max_exact = num_buckets // 2
  is_small = n_BxQxK < max_exact
  # Clamp before the log so n = 0 never reaches it; those entries take the exact branch anyway.
  n_f = jnp.maximum(n_BxQxK, max_exact).astype(jnp.float32)
  large = max_exact + (
      jnp.log(n_f / max_exact) / math.log(max_distance / max_exact) * (num_buckets - max_exact)
  ).astype(jnp.int32)
  large = jnp.minimum(large, num_buckets - 1)
  return ret_BxQxK + jnp.where(is_small, n_BxQxK, large)


class RelativePositionBias(nn.Module):
  """One learned [H, buckets] table; turns bucket ids into an additive attention bias."""

  num_heads: int
  num_buckets: int

  @nn.compact
  def __call__(self, buckets_BxQxK):
    table_HxN = self.param(
        "rel_embedding",
        nn.with_logical_partitioning(
            nn.initializers.variance_scaling(1.0, "fan_avg", "uniform"),
            ("heads", "relpos_buckets")),
        (self.num_heads, self.num_buckets), jnp.float32)
    bias_HxBxQxK = jnp.take(table_HxN, buckets_BxQxK, axis=1)
    return jnp.transpose(bias_HxBxQxK, (1, 0, 2, 3))


def alibi_slopes(num_heads: int) -> np.ndarray:
  """Geometric per-head slopes 2^(-8 (h+1) / H) (Press et al.)."""
  return np.asarray([2.0 ** (-8.0 * (h + 1) / num_heads) for h in range(num_heads)], np.float32)


def alibi_bias(q_pos_BxQ, k_pos_BxK, num_heads: int):
  """[B, H, Q, K] linear distance penalty; symmetric so it also serves bidirectional attention."""
  dist_BxQxK = jnp.abs(k_pos_BxK[:, None, :] - q_pos_BxQ[:, :, None]).astype(jnp.float32)
  slopes_1xHx1x1 = jnp.asarray(alibi_slopes(num_heads))[None, :, None, None]
  return -slopes_1xHx1x1 * dist_BxQxK[:, None, :, :]


def apply_rotary(x_BxLxHxDh, pos_BxL, max_wavelength: float):
  """Rotates (first half, second half) channel pairs of each head by position-dependent angles.

  P = Dh / 2 is the number of rotated channel pairs per head.
  """
  half = x_BxLxHxDh.shape[-1] // 2
  freq_P = 1.0 / (max_wavelength ** (np.arange(half, dtype=np.float32) * 2.0 / (2 * half)))
  angle_BxLxP = pos_BxL[:, :, None].astype(jnp.float32) * jnp.asarray(freq_P)[None, None, :]
  sin_BxLx1xP = jnp.sin(angle_BxLxP)[:, :, None, :]
  cos_BxLx1xP = jnp.cos(angle_BxLxP)[:, :, None, :]
  x1, x2 = x_BxLxHxDh[..., :half].astype(jnp.float32), x_BxLxHxDh[..., half:].astype(jnp.float32)
  out = jnp.concatenate([x1 * cos_BxLx1xP - x2 * sin_BxLx1xP, x2 * cos_BxLx1xP + x1 * sin_BxLx1xP],
                        axis=-1)
  return out.astype(x_BxLxHxDh.dtype)
