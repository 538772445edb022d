"""Span corruption: lengths helper, noise statistics, exact reconstruction, sentinels."""

import numpy as np
import pytest
import seqio
import tensorflow as tf

import objectives
from objectives import noise
from objectives import span_corruption

VOCAB_SIZE = 4100  # the embedded vocabulary: sentinels are 4099, 4098, ...


def _corrupt_many(tokens_list, density, mean_span, seed=0):
  """Corrupts each row with its own seeds, through tf.data as the task does."""
  ds = tf.data.Dataset.from_generator(
      lambda: iter(tokens_list), output_signature=tf.TensorSpec([None], tf.int32)
  )

  @seqio.map_over_dataset(num_seeds=2)
  def corrupt(tokens, seeds):
    return noise.corrupt(tokens, density, mean_span, VOCAB_SIZE, 1, seeds)

  with seqio.utils.map_seed_manager(seed):
    ds = corrupt(ds)
  return [(i.numpy(), t.numpy()) for i, t in ds]


def _is_sentinel(x):
  return x >= VOCAB_SIZE - 100


def reconstruct(inputs, targets):
  """Original tokens from corrupted inputs and targets (both ending in EOS)."""
  assert inputs[-1] == 1 and targets[-1] == 1
  spans, current, key = {}, [], None
  for tok in targets[:-1]:
    if _is_sentinel(tok):
      if key is not None:
        spans[key] = current
      key, current = int(tok), []
    else:
      current.append(int(tok))
  if key is not None:
    spans[key] = current
  out = []
  for tok in inputs[:-1]:
    out.extend(spans.pop(int(tok)) if _is_sentinel(tok) else [int(tok)])
  assert not spans, "targets hold spans the inputs never refer to"
  return out


def test_length_helper_matches_t5_numbers():
  lengths = noise.raw_length_for_inputs(512, 0.15, 3.0)
  assert lengths == noise.SpanLengths(raw=568, inputs=512, targets=114, noise_tokens=85, noise_spans=28)
  # One more raw token would overflow the inputs.
  assert noise.corrupted_lengths(569, 0.15, 3.0).inputs == 513


def test_random_segmentation_is_a_composition():
  for n, k, s in [(85, 28, 1), (10, 10, 2), (7, 1, 3), (483, 28, 4)]:
    lengths = noise.random_segmentation(n, k, tf.constant([s, 7])).numpy()
    assert lengths.shape == (k,) and lengths.min() >= 1 and lengths.sum() == n


def test_statistics_reconstruction_and_sentinels():
  rng = np.random.default_rng(0)
  # Real-looking rows: random ids below the sentinel range, 568 tokens as the paper's rows.
  rows = [rng.integers(3, 4000, size=568, dtype=np.int32) for _ in range(300)]
  results = _corrupt_many(rows, 0.15, 3.0)
  noise_fraction, span_lengths = [], []
  for row, (inputs, targets) in zip(rows, results):
    assert len(inputs) == 512 and len(targets) == 114
    assert reconstruct(inputs, targets) == row.tolist()
    in_sent = inputs[_is_sentinel(inputs)]
    tg_sent = targets[_is_sentinel(targets)]
    # Unique, descending from the end of the vocabulary, identical in inputs and targets.
    np.testing.assert_array_equal(in_sent, VOCAB_SIZE - 1 - np.arange(len(in_sent)))
    np.testing.assert_array_equal(in_sent, tg_sent)
    assert len(in_sent) == 28
    spans = np.split(targets[:-1], np.flatnonzero(_is_sentinel(targets[:-1])))[1:]
    span_lengths.extend(len(s) - 1 for s in spans)
    noise_fraction.append(sum(len(s) - 1 for s in spans) / len(row))
  assert min(span_lengths) >= 1
  assert abs(np.mean(noise_fraction) - 0.15) <= 0.01
  assert abs(np.mean(span_lengths) - 3.0) <= 0.2
  # Random segmentation: span lengths vary (not a fixed pattern) and start positions differ.
  assert np.std(span_lengths) > 1.0
  assert len({tuple(np.flatnonzero(_is_sentinel(i))) for i, _ in results}) == len(results)


def test_short_rows_still_corrupt():
  rows = [np.array([5, 6], np.int32), np.array([5, 6, 7], np.int32), np.arange(10, 30, dtype=np.int32)]
  for row, (inputs, targets) in zip(rows, _corrupt_many(rows, 0.15, 3.0)):
    assert reconstruct(inputs, targets) == row.tolist()
    assert _is_sentinel(inputs).sum() >= 1


def test_task_yields_paper_lengths_and_shared_sentinels():
  task = seqio.get_mixture_or_task("embedded_span_corruption")
  ds = task.get_dataset({"inputs": 512, "targets": 114}, split="validation", shuffle=True, seed=5)
  examples = list(ds.take(40).as_numpy_iterator())
  full = [e for e in examples if len(e["inputs"]) == 512]
  assert len(full) >= 35
  for e in full:
    assert len(e["targets"]) == 114
    assert e["inputs"][-1] == 1 and e["targets"][-1] == 1
    np.testing.assert_array_equal(
        e["inputs"][_is_sentinel(e["inputs"])], e["targets"][_is_sentinel(e["targets"])]
    )


def test_lengths_errors_name_the_fix():
  with pytest.raises(ValueError, match=r"'targets'\]=100 is too short.*114 targets"):
    span_corruption.lengths_for({"inputs": 512, "targets": 100}, extra_ids=100)
  with pytest.raises(ValueError, match="needs 28 sentinels.*only 10 extra ids"):
    span_corruption.lengths_for({"inputs": 512, "targets": 114}, extra_ids=10)
  with pytest.raises(ValueError, match="too short for span corruption"):
    noise.raw_length_for_inputs(2, 0.15, 3.0)
  assert "embedded_span_corruption" in objectives.task_names()
