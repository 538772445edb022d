"""Prefix LM: uniform split points, EOS at document ends, complementary pairs for the
encoder-decoder and independent sequences for decoders, and the features each receives."""

import collections

import gin
import numpy as np
import pytest
import seqio
import tensorflow as tf

import objectives
from arch import registry as arch_registry
from objectives import corpora, prefix_lm

L = 16
# Chi-square critical value for 14 degrees of freedom (15 split points) at alpha = 0.001.
CHI2_14DOF_ALPHA_001 = 36.123


@pytest.fixture()
def clean_gin():
  gin.clear_config()
  yield
  gin.clear_config()


def _examples(n, paired, seed=0):
  with gin.unlock_config():
    gin.bind_parameter("objectives.prefix_lm.prefix_lm.paired", paired)
  task = seqio.get_mixture_or_task("embedded_prefix_lm")
  ds = task.get_dataset({"inputs": L, "targets": L}, split="train", shuffle=True, seed=seed)
  return list(ds.take(n).as_numpy_iterator())


def test_split_points_uniform_chi_square(clean_gin):
  splits = [len(e["inputs"]) for e in _examples(3000, paired=False)
            if len(e["inputs"]) + len(e["targets"]) == L]
  assert len(splits) > 2900
  counts = np.bincount(splits, minlength=L)
  assert counts[0] == 0  # never an empty prefix
  observed = counts[1:L]
  expected = len(splits) / (L - 1)
  chi2 = float(((observed - expected) ** 2 / expected).sum())
  assert chi2 < CHI2_14DOF_ALPHA_001, (chi2, observed)
  # And not degenerate: every split point in [1, L) occurs.
  assert observed.min() > 0


def test_pairs_are_complementary_and_marginally_uniform(clean_gin):
  examples = _examples(1000, paired=True, seed=1)
  firsts = []
  for a, b in zip(examples[0::2], examples[1::2]):
    if len(a["inputs"]) + len(a["targets"]) == L and len(b["inputs"]) + len(b["targets"]) == L:
      assert len(a["inputs"]) + len(b["inputs"]) == L
      firsts.append(len(a["inputs"]))
  counts = np.bincount(firsts, minlength=L)[1:L]
  expected = len(firsts) / (L - 1)
  assert float(((counts - expected) ** 2 / expected).sum()) < CHI2_14DOF_ALPHA_001


def _batch(converter, lengths, batch_size=4, seed=2):
  it = objectives.get_dataset("embedded_prefix_lm", lengths, converter, batch_size, seed)
  return next(it)


@pytest.mark.parametrize("paired", [True, False])
def test_eos_after_every_document_and_nowhere_else(clean_gin, paired):
  vocab = objectives.corpus_vocabulary("embedded")
  docs = corpora.embedded_documents("validation")
  expected = np.concatenate([np.append(vocab.encode(d), vocab.eos_id) for d in docs])
  with gin.unlock_config():
    gin.bind_parameter("objectives.common.example_shuffle_buffer.size", 1)
    gin.bind_parameter("objectives.prefix_lm.prefix_lm.paired", paired)
  task = seqio.get_mixture_or_task("embedded_prefix_lm")
  ds = task.get_dataset({"inputs": L, "targets": L}, split="validation", shuffle=False,
                        num_epochs=1)
  stream = np.concatenate([np.concatenate([e["inputs"], e["targets"]])
                           for e in ds.as_numpy_iterator()])
  # In corpus order the examples concatenate to the documents, each followed by one EOS.
  np.testing.assert_array_equal(stream, expected)
  assert int((stream == vocab.eos_id).sum()) == len(docs) > 1


def _arch_converter(name):
  """The converter the registered architecture builds its batches with (as the trainer does)."""
  return arch_registry.get(name).feature_converter_cls(pack=True)


def _segment_splits(b, row):
  """Per packed decoder segment: (prefix length, segment length)."""
  seg = b["decoder_segment_ids"][row]
  out = []
  for s in sorted(set(seg.tolist()) - {0}):
    idx = np.flatnonzero(seg == s)
    out.append((int(b["decoder_causal_attention"][row, idx].sum()) - 1, len(idx)))
  return out


def test_non_causal_decoder_rows_hold_independent_sequences(clean_gin):
  converter = _arch_converter("non_causal_decoder")
  sums, firsts = [], []
  it = objectives.get_dataset("embedded_prefix_lm", {"inputs": L, "targets": L}, converter, 8, 3)
  for _ in range(6):
    b = next(it)
    for row in range(8):
      splits = _segment_splits(b, row)
      assert [n for _, n in splits] == [L, L]  # two whole L-token sequences per 2L row
      sums.append(splits[0][0] + splits[1][0])
      firsts.append(splits[0][0])
  # Independent split points: s1 + s2 = L only by chance (1 / (L - 1)); tied pairs always are.
  assert collections.Counter(sums)[L] <= 12, sums
  assert len(set(firsts)) > 5


def test_encoder_decoder_rows_keep_complementary_pairs(clean_gin):
  b = _batch(_arch_converter("encoder_decoder"), {"inputs": L, "targets": L}, batch_size=8)
  for row in range(8):
    enc, dec = b["encoder_segment_ids"][row], b["decoder_segment_ids"][row]
    assert (enc > 0).all() and (dec > 0).all()
    # First sequence: s inputs and L - s targets; second: L - s inputs and s targets.
    assert (enc == 1).sum() + (dec == 1).sum() == L
    assert (enc == 1).sum() == (dec == 2).sum()


