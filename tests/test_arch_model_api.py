"""The model API: loss, per-token log-probs and scores by hand, ED encode-once, seqio features."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf

from arch import models
from arch import testing

VOCAB = 200  # padded to 256 embedding rows


def _hand_log_probs(logits_BxLxV, targets_BxL):
  """float64 log-softmax over the real vocabulary rows, at the targets."""
  z = np.asarray(logits_BxLxV, np.float64)[..., :VOCAB]
  lse = np.log(np.exp(z - z.max(-1, keepdims=True)).sum(-1)) + z.max(-1)
  tgt = np.take_along_axis(z, np.asarray(targets_BxL)[..., None], axis=-1)[..., 0]
  return tgt - lse, lse


@pytest.mark.parametrize("name", ["non_causal_decoder", "encoder_decoder"])
def test_score_and_loss_match_hand_computation(name):
  model = models.get_model(name, testing.tiny_config(vocab_size=VOCAB), z_loss=1e-2)
  rng = np.random.RandomState(0)
  if name == "encoder_decoder":
    batch = testing.encdec_batch(rng, 2, 7, 6, VOCAB, pad_from=(5, 4))
  else:
    batch = testing.decoder_batch(rng, 2, 10, VOCAB, prefix_lengths=[3, 4], pad_from=8)
  params = testing.init_params(model, {k: v.shape for k, v in batch.items()})
  logits = model.logits(params, batch)
  assert logits.shape[-1] == 256
  assert np.all(np.asarray(logits)[..., VOCAB:] <= -1e8), "padded vocabulary rows must be masked"

  logp, lse = _hand_log_probs(logits, batch["decoder_target_tokens"])
  weights = np.asarray(batch["decoder_loss_weights"], np.float64)
  assert weights.min() == 0 and weights.max() == 1  # the masked positions must matter
  tok = np.asarray(model.token_log_probs(params, batch))
  np.testing.assert_allclose(tok, np.where(weights != 0, logp, 0.0), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(model.score_batch(params, batch), (logp * weights).sum(-1), rtol=1e-5)

  loss, metrics = jax.jit(model.loss_fn)(params, batch)
  ce = -(logp * weights).sum()
  z = 1e-2 * (lse ** 2 * weights).sum()
  np.testing.assert_allclose(metrics["cross_ent_loss"], ce, rtol=1e-5)
  np.testing.assert_allclose(metrics["z_loss"], z, rtol=1e-5)
  np.testing.assert_allclose(loss, ce + z, rtol=1e-5)
  np.testing.assert_allclose(metrics["num_tokens"], weights.sum())
  argmax_ok = np.asarray(logits).argmax(-1) == np.asarray(batch["decoder_target_tokens"])
  np.testing.assert_allclose(metrics["num_correct"], (argmax_ok * weights).sum())
  np.testing.assert_allclose(metrics["accuracy"], (argmax_ok * weights).sum() / weights.sum(),
                             rtol=1e-6)


def test_zero_z_loss_is_plain_cross_entropy():
  batch = testing.decoder_batch(np.random.RandomState(4), 2, 10, VOCAB)
  plain = models.get_model("causal_decoder", testing.tiny_config(), z_loss=0.0)
  paper = models.get_model("causal_decoder", testing.tiny_config())
  params = testing.init_params(plain, {k: v.shape for k, v in batch.items()})
  loss, metrics = plain.loss_fn(params, batch)
  assert metrics["z_loss"] == 0.0 and loss == metrics["cross_ent_loss"]
  paper_loss, paper_metrics = paper.loss_fn(params, batch)
  assert paper_metrics["cross_ent_loss"] == metrics["cross_ent_loss"]
  assert paper_loss > loss and paper_metrics["z_loss"] > 0.0


def test_dropout_is_used_only_with_an_rng():
  model = models.get_model("causal_decoder", testing.tiny_config(dropout_rate=0.3))
  batch = testing.decoder_batch(np.random.RandomState(1), 2, 10, VOCAB)
  params = testing.init_params(model, {k: v.shape for k, v in batch.items()})
  loss_fn = jax.jit(model.loss_fn)
  det_a, _ = loss_fn(params, batch, None)
  det_b, _ = loss_fn(params, batch, None)
  drop_a, _ = loss_fn(params, batch, jax.random.PRNGKey(1))
  drop_b, _ = loss_fn(params, batch, jax.random.PRNGKey(2))
  assert det_a == det_b
  assert np.isfinite(drop_a) and drop_a != det_a and drop_a != drop_b


def test_encoder_decoder_encode_once_equals_reencoding():
  model = models.get_model("encoder_decoder", testing.tiny_config())
  rng = np.random.RandomState(2)
  prompts = testing.encdec_batch(rng, 2, 7, 5, VOCAB)
  # Four continuations: two per prompt, of different lengths (padding in the decoder).
  conts = testing.encdec_batch(rng, 4, 7, 5, VOCAB)
  row = np.array([0, 0, 1, 1], np.int32)
  targets = np.asarray(conts["decoder_target_tokens"]).copy()
  targets[1, 3:] = 0
  targets[3, 2:] = 0
  full = {
      "encoder_input_tokens": jnp.asarray(np.asarray(prompts["encoder_input_tokens"])[row]),
      "decoder_target_tokens": jnp.asarray(targets),
      "decoder_input_tokens": jnp.asarray(np.pad(targets[:, :-1], ((0, 0), (1, 0)))),
      "decoder_loss_weights": jnp.asarray((targets > 0).astype(np.int32)),
  }
  params = testing.init_params(model, {k: v.shape for k, v in full.items()})
  once = dict(full, encoder_input_tokens=prompts["encoder_input_tokens"],
              encoder_row=jnp.asarray(row))
  np.testing.assert_allclose(model.token_log_probs(params, once),
                             model.token_log_probs(params, full), rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(model.score_batch(params, once), model.score_batch(params, full),
                             rtol=1e-6)
  # Pointing a row at the other prompt changes its score: the row really selects the encoding.
  swapped = dict(once, encoder_row=jnp.asarray(row[::-1].copy()))
  assert not np.allclose(model.score_batch(params, swapped), model.score_batch(params, once))


def _seqio_batches(converter, task_feature_lengths, examples):
  ds = tf.data.Dataset.from_generator(
      lambda: iter(examples),
      output_signature={k: tf.TensorSpec([None], tf.int32) for k in examples[0]})
  converted = converter(ds, task_feature_lengths)
  return [{k: jnp.asarray(v) for k, v in ex.items()}
          for ex in converted.batch(2).as_numpy_iterator()]


@pytest.mark.parametrize("name,pack", [("non_causal_decoder", True), ("encoder_decoder", True),
                                       ("causal_decoder", False)])
def test_runs_on_seqio_converted_features(name, pack):
  model = models.get_model(name, testing.tiny_config())
  rng = np.random.RandomState(3)
  examples = [{"inputs": rng.randint(2, VOCAB, size=n).astype(np.int32),
               "targets": np.append(rng.randint(2, VOCAB, size=m), 1).astype(np.int32)}
              for n, m in [(4, 3), (5, 2), (3, 4), (6, 1)]]
  if name == "causal_decoder":
    examples = [{"targets": ex["targets"]} for ex in examples]
    lengths = {"targets": 8}
  else:
    lengths = {"inputs": 12, "targets": 8} if name == "encoder_decoder" else {"inputs": 6,
                                                                            "targets": 6}
  converter = model.feature_converter_cls(pack=pack)
  batches = _seqio_batches(converter, lengths, examples)
  shapes = model.input_shapes(2, lengths, pack=pack)
  assert {k: v.shape for k, v in batches[0].items()} == shapes
  params = testing.init_params(model, shapes)
  total = 0.0
  for batch in batches:
    loss, metrics = model.loss_fn(params, batch)
    assert np.isfinite(loss)
    total += float(metrics["num_tokens"])
  # Loss on targets only: exactly the target tokens (EOS included) carry weight.
  assert total == sum(len(ex["targets"]) for ex in examples)
