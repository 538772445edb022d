"""Span corruption (T5's masked language modeling), the paper's MLM objective.

The token stream (documents concatenated, no separator, as T5) is cut into `raw` tokens per
example, where `raw` is the most that fits TASK_FEATURE_LENGTHS['inputs'] after corruption:
512 inputs -> 568 raw tokens -> 85 noise tokens in 28 spans -> 114 targets (see
objectives.noise.raw_length_for_inputs). Noise density 0.15, mean noise span 3, random span
segmentation, one unique sentinel per span shared by inputs and targets, EOS at the end of both.
Decoder-only models see inputs‖targets (626) with loss on the 114 targets (seqio PrefixLM conversion).
"""

from __future__ import annotations

from typing import Mapping

import gin
import seqio
import tensorflow as tf

from objectives import common
from objectives import noise
from objectives import registry

DEFAULT_NOISE_DENSITY = 0.15
DEFAULT_MEAN_NOISE_SPAN = 3.0


@gin.configurable(module="objectives.span_corruption")
def settings(
    noise_density: float = DEFAULT_NOISE_DENSITY, mean_noise_span_length: float = DEFAULT_MEAN_NOISE_SPAN
) -> tuple[float, float]:
  """The span-corruption hyper-parameters (gin: objectives.span_corruption.settings.*)."""
  if not 0.0 < noise_density < 1.0 or mean_noise_span_length < 1.0:
    raise ValueError(
        f"objectives.span_corruption.settings: noise_density={noise_density} must be in (0, 1) "
        f"and mean_noise_span_length={mean_noise_span_length} >= 1."
    )
  return float(noise_density), float(mean_noise_span_length)


def lengths_for(task_feature_lengths: Mapping[str, int], extra_ids: int) -> noise.SpanLengths:
  """The raw/inputs/targets lengths for the task lengths; raises if they do not fit."""
  density, mean_span = settings()
  for key in ("inputs", "targets"):
    if key not in task_feature_lengths:
      raise ValueError(f"span_corruption needs TASK_FEATURE_LENGTHS[{key!r}] (e.g. 512 / 114).")
  lengths = noise.raw_length_for_inputs(int(task_feature_lengths["inputs"]), density, mean_span)
  if lengths.targets > task_feature_lengths["targets"]:
    raise ValueError(
        f"TASK_FEATURE_LENGTHS['targets']={task_feature_lengths['targets']} is too short for span "
        f"corruption: inputs {task_feature_lengths['inputs']} -> {lengths.raw} raw tokens -> "
        f"{lengths.targets} targets (density {density}, mean span {mean_span})."
    )
  if lengths.noise_spans > extra_ids:
    raise ValueError(
        f"span corruption of {lengths.raw} raw tokens needs {lengths.noise_spans} sentinels but the "
        f"vocabulary has only {extra_ids} extra ids."
    )
  return lengths


@gin.configurable(module="objectives.span_corruption")
def span_corruption(
    ds: tf.data.Dataset,
    sequence_length: Mapping[str, int],
    output_features: Mapping[str, seqio.Feature],
) -> tf.data.Dataset:
  """Tokenized documents {'targets'} -> {'inputs', 'targets'} span-corrupted examples."""
  vocab = output_features["targets"].vocabulary
  density, mean_span = settings()
  lengths = lengths_for(sequence_length, vocab.extra_ids)
  vocab_size, eos_id = vocab.vocab_size, vocab.eos_id

  @seqio.map_over_dataset(num_seeds=2)
  def corrupt(tokens, seeds):
    inputs, targets = noise.corrupt(tokens, density, mean_span, vocab_size, eos_id, seeds)
    return {"inputs": inputs, "targets": targets}

  pieces = common.chunk_stream(ds, lengths.raw, min_length=2)
  return common.shuffle(corrupt(pieces))


registry.register(registry.Objective(
    name="span_corruption", short="MLM", preprocessor=span_corruption,
    features=("inputs", "targets"),
    raw_length=lambda task_feature_lengths, vocabulary: lengths_for(
        task_feature_lengths, vocabulary.extra_ids).raw,
    eos={"inputs": True, "targets": True}, tiny_lengths={"inputs": 64, "targets": 16},
))
