"""Prefix language modeling (PLM): a sequence split at a point uniform in [1, L).

Each example is L consecutive tokens of the stream (L = TASK_FEATURE_LENGTHS['targets'], 626 in the
paper): 'inputs' the first s tokens, 'targets' the remaining L - s, s uniform in [1, L). No EOS is
added (the stream is continuous text). Decoders see inputs‖targets with loss on the targets only
and bidirectional attention over the inputs for ND (seqio's decoder_causal_attention); ED encodes
the inputs and decodes the targets.

Rows and tokens per step (the paper's "two sequences per row"). TASK_FEATURE_LENGTHS is
{'inputs': L, 'targets': L} for every architecture, and examples come in complementary pairs: two
consecutive L-token sequences split at s and L - s. seqio's greedy packer then fills each row with
exactly one pair: ED rows get s + (L - s) = L encoder tokens and L decoder tokens; decoder rows get
2L tokens in two segments. Each row therefore carries 2L tokens, as in the paper's encoder-decoder
PLM config (batch 1024 rows of two 626-token sequences = 2048 x 626 tokens per step). Bind
BATCH_SIZE to half the FLM/MLM batch for the same tokens per step (gin_configs/objectives/prefix_lm.gin
says so). The second split point is L - s, so each is uniform on [1, L) but the two of a pair are
tied; `paired=False` draws every split independently (rows are then filled greedily, not exactly).
The post-objective shuffle moves pairs, never splitting one, so a row always holds one pair.
"""

from __future__ import annotations

from typing import Mapping, Optional

import gin
import seqio
import tensorflow as tf

from objectives import common
from objectives import registry


def chunk_length(task_feature_lengths: Mapping[str, int], length: Optional[int] = None) -> int:
  """L: the sequence length before the split; raises if the task lengths would truncate it."""
  for key in ("inputs", "targets"):
    if key not in task_feature_lengths:
      raise ValueError(f"prefix_lm needs TASK_FEATURE_LENGTHS[{key!r}] (e.g. 626 / 626).")
  total = int(length or task_feature_lengths["targets"])
  if total < 2:
    raise ValueError(f"prefix_lm needs sequences of at least 2 tokens, got L={total}.")
  for key in ("inputs", "targets"):
    if task_feature_lengths[key] < total - 1:
      raise ValueError(
          f"TASK_FEATURE_LENGTHS[{key!r}]={task_feature_lengths[key]} is too short for prefix LM on "
          f"L={total}-token sequences: a split in [1, L) needs up to {total - 1} {key} tokens."
      )
  return total


def _split(tokens, s):
  return {"inputs": tokens[:s], "targets": tokens[s:]}


def _uniform_split(n, seed):
  """s uniform on [1, n)."""
  return tf.random.stateless_uniform([], seed=seed, minval=1, maxval=n, dtype=tf.int32)


@gin.configurable(module="objectives.prefix_lm")
def prefix_lm(
    ds: tf.data.Dataset,
    sequence_length: Mapping[str, int],
    output_features: Mapping[str, seqio.Feature],
    length: Optional[int] = None,
    paired: bool = True,
) -> tf.data.Dataset:
  """Tokenized documents {'targets'} -> {'inputs', 'targets'} prefix-LM examples."""
  del output_features
  total = chunk_length(sequence_length, length)

  if not paired:

    @seqio.map_over_dataset(num_seeds=1)
    def split_one(tokens, seed):
      return _split(tokens, _uniform_split(tf.size(tokens), seed))

    pieces = common.chunk_stream(ds, total, min_length=2)
    return common.shuffle(split_one(pieces))

  @seqio.map_over_dataset(num_seeds=2)
  def split_pair(unit, seeds):
    first, second = unit[:total], unit[total:]
    s = _uniform_split(tf.size(first), seeds[0])
    m = tf.size(second)
    # A full second sequence takes the complementary split; the stream's short tail draws its own.
    t = tf.cond(
        tf.equal(m, total),
        lambda: total - s,
        lambda: _uniform_split(tf.maximum(m, 2), seeds[1]),
    )
    return {"first": _split(first, s), "second": _split(second, t), "has_second": m >= 2}

  def emit(pair):
    one = tf.data.Dataset.from_tensors(pair["first"])
    two = tf.data.Dataset.from_tensors(pair["second"]).take(tf.cast(pair["has_second"], tf.int64))
    return one.concatenate(two)

  units = common.chunk_stream(ds, 2 * total, min_length=2)
  pairs = common.shuffle(split_pair(units))
  return pairs.flat_map(emit)


registry.register(registry.Objective(
    name="prefix_lm", short="PLM", preprocessor=prefix_lm, features=("inputs", "targets"),
    raw_length=lambda task_feature_lengths, vocabulary: chunk_length(task_feature_lengths),
    eos={"inputs": False, "targets": False}, tiny_lengths={"inputs": 64, "targets": 64},
))
