"""Full language modeling (FLM): documents joined with EOS, cut into fixed-length sequences.

Output: {'targets': [L]} with L = TASK_FEATURE_LENGTHS['targets'] (626 in the paper). Each document
is followed by one EOS, so EOS appears exactly at document ends; every token of the corpus lands in
exactly one sequence per epoch (the stream's last sequence may be shorter; packing fills it).
The decoder converter (seqio LMFeatureConverter) puts the loss on every token. FLM has no 'inputs',
so it is undefined for an encoder-decoder (Objective.defined_on; objectives.validate says so).
"""

from __future__ import annotations

from typing import Mapping

import gin
import seqio
import tensorflow as tf

from objectives import common
from objectives import registry


@gin.configurable(module="objectives.full_lm")
def full_lm(
    ds: tf.data.Dataset,
    sequence_length: Mapping[str, int],
    output_features: Mapping[str, seqio.Feature],
) -> tf.data.Dataset:
  """Tokenized documents {'targets'} -> fixed-length LM sequences {'targets'}."""
  if not sequence_length or "targets" not in sequence_length:
    raise ValueError("full_lm needs TASK_FEATURE_LENGTHS = {'targets': L}.")
  eos_id = output_features["targets"].vocabulary.eos_id
  pieces = common.chunk_stream(ds, int(sequence_length["targets"]), eos_id=eos_id)
  ds = pieces.map(lambda t: {"targets": t}, num_parallel_calls=common.AUTOTUNE)
  return common.shuffle(ds)


def raw_length(task_feature_lengths: Mapping[str, int], vocabulary: seqio.Vocabulary) -> int:
  """L = TASK_FEATURE_LENGTHS['targets'] stream tokens per sequence (EOS included)."""
  del vocabulary
  if task_feature_lengths["targets"] < 2:
    raise ValueError(f"TASK_FEATURE_LENGTHS['targets']={task_feature_lengths['targets']}: need >= 2.")
  return int(task_feature_lengths["targets"])


registry.register(registry.Objective(
    name="full_lm", short="FLM", preprocessor=full_lm, features=("targets",),
    raw_length=raw_length, eos={"targets": False}, tiny_lengths={"targets": 64},
))
