"""Position schemes: T5 buckets against the definition, rotary and ALiBi properties, packing."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from arch import masks
from arch import models
from arch import positions
from arch import testing


def _reference_bucket(key_minus_query: int, bidirectional: bool, num_buckets=32, max_distance=128):
  """T5's bucket of one (key - query) offset, written out scalar by scalar."""
  n = -key_minus_query
  offset = 0
  if bidirectional:
    num_buckets //= 2
    if n < 0:
      offset = num_buckets
    n = abs(n)
  else:
    n = max(n, 0)
  max_exact = num_buckets // 2
  if n < max_exact:
    return offset + n
  large = max_exact + int(math.log(n / max_exact) / math.log(max_distance / max_exact)
                          * (num_buckets - max_exact))
  return offset + min(large, num_buckets - 1)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_relative_buckets_follow_t5(bidirectional):
  q = np.arange(0, 300, 7, dtype=np.int32)[None, :]
  k = np.arange(0, 300, 5, dtype=np.int32)[None, :]
  got = np.asarray(positions.relative_buckets(jnp.asarray(q), jnp.asarray(k),
                                              bidirectional=bidirectional, num_buckets=32,
                                              max_distance=128))[0]
  want = np.array([[_reference_bucket(int(kk - qq), bidirectional) for kk in k[0]] for qq in q[0]])
  np.testing.assert_array_equal(got, want)
  # Landmarks: exact near the diagonal, saturated far away.
  row = lambda d: _reference_bucket(d, bidirectional)  # noqa: E731
  if bidirectional:
    assert [row(-d) for d in range(8)] == list(range(8)) and row(3) == 19 and row(-500) == 15
  else:
    assert [row(-d) for d in range(16)] == list(range(16)) and row(5) == 0 and row(-500) == 31


def test_rotary_is_relative_and_norm_preserving():
  rng = np.random.RandomState(0)
  q = jnp.asarray(rng.randn(1, 1, 2, 8), jnp.float32)
  k = jnp.asarray(rng.randn(1, 1, 2, 8), jnp.float32)

  def score(pq, pk):
    rq = positions.apply_rotary(q, jnp.array([[pq]]), 10_000.0)
    rk = positions.apply_rotary(k, jnp.array([[pk]]), 10_000.0)
    return np.asarray(jnp.sum(rq * rk, axis=-1))

  np.testing.assert_allclose(score(3, 10), score(103, 110), rtol=1e-4)
  assert not np.allclose(score(3, 10), score(3, 11))
  rotated = positions.apply_rotary(q, jnp.array([[57]]), 10_000.0)
  np.testing.assert_allclose(jnp.linalg.norm(rotated, axis=-1), jnp.linalg.norm(q, axis=-1),
                             rtol=1e-5)


def test_alibi_slopes_and_bias():
  np.testing.assert_allclose(positions.alibi_slopes(8), [2.0 ** -(i + 1) for i in range(8)])
  bias = positions.alibi_bias(jnp.arange(4)[None], jnp.arange(4)[None], 8)
  assert bias.shape == (1, 8, 4, 4)
  np.testing.assert_allclose(bias[0, 0, 3, 0], -3 * 0.5)
  np.testing.assert_allclose(bias[0, 7, 1, 2], -1 * 2.0 ** -8)


@pytest.mark.parametrize("name,scheme", [("causal_decoder", "relative"),
                                         ("causal_decoder", "alibi"),
                                         ("encoder_decoder", "relative"),
                                         ("encoder_decoder", "rotary")])
def test_packed_example_scores_as_if_alone(name, scheme):
  """An example packed second in a row gets the log-probs it gets alone (positions honoured)."""
  model = models.get_model(name, testing.tiny_config(position_scheme=scheme))
  rng = np.random.RandomState(1)
  if name == "causal_decoder":
    seg = np.array([[1, 1, 1, 2, 2, 2, 2, 2, 0, 0]])
    packed = testing.decoder_batch(rng, 1, 10, 200, segment_ids=seg)
    tgt = np.asarray(packed["decoder_target_tokens"])[:, 3:8]
    alone = testing.decoder_batch(rng, 1, 10, 200, pad_from=5)
    t = np.asarray(alone["decoder_target_tokens"]).copy()
    t[:, :5] = tgt
    alone = {"decoder_target_tokens": t,
             "decoder_input_tokens": np.pad(t[:, :-1], ((0, 0), (1, 0))),
             "decoder_loss_weights": (t > 0).astype(np.int32)}
    sl_packed, sl_alone = np.s_[:, 3:8], np.s_[:, 0:5]
  else:
    enc_seg = np.array([[1, 1, 2, 2, 2, 2, 0, 0]])
    dec_seg = np.array([[1, 1, 1, 2, 2, 2]])
    packed = testing.encdec_batch(rng, 1, 8, 6, 200, enc_seg, dec_seg)
    e = np.zeros((1, 8), np.int32)
    e[:, :4] = np.asarray(packed["encoder_input_tokens"])[:, 2:6]
    t = np.zeros((1, 6), np.int32)
    t[:, :3] = np.asarray(packed["decoder_target_tokens"])[:, 3:6]
    alone = {"encoder_input_tokens": e, "decoder_target_tokens": t,
             "decoder_input_tokens": np.pad(t[:, :-1], ((0, 0), (1, 0))),
             "decoder_loss_weights": (t > 0).astype(np.int32)}
    sl_packed, sl_alone = np.s_[:, 3:6], np.s_[:, 0:3]
  alone = {k: jnp.asarray(v) for k, v in alone.items()}
  params = testing.init_params(model, {k: v.shape for k, v in packed.items()})
  lp_packed = np.asarray(model.token_log_probs(params, packed))[sl_packed]
  lp_alone = np.asarray(model.token_log_probs(params, alone))[sl_alone]
  np.testing.assert_allclose(lp_packed, lp_alone, rtol=1e-4, atol=1e-5)


