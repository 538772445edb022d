"""Preprocessing steps shared by the objectives: tokenize, cut the token stream, seeded shuffles.

All steps are tf.data transformations with TF ops (no Python in the per-example path), so they run
in tf.data's C++ threads with parallel map and prefetch.

Randomness: every random step draws its seed from seqio's map-seed sequence (the `seed` given to
Task.get_dataset), so the same seed gives the same examples on every run and every machine.
"""

from __future__ import annotations

from typing import Mapping, Optional

import gin
import seqio
import tensorflow as tf

AUTOTUNE = tf.data.AUTOTUNE


@seqio.map_over_dataset(num_seeds=1)
def _emit_seed(unused_x, seed):
  return seed


def draw_seed() -> int:
  """An int seed for a dataset-level op (e.g. shuffle), from seqio's deterministic seed sequence."""
  # seqio hands seeds only to per-example maps; a one-element map turns one into a Python int.
  seed_2 = _emit_seed(tf.data.Dataset.range(1)).get_single_element()
  return int(seed_2[0]) * 65_536 + int(seed_2[1]) % 65_536


def rekey_text(ds: tf.data.Dataset, key: str = "targets") -> tf.data.Dataset:
  """{'text': ...} -> {key: ...}: the document text becomes the feature that is tokenized."""
  return ds.map(lambda x: {key: x["text"]}, num_parallel_calls=AUTOTUNE)


def tokenize(ds: tf.data.Dataset, output_features: Mapping[str, seqio.Feature]) -> tf.data.Dataset:
  """Tokenizes 'targets' (the document) with the task's vocabulary; no EOS (objectives add it)."""
  return seqio.preprocessors.tokenize(
      ds, output_features=output_features, copy_pretokenized=False, with_eos=False
  )


def chunk_stream(
    ds: tf.data.Dataset, length: int, eos_id: Optional[int] = None, min_length: int = 1
) -> tf.data.Dataset:
  """Concatenates documents' 'targets' (with `eos_id` after each, if given) and cuts `length` pieces.

  Every token of the stream lands in exactly one piece; the stream's last piece may be shorter
  (pieces shorter than `min_length` are dropped).
  """
  if length < 1:
    raise ValueError(f"Chunk length must be >= 1, got {length}.")

  def doc_tokens(x):
    tokens = x["targets"]
    if eos_id is not None:
      tokens = tf.concat([tokens, [eos_id]], axis=0)
    return tokens

  tokens = ds.map(doc_tokens, num_parallel_calls=AUTOTUNE)
  tokens = tokens.filter(lambda t: tf.size(t) > 0)
  # unbatch/batch run in C++; cheaper than reduce-and-split through Python-visible tensors.
  pieces = tokens.unbatch().batch(length, drop_remainder=False)
  if min_length > 1:
    pieces = pieces.filter(lambda t: tf.size(t) >= min_length)
  return pieces


@gin.configurable(module="objectives.common")
def example_shuffle_buffer(size: int = 1024) -> int:
  """Examples (or prefix-LM row pairs) in the post-objective shuffle buffer; 1 turns it off."""
  return int(size)


def shuffle(ds: tf.data.Dataset, buffer_size: Optional[int] = None) -> tf.data.Dataset:
  """A seeded shuffle (seed from seqio's sequence) that decorrelates pieces of one document."""
  buffer_size = example_shuffle_buffer() if buffer_size is None else buffer_size
  if buffer_size <= 1:
    return ds
  return ds.shuffle(buffer_size, seed=draw_seed(), reshuffle_each_iteration=True)
