"""Position schemes: T5 relative position bias (bucketed), rotary embeddings, ALiBi slopes.

Rotary takes per-token positions ([B, L] or [1, L]): packed sequences, whose positions restart at
every segment, get the same rotations as the unpacked examples. The relative and ALiBi biases
depend only on key-query distances, which inside a packed segment equal index distances, so they
are built once per stack as [1, H, Q, K] from index distances (what fused attention kernels take).
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
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


def relative_onehot(q_len: int, k_len: int, *, bidirectional: bool, num_buckets: int,
                    max_distance: int, q_offset=0):
  """float32 [R, N] one-hot bucket of each key-query distance k - q, R = Q + K - 1 distances.

  Row r is the distance r - (Q - 1) - q_offset (query q_offset + i, key j: r = j - i + Q - 1).
  Built once per stack; every table of the stack contracts it (`RelativePositionBias`).
  """
  dist_1xR = (jnp.arange(q_len + k_len - 1, dtype=jnp.int32) - (q_len - 1) - q_offset)[None, :]
  buckets_R = relative_buckets(jnp.zeros((1, 1), jnp.int32), dist_1xR, bidirectional=bidirectional,
                               num_buckets=num_buckets, max_distance=max_distance)[0, 0]
  return (buckets_R[:, None] == jnp.arange(num_buckets)[None, :]).astype(jnp.float32)


def toeplitz(v_HxR, q_len: int):
  """[1, H, Q, K] with entry [0, h, i, j] = v_HxR[h, j - i + Q - 1], K = R - Q + 1.

  Copies only (tile, slice, reshape), so its gradient is a sum over the diagonals: no gather in
  the forward pass and no scatter-add in the backward one. Row i of the result starts at offset
  Q - 1 - i of v; in the Q-fold tiled v, taking rows of stride R - 1 from offset Q - 1 lands
  exactly there (i (R - 1) + Q - 1 = i R + (Q - 1 - i)).
  """
  h, r = v_HxR.shape
  k_len = r - q_len + 1
  if q_len == 1:
    return v_HxR[None, :, None, :]
  tiled_HxQR = jnp.tile(v_HxR, (1, q_len))
  rows_HxQxR1 = tiled_HxQR[:, q_len - 1:q_len - 1 + q_len * (r - 1)].reshape(h, q_len, r - 1)
  return rows_HxQxR1[None, :, :, :k_len]


class RelativePositionBias(nn.Module):
  """One learned [H, buckets] table; gives the additive [1, H, Q, K] attention bias.

  The bias depends on positions only through the key-query distance, and under packing the
  distance inside a segment equals the index distance (positions restart at each segment and
  cross-segment pairs are masked), so it is built from index distances for every row at once:
  the table contracted with the stack's distance one-hot (`relative_onehot`), then laid out as
  [Q, K] by `toeplitz`. On every pair a mask allows it equals the per-row gathered bias
  (tests/test_arch_positions.py keeps that gather as the oracle).
  """

  num_heads: int
  num_buckets: int

  @nn.compact
  def __call__(self, onehot_RxN, q_len: int):
    table_HxN = self.param(
        "rel_embedding",
        nn.with_logical_partitioning(
            nn.initializers.variance_scaling(1.0, "fan_avg", "uniform"),
            ("heads", "relpos_buckets")),
        (self.num_heads, self.num_buckets), jnp.float32)
    # HIGHEST: a one-hot contraction is exact only without reduced-precision matmul passes.
    v_HxR = jnp.einsum("hn,rn->hr", table_HxN, onehot_RxN, precision=jax.lax.Precision.HIGHEST)
    return toeplitz(v_HxR, q_len)


def alibi_slopes(num_heads: int) -> np.ndarray:
  """Geometric per-head slopes 2^(-8 (h+1) / H) (Press et al.)."""
  return np.asarray([2.0 ** (-8.0 * (h + 1) / num_heads) for h in range(num_heads)], np.float32)


def alibi_bias(q_pos_BxQ, k_pos_BxK, num_heads: int):
  """[B, H, Q, K] linear distance penalty; symmetric so it also serves bidirectional attention.

  Called with [1, L] index positions it gives the [1, H, L, L] bias of every row (packed rows too:
  inside a segment the index distance is the position distance).
  """
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
