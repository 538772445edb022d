"""objectives.get_dataset: same seed same batches, exact resume (fast-forward and saved state), shards."""

import numpy as np
import pytest
import seqio

import objectives

SC = {"inputs": 48, "targets": 16}


def _conv():
  return seqio.EncDecFeatureConverter(pack=True)


def _take(it, n):
  return [next(it) for _ in range(n)]


def _equal(a, b):
  return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_same_seed_same_batches_other_seed_other_batches():
  a = _take(objectives.get_dataset("embedded_span_corruption", SC, _conv(), 2, seed=4), 3)
  b = _take(objectives.get_dataset("embedded_span_corruption", SC, _conv(), 2, seed=4), 3)
  c = _take(objectives.get_dataset("embedded_span_corruption", SC, _conv(), 2, seed=5), 3)
  assert all(_equal(x, y) for x, y in zip(a, b))
  assert not _equal(a[0], c[0])
  assert a[0]["encoder_input_tokens"].shape == (2, 48)


def test_resume_by_fast_forward_and_by_saved_state(tmp_path):
  make = lambda **kw: objectives.get_dataset("embedded_prefix_lm", {"inputs": 32, "targets": 32},
                                             seqio.DecoderFeatureConverter(pack=True), 2, seed=9, **kw)
  reference = _take(make(), 6)
  resumed = make(start_step=4)
  assert resumed.step == 4
  assert all(_equal(x, y) for x, y in zip(reference[4:], _take(resumed, 2)))

  it = make()
  _take(it, 3)
  prefix = it.save(str(tmp_path / "data" / "state"))
  restored = make(start_step=3, state_prefix=prefix)
  assert all(_equal(x, y) for x, y in zip(reference[3:], _take(restored, 3)))
  with pytest.raises(FileNotFoundError, match="No data-iterator state"):
    make(start_step=3, state_prefix=str(tmp_path / "missing"))


def test_hosts_read_different_shards():
  shard = lambda i: objectives.get_dataset(
      "embedded_full_lm", {"targets": 32}, seqio.DecoderFeatureConverter(pack=True), 2, seed=1,
      shard_info=seqio.ShardInfo(index=i, num_shards=2))
  a, b = next(shard(0)), next(shard(1))
  assert not np.array_equal(a["decoder_target_tokens"], b["decoder_target_tokens"])
  with pytest.raises(ValueError, match="BATCH_SIZE must be >= 1"):
    objectives.get_dataset("embedded_full_lm", {"targets": 32}, _conv(), 0, seed=1)
