"""Full LM: every token once per epoch, EOS exactly at document ends, LM features for decoders."""

import collections

import gin
import numpy as np
import seqio

import objectives
from objectives import corpora

L = 64


def _stream_of_documents(vocab, docs):
  out = []
  for d in docs:
    out.extend(vocab.encode(d))
    out.append(vocab.eos_id)
  return out


def test_each_token_once_per_epoch_and_eos_only_at_document_ends():
  gin.clear_config()
  vocab = objectives.corpus_vocabulary("embedded")
  docs = corpora.embedded_documents("validation")
  expected = _stream_of_documents(vocab, docs)
  task = seqio.get_mixture_or_task("embedded_full_lm")
  # In corpus order (no document or example shuffle): the pieces concatenate to the stream.
  with gin.unlock_config():
    gin.bind_parameter("objectives.common.example_shuffle_buffer.size", 1)
  try:
    ds = task.get_dataset({"targets": L}, split="validation", shuffle=False, num_epochs=1)
    pieces = [e["targets"] for e in ds.as_numpy_iterator()]
  finally:
    gin.clear_config()
  assert all(len(p) == L for p in pieces[:-1]) and 1 <= len(pieces[-1]) <= L
  stream = np.concatenate(pieces)
  np.testing.assert_array_equal(stream, expected)
  eos_positions = np.flatnonzero(stream == vocab.eos_id)
  doc_ends = np.cumsum([len(vocab.encode(d)) + 1 for d in docs]) - 1
  np.testing.assert_array_equal(eos_positions, doc_ends)

  # Shuffled (documents and pieces): the same multiset of tokens, one EOS per document.
  ds = task.get_dataset({"targets": L}, split="validation", shuffle=True, seed=7, num_epochs=1)
  shuffled = np.concatenate([e["targets"] for e in ds.as_numpy_iterator()])
  assert collections.Counter(shuffled.tolist()) == collections.Counter(expected)
  assert not np.array_equal(shuffled, stream)
  assert int((shuffled == vocab.eos_id).sum()) == len(docs)


def test_decoder_lm_features_weight_every_token():
  converter = seqio.DecoderFeatureConverter(loss_on_targets_only=True, pack=True)
  it = objectives.get_dataset("embedded_full_lm", {"targets": L}, converter, batch_size=2, seed=1)
  b = next(it)
  assert set(b) == {"decoder_target_tokens", "decoder_input_tokens", "decoder_loss_weights",
                    "decoder_segment_ids", "decoder_positions"}
  assert b["decoder_target_tokens"].shape == (2, L)
  np.testing.assert_array_equal(b["decoder_loss_weights"], (b["decoder_target_tokens"] > 0))
  # Inputs are the targets shifted right within each segment (BOS = 0).
  np.testing.assert_array_equal(b["decoder_input_tokens"][:, 1:], b["decoder_target_tokens"][:, :-1])
  assert (b["decoder_input_tokens"][:, 0] == 0).all()
