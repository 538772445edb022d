"""Attention policies checked by gradients: what each output position can and cannot see."""

import jax
import numpy as np
import pytest

from arch import masks
from arch import models
from arch import testing

L = 12
VOCAB = 200


def _model(name, **cfg):
  return models.get_model(name, testing.tiny_config(**cfg))


def _params(model, batch):
  return testing.init_params(model, {k: v.shape for k, v in batch.items()})


def _visible(dep_LxL):
  """Boolean visibility: exact zero gradient means invisible."""
  return dep_LxL != 0.0


def test_causal_decoder_sees_only_the_past():
  model = _model("causal_decoder")
  batch = testing.decoder_batch(np.random.RandomState(0), 2, L, VOCAB)
  dep = testing.input_dependence(model, _params(model, batch), batch)["embedded_inputs"]
  expected = np.tril(np.ones((L, L), bool))
  np.testing.assert_array_equal(_visible(dep[:, 0]), expected)
  # Rows of the batch never see each other.
  assert np.all(dep[:, 1] == 0.0)


@pytest.mark.parametrize("bucketing", ["causal", "bidirectional"])
def test_non_causal_decoder_prefix_is_bidirectional(bucketing):
  model = _model("non_causal_decoder", prefix_bucketing=bucketing)
  prefix = 5  # seqio marks the 5 inputs plus one position
  batch = testing.decoder_batch(np.random.RandomState(1), 2, L, VOCAB, prefix_lengths=[prefix, 2])
  dep = testing.input_dependence(model, _params(model, batch), batch)["embedded_inputs"]
  expected = np.tril(np.ones((L, L), bool))
  expected[:prefix + 1, :prefix + 1] = True
  np.testing.assert_array_equal(_visible(dep[:, 0]), expected)


def test_causal_decoder_ignores_decoder_causal_attention():
  cd, nd = _model("causal_decoder"), _model("non_causal_decoder")
  batch = testing.decoder_batch(np.random.RandomState(2), 2, L, VOCAB, prefix_lengths=[4, 6])
  params = _params(cd, batch)
  dep = testing.input_dependence(cd, params, batch)["embedded_inputs"]
  np.testing.assert_array_equal(_visible(dep[:, 0]), np.tril(np.ones((L, L), bool)))
  # ...while ND, on the same parameters, does use it.
  assert not np.allclose(cd.logits(params, batch), nd.logits(params, batch))


@pytest.mark.parametrize("scheme", ["relative", "alibi"])
def test_packed_segments_do_not_leak(scheme):
  model = _model("non_causal_decoder", position_scheme=scheme)
  seg = np.array([[1, 1, 1, 1, 2, 2, 2, 2, 2, 3, 3, 0]] * 2)
  rng = np.random.RandomState(3)
  batch = testing.decoder_batch(rng, 2, L, VOCAB, segment_ids=seg)
  # A prefix of 2 inputs inside the second segment (positions 4..6 marked), like seqio packs it.
  causal = np.zeros_like(seg)
  causal[:, 4:7] = 1
  batch["decoder_causal_attention"] = jax.numpy.asarray(causal)
  dep = testing.input_dependence(model, _params(model, batch), batch)["embedded_inputs"]
  same = seg[0][:, None] == seg[0][None, :]
  expected = np.tril(np.ones((L, L), bool)) & same
  expected[4:7, 4:7] = True
  real = seg[0] > 0
  np.testing.assert_array_equal(_visible(dep[:, 0])[real][:, real], expected[real][:, real])
  # No real position reads the padding.
  assert np.all(dep[:, 0][real][:, ~real] == 0.0)


