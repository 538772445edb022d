"""UL2: per-denoiser noise statistics, paradigm token first, family mixing rates, lengths."""

import gin
import numpy as np
import pytest
import seqio
import tensorflow as tf

from objectives import noise
from objectives import ul2

VOCAB_SIZE = 4100
PARADIGM_IDS = {"[NLU]": 3, "[NLG]": 4, "[S2S]": 5}  # user-defined pieces of the embedded model


def _is_sentinel(x):
  return x >= VOCAB_SIZE - 100


@pytest.mark.parametrize("mean_span,density", [(3, 0.15), (8, 0.15), (3, 0.5), (8, 0.5), (64, 0.15), (64, 0.5)])
def test_denoiser_density_and_span_length(mean_span, density):
  # Long rows so that even mu = 64 has several spans; statistics over 40 rows.
  raw, rows = 4096, 40
  expected = noise.corrupted_lengths(raw, density, mean_span)
  fractions, spans = [], []
  for i in range(rows):
    tokens = tf.range(raw, dtype=tf.int32) % 3000 + 10  # below the sentinel range
    seeds = tf.constant([[i, 1], [i, 2]])
    # A wide id space so that the hundreds of spans of a 4096-token row all get sentinels.
    _, targets = noise.corrupt(tokens, density, float(mean_span), 100_000, 1, seeds)
    targets = targets.numpy()[:-1]
    pieces = np.split(targets, np.flatnonzero(targets >= 50_000))[1:]
    spans.extend(len(p) - 1 for p in pieces)
    fractions.append(sum(len(p) - 1 for p in pieces) / raw)
  assert len(pieces) == expected.noise_spans
  assert abs(np.mean(fractions) - density) <= 0.01
  assert abs(np.mean(spans) - mean_span) <= 0.1 * mean_span


def test_feature_lengths_are_the_max_over_denoisers():
  assert ul2.feature_lengths(568) == {"inputs": 568, "targets": 567}
  assert ul2.raw_length({"inputs": 568, "targets": 567}) == 568
  # R (3, 0.15) alone: 568 raw -> 512 inputs + the paradigm token.
  assert ul2.denoiser_lengths(568, ("R", 3.0, 0.15))[:2] == (513, 114)
  with pytest.raises(ValueError, match="too short for UL2"):
    ul2.raw_length({"inputs": 1, "targets": 1})


def test_sentinel_budget_error():
  with pytest.raises(ValueError, match=r"needs \d+ sentinels but the vocabulary has only 10"):
    ul2.validate_lengths({"inputs": 568, "targets": 567}, extra_ids=10)


def test_paradigm_token_first_and_mixing_rates():
  gin.clear_config()
  lengths = ul2.feature_lengths(96)
  task = seqio.get_mixture_or_task("embedded_ul2")
  ds = task.get_dataset(lengths, split="train", shuffle=True, seed=11)
  examples = list(ds.take(2500).as_numpy_iterator())
  firsts = np.array([e["inputs"][0] for e in examples])
  assert set(firsts.tolist()) <= set(PARADIGM_IDS.values())
  # Paradigm ids appear nowhere else.
  for e in examples[:200]:
    assert not np.isin(e["inputs"][1:], list(PARADIGM_IDS.values())).any()
    assert not np.isin(e["targets"], list(PARADIGM_IDS.values())).any()
  n = len(firsts)
  for token, rate in (("[NLU]", 0.4), ("[NLG]", 0.4), ("[S2S]", 0.2)):
    observed = float(np.mean(firsts == PARADIGM_IDS[token]))
    sigma = np.sqrt(rate * (1 - rate) / n)
    assert abs(observed - rate) < 4 * sigma, (token, observed)
  # S examples are prefix LM (no sentinel, no EOS); R/X end with EOS and carry sentinels.
  for e in examples[:300]:
    if e["inputs"][0] == PARADIGM_IDS["[S2S]"]:
      assert not _is_sentinel(e["inputs"]).any() and not _is_sentinel(e["targets"]).any()
      assert 1 not in e["inputs"] and 1 not in e["targets"]  # no EOS: continuous text
    else:
      assert e["inputs"][-1] == 1 and e["targets"][-1] == 1 and _is_sentinel(e["targets"][0])


def test_mixing_rates_by_gin():
  gin.clear_config()
  with gin.unlock_config():
    gin.bind_parameter("objectives.ul2.settings.rates", {"R": 0.0, "X": 0.0, "S": 1.0})
  try:
    task = seqio.get_mixture_or_task("embedded_ul2")
    ds = task.get_dataset(ul2.feature_lengths(64), split="train", shuffle=True, seed=3)
    firsts = {int(e["inputs"][0]) for e in ds.take(50).as_numpy_iterator()}
    assert firsts == {PARADIGM_IDS["[S2S]"]}
    with gin.unlock_config():
      gin.bind_parameter("objectives.ul2.settings.rates", {"Q": 1.0})
    with pytest.raises(ValueError, match="unknown families"):
      ul2.settings()
  finally:
    gin.clear_config()