def test_paired_setting_forces_either_layout(clean_gin):
  with gin.unlock_config():
    gin.bind_parameter("objectives.prefix_lm.prefix_lm.paired", True)
  b = _batch(_arch_converter("non_causal_decoder"), {"inputs": L, "targets": L}, batch_size=8)
  assert all(sum(s for s, _ in _segment_splits(b, r)) == L for r in range(8))
  assert prefix_lm.uses_pairs() is True  # no converter in scope: pairs (a bare Task.get_dataset)
  with prefix_lm.packing_for(_arch_converter("causal_decoder")):
    assert prefix_lm.uses_pairs() is False and prefix_lm.uses_pairs(True) is True


def test_decoder_features_mark_prefix_and_weight_only_targets(clean_gin):
  converter = seqio.DecoderFeatureConverter(loss_on_targets_only=True, pack=True)
  b = _batch(converter, {"inputs": L, "targets": L})
  assert b["decoder_target_tokens"].shape == (4, 2 * L)
  for row in range(4):
    seg = b["decoder_segment_ids"][row]
    assert set(seg.tolist()) == {1, 2}  # two sequences per row, no padding
    for s in (1, 2):
      idx = np.flatnonzero(seg == s)
      w = b["decoder_loss_weights"][row, idx]
      causal = b["decoder_causal_attention"][row, idx]
      n_inputs = int(causal.sum()) - 1  # the prefix plus one position are marked
      assert 1 <= n_inputs < L
      np.testing.assert_array_equal(w, (np.arange(len(idx)) >= n_inputs).astype(np.int32))
      np.testing.assert_array_equal(causal, (np.arange(len(idx)) <= n_inputs).astype(np.int32))
      np.testing.assert_array_equal(b["decoder_positions"][row, idx], np.arange(len(idx)))


def test_encoder_decoder_rows_hold_one_full_pair(clean_gin):
  b = _batch(seqio.EncDecFeatureConverter(pack=True), {"inputs": L, "targets": L})
  assert b["encoder_input_tokens"].shape == (4, L) and b["decoder_target_tokens"].shape == (4, L)
  assert (b["encoder_input_tokens"] > 0).all() and (b["decoder_target_tokens"] > 0).all()
  np.testing.assert_array_equal(b["encoder_segment_ids"].max(1), 2)
  np.testing.assert_array_equal(b["decoder_loss_weights"], 1)


def test_lengths_that_would_truncate_raise():
  with pytest.raises(ValueError, match=r"'inputs'\]=10 is too short for prefix LM"):
    prefix_lm.chunk_length({"inputs": 10, "targets": 16})
  with pytest.raises(ValueError, match="needs TASK_FEATURE_LENGTHS\\['inputs'\\]"):
    prefix_lm.chunk_length({"targets": 16})


# The paper's ND prefix LM (nc_dec_c4_prefix_lm.gin): rows of one L-token sequence each.
ROWS = {"inputs": L, "targets": L, "decoder_length": L}


def test_non_causal_decoder_rows_of_decoder_length_hold_one_sequence(clean_gin):
  converter = _arch_converter("non_causal_decoder")
  assert converter.get_model_feature_lengths(ROWS)["decoder_target_tokens"] == L
  it = objectives.get_dataset("embedded_prefix_lm", ROWS, converter, 8, 3)
  splits = []
  for _ in range(4):
    b = next(it)
    assert b["decoder_target_tokens"].shape == (8, L)
    for row in range(8):
      # One whole sequence per row: one segment, no padding, positions 0..L-1.
      np.testing.assert_array_equal(b["decoder_segment_ids"][row], 1)
      np.testing.assert_array_equal(b["decoder_positions"][row], np.arange(L))
      assert (b["decoder_target_tokens"][row] > 0).all()
      causal = b["decoder_causal_attention"][row]
      s = int(causal.sum()) - 1  # the prefix plus one position are marked
      assert 1 <= s < L
      np.testing.assert_array_equal(causal, (np.arange(L) <= s).astype(np.int32))
      np.testing.assert_array_equal(b["decoder_loss_weights"][row],
                                    (np.arange(L) >= s).astype(np.int32))
      splits.append(s)
  # Independent split points: no complementary pairs (s, L - s) in consecutive rows.
  pairs = list(zip(splits[0::2], splits[1::2]))
  assert sum(a + b == L for a, b in pairs) <= 4, pairs
  assert len(set(splits)) > 8


def test_encoder_decoder_rows_are_unchanged_pairs(clean_gin):
  # ED keeps seqio's converter and its pairs; the row length is a decoder-only setting.
  assert arch_registry.get("encoder_decoder").feature_converter_cls is seqio.EncDecFeatureConverter
  b = _batch(_arch_converter("encoder_decoder"), {"inputs": L, "targets": L}, batch_size=4)
  assert b["encoder_input_tokens"].shape == b["decoder_target_tokens"].shape == (4, L)
  np.testing.assert_array_equal(b["encoder_segment_ids"].max(1), 2)


def test_decoder_length_refuses_examples_longer_than_the_row(clean_gin):
  converter = _arch_converter("non_causal_decoder")
  # A row shorter than the sequences is an error, never a silent truncation.
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match=r"exceed TASK_FEATURE_LENGTHS\S+decoder_length\S+ = 8"):
    next(objectives.get_dataset("embedded_prefix_lm", {"inputs": L, "targets": L,
                                                       "decoder_length": 8}, converter, 2, 0))
  with pytest.raises(ValueError, match="not inputs \\+ targets"):
    converter.get_model_feature_lengths({"targets": L, "decoder_length": L})
  with pytest.raises(ValueError, match="positive integer"):
    converter.get_model_feature_lengths({"inputs": L, "targets": L, "decoder_length": 0})