def test_encoder_decoder_encoder_bidirectional_decoder_causal():
  model = _model("encoder_decoder")
  s_in, s_t = 7, 6
  batch = testing.encdec_batch(np.random.RandomState(4), 2, s_in, s_t, VOCAB)
  params = _params(model, batch)
  dep = testing.input_dependence(model, params, batch)
  np.testing.assert_array_equal(_visible(dep["decoder/embedded_inputs"][:, 0]),
                                np.tril(np.ones((s_t, s_t), bool)))
  assert np.all(dep["encoder/embedded_inputs"][:, 0] != 0.0)
  assert np.all(dep["encoder/embedded_inputs"][:, 1] == 0.0)

  # The encoder on its own: every output position reads every input position.
  def encoded_first_row(pert):
    enc = model.module.apply({"params": params, "perturbations": pert},
                             batch["encoder_input_tokens"], method="encode")
    return enc[0].sum(axis=-1)

  perts = testing.zero_perturbations(model, params, batch)
  jac = jax.jit(jax.jacrev(encoded_first_row))(perts)["encoder"]["embedded_inputs"]
  enc_dep = np.sqrt(np.square(np.asarray(jac)).sum(-1))[:, 0]
  assert np.all(enc_dep != 0.0)


def test_encoder_decoder_packing_does_not_leak():
  model = _model("encoder_decoder")
  enc_seg = np.array([[1, 1, 1, 2, 2, 2, 2, 0]] * 2)
  dec_seg = np.array([[1, 1, 2, 2, 2, 0]] * 2)
  batch = testing.encdec_batch(np.random.RandomState(5), 2, 8, 6, VOCAB, enc_seg, dec_seg)
  dep = testing.input_dependence(model, _params(model, batch), batch)
  real_t = dec_seg[0] > 0
  dec_expected = np.tril(np.ones((6, 6), bool)) & (dec_seg[0][:, None] == dec_seg[0][None, :])
  np.testing.assert_array_equal(_visible(dep["decoder/embedded_inputs"][:, 0])[real_t][:, real_t],
                                dec_expected[real_t][:, real_t])
  cross_expected = (dec_seg[0][:, None] == enc_seg[0][None, :]) & (enc_seg[0][None, :] > 0)
  np.testing.assert_array_equal(_visible(dep["encoder/embedded_inputs"][:, 0])[real_t],
                                cross_expected[real_t])


def test_nd_with_empty_prefix_equals_cd_on_the_same_params():
  cd, nd = _model("causal_decoder"), _model("non_causal_decoder")
  rng = np.random.RandomState(6)
  plain = testing.decoder_batch(rng, 2, L, VOCAB)
  params = _params(cd, plain)
  # Identical parameter trees: a CD checkpoint is an ND checkpoint.
  shapes = {k: v.shape for k, v in plain.items()}
  cd_tree = jax.eval_shape(lambda: cd.get_initial_variables(jax.random.PRNGKey(0), shapes))
  nd_tree = jax.eval_shape(lambda: nd.get_initial_variables(jax.random.PRNGKey(0), shapes))
  assert cd_tree == nd_tree
  np.testing.assert_array_equal(nd.logits(params, plain), cd.logits(params, plain))
  # An empty inputs prefix: seqio marks only the first position.
  empty = testing.decoder_batch(np.random.RandomState(6), 2, L, VOCAB, prefix_lengths=[0, 0])
  np.testing.assert_array_equal(nd.score_batch(params, empty), cd.score_batch(params, empty))


@pytest.mark.parametrize("prefix,packed", [(False, False), (False, True), (True, True)])
def test_attention_mask_vectors_expand_to_the_dense_mask(prefix, packed):
  rng = np.random.RandomState(7)
  seg = np.array([[1] * 5 + [2] * 4 + [0] * 3, [1] * 12]) if packed else None
  batch = testing.decoder_batch(rng, 2, 12, 50, prefix_lengths=[3, 5] if prefix else None,
                                segment_ids=seg, pad_from=None if packed else 10)
  args = (batch["decoder_target_tokens"], batch.get("decoder_segment_ids"),
          batch.get("decoder_causal_attention"))
  want = masks.decoder_only_mask(*args, prefix=True)
  got = masks.decoder_only_attention_mask(*args, prefix=True).dense()
  np.testing.assert_array_equal(got, want)