def test_nd_bucketing_option_changes_only_prefixed_batches():
  causal = models.get_model("non_causal_decoder", testing.tiny_config())
  bidir = models.get_model("non_causal_decoder",
                           testing.tiny_config(prefix_bucketing="bidirectional"))
  rng = np.random.RandomState(2)
  prefixed = testing.decoder_batch(rng, 2, 10, 200, prefix_lengths=[4, 6])
  plain = {k: v for k, v in prefixed.items() if k != "decoder_causal_attention"}
  params = testing.init_params(causal, {k: v.shape for k, v in prefixed.items()})
  np.testing.assert_array_equal(causal.score_batch(params, plain), bidir.score_batch(params, plain))
  assert not np.allclose(causal.score_batch(params, prefixed), bidir.score_batch(params, prefixed))


def _bias_case(case):
  """(positions [B|1, L], AttentionMask, bidirectional) of the stacks the relative bias serves."""
  rng = np.random.RandomState(4)
  length = 300  # past max_distance 128: the log-spaced and saturated buckets are exercised
  seg = np.array([[1] * 170 + [2] * 100 + [0] * 30, [1] * 40 + [2] * 200 + [3] * 60])
  if case in ("ed_encoder", "ed_decoder"):
    batch = testing.encdec_batch(rng, 2, length, length, 200, encoder_segment_ids=seg,
                                 decoder_segment_ids=seg)
    if case == "ed_encoder":
      valid = batch["encoder_input_tokens"] > 0
      seg_ids = batch["encoder_segment_ids"]
      return (batch["encoder_positions"], masks.AttentionMask(valid, valid, seg_ids, seg_ids),
              True)
    return (batch["decoder_positions"], masks.decoder_only_attention_mask(
        batch["decoder_target_tokens"], batch["decoder_segment_ids"], None, prefix=False), False)
  if case == "unpacked":
    batch = testing.decoder_batch(rng, 2, length, 200, pad_from=250)
    return (positions.default_positions(length), masks.decoder_only_attention_mask(
        batch["decoder_target_tokens"], prefix=False), False)
  prefix = [100, 30] if case.startswith("nd") else None
  batch = testing.decoder_batch(rng, 2, length, 200, prefix_lengths=prefix, segment_ids=seg)
  mask = masks.decoder_only_attention_mask(
      batch["decoder_target_tokens"], batch["decoder_segment_ids"],
      batch.get("decoder_causal_attention"), prefix=prefix is not None)
  return batch["decoder_positions"], mask, case == "nd_bidirectional"


@pytest.mark.parametrize("case", ["unpacked", "packed", "nd_causal", "nd_bidirectional",
                                  "ed_encoder", "ed_decoder"])
def test_one_hot_bias_equals_the_gathered_bias(case):
  """[1, H, L, L] from index distances = each row's gathered bias on every pair the mask allows."""
  pos_BxL, mask, bidirectional = _bias_case(case)
  length, heads, buckets = mask.q_valid_BxQ.shape[1], 3, 32
  table_HxN = jnp.asarray(np.random.RandomState(5).randn(heads, buckets), jnp.float32)
  onehot_RxN = positions.relative_onehot(length, length, bidirectional=bidirectional,
                                         num_buckets=buckets, max_distance=128)
  new_1xHxLxL = positions.RelativePositionBias(heads, buckets).apply(
      {"params": {"rel_embedding": table_HxN}}, onehot_RxN, length)
  old_BxHxLxL = testing.gathered_relative_bias(table_HxN, pos_BxL, pos_BxL,
                                               bidirectional=bidirectional, num_buckets=buckets,
                                               max_distance=128)
  assert new_1xHxLxL.shape == (1, heads, length, length)
  full = (mask.q_valid_BxQ.shape[0], heads, length, length)
  allowed = np.broadcast_to(np.asarray(mask.dense()), full)
  new = np.broadcast_to(np.asarray(new_1xHxLxL), full)
  old = np.broadcast_to(np.asarray(old_BxHxLxL), full)
  assert allowed.sum() > 0.2 * allowed.size
  np.testing.assert_array_equal(new[allowed], old[allowed])
  if case == "unpacked":  # one row of positions: equal on every pair
    np.testing.assert_array_equal(new, old)
  # Its gradient is the table's, without a scatter: a dot on the one-hot.
  jaxpr = str(jax.make_jaxpr(jax.grad(lambda t: jnp.sum(positions.RelativePositionBias(
      heads, buckets).apply({"params": {"rel_embedding": t}}, onehot_RxN, length) ** 2)))(
          table_HxN))
  assert "scatter" not in jaxpr and "gather" not in jaxpr


def test_toeplitz_layout_for_any_query_count():
  for q_len, k_len in [(1, 5), (3, 3), (4, 7), (6, 2)]:
    v_HxR = np.arange(2 * (q_len + k_len - 1), dtype=np.float32).reshape(2, -1)
    want = np.array([[[v_HxR[h, j - i + q_len - 1] for j in range(k_len)] for i in range(q_len)]
                     for h in range(2)])[None]
    np.testing.assert_array_equal(positions.toeplitz(jnp.asarray(v_HxR), q_len), want)
