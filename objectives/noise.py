"""Span-corruption primitives (T5's recipe, written here in TF ops): masks, sentinels, lengths.

A sequence of n raw tokens gets round(n * density) noise tokens (at least 1, at most n - 1) in
round(noise / mean_span) spans. Noise and non-noise token counts are each cut into that many
non-empty spans uniformly at random (a uniformly random composition), and the spans alternate,
non-noise first. Each noise span becomes one sentinel in the inputs; the targets are each sentinel
followed by the span it replaced. Sentinels are the extra ids counted down from the end of the
vocabulary, <extra_id_0> = vocab_size - 1 for the first span, so inputs and targets share them.
Python's round() and tf.round both round half to even, so the length helper and the masks agree.
"""

from __future__ import annotations

from typing import NamedTuple

import tensorflow as tf


class SpanLengths(NamedTuple):
  raw: int  # raw tokens consumed per example
  inputs: int  # inputs length, EOS and extra tokens included
  targets: int  # targets length, EOS included
  noise_tokens: int
  noise_spans: int


def _counts(n: int, density: float, mean_span: float) -> tuple[int, int]:
  num_noise = min(max(int(round(n * density)), 1), n - 1)
  num_spans = min(max(int(round(num_noise / mean_span)), 1), num_noise, n - num_noise)
  return num_noise, num_spans


def corrupted_lengths(
    raw: int, density: float, mean_span: float, extra_inputs: int = 0
) -> SpanLengths:
  """Lengths of inputs/targets (each with EOS) that `raw` tokens turn into."""
  if raw < 2:
    raise ValueError(f"Span corruption needs at least 2 raw tokens, got {raw}.")
  num_noise, num_spans = _counts(raw, density, mean_span)
  inputs = raw - num_noise + num_spans + 1 + extra_inputs
  targets = num_noise + num_spans + 1
  return SpanLengths(raw, inputs, targets, num_noise, num_spans)


def raw_length_for_inputs(
    inputs_length: int, density: float, mean_span: float, extra_inputs: int = 0
) -> SpanLengths:
  """The most raw tokens whose corrupted inputs fit `inputs_length` (512 -> 568 raw, 114 targets)."""
  if corrupted_lengths(2, density, mean_span, extra_inputs).inputs > inputs_length:
    raise ValueError(
        f"inputs length {inputs_length} is too short for span corruption "
        f"(density {density}, mean span {mean_span}): even 2 raw tokens need "
        f"{corrupted_lengths(2, density, mean_span, extra_inputs).inputs}."
    )
  raw = 2
  # Inputs length grows by ~(1 - density) per raw token; a linear scan is exact and cheap.
  while corrupted_lengths(raw + 1, density, mean_span, extra_inputs).inputs <= inputs_length:
    raw += 1
  return corrupted_lengths(raw, density, mean_span, extra_inputs)


def random_segmentation(num_items, num_segments, seed):
  """Lengths [num_segments] of a uniformly random composition of num_items into positive parts."""
  # Choose num_segments - 1 of the num_items - 1 gaps as cuts: ranks of iid uniforms below k - 1.
  keys = tf.random.stateless_uniform([num_items - 1], seed=seed)
  ranks = tf.argsort(tf.argsort(keys))
  cut = tf.cast(ranks < num_segments - 1, tf.int32)
  segment_ids = tf.cumsum(tf.concat([[0], cut], axis=0))
  return tf.math.unsorted_segment_sum(tf.ones_like(segment_ids), segment_ids, num_segments)


def noise_mask(length, density: float, mean_span: float, seeds):
  """Bool [length]: True on noise tokens. `seeds` is a [2, 2] int tensor."""
  length = tf.cast(length, tf.int32)
  n_f = tf.cast(length, tf.float32)
  num_noise = tf.cast(tf.round(n_f * density), tf.int32)
  num_noise = tf.clip_by_value(num_noise, 1, length - 1)
  num_spans = tf.cast(tf.round(tf.cast(num_noise, tf.float32) / mean_span), tf.int32)
  num_spans = tf.maximum(tf.minimum(tf.minimum(num_spans, num_noise), length - num_noise), 1)
  noise_lengths = random_segmentation(num_noise, num_spans, seeds[0])
  kept_lengths = random_segmentation(length - num_noise, num_spans, seeds[1])
  span_lengths = tf.reshape(tf.stack([kept_lengths, noise_lengths], axis=1), [-1])
  span_starts = tf.cumsum(span_lengths)[:-1]
  starts = tf.math.unsorted_segment_sum(tf.ones_like(span_starts), span_starts, length)
  return tf.equal(tf.math.floormod(tf.cumsum(starts), 2), 1)


def replace_spans_with_sentinels(tokens, mask, vocab_size: int):
  """Each run of True in `mask` becomes one sentinel (vocab_size - 1, - 2, ... in order)."""
  previous = tf.concat([[False], mask[:-1]], axis=0)
  first = tf.logical_and(mask, tf.logical_not(previous))
  later = tf.logical_and(mask, previous)
  sentinels = vocab_size - tf.cumsum(tf.cast(first, tokens.dtype))
  tokens = tf.where(first, sentinels, tokens)
  return tf.boolean_mask(tokens, tf.logical_not(later))


def corrupt(tokens, density: float, mean_span: float, vocab_size: int, eos_id: int, seeds):
  """(inputs, targets) of span corruption of `tokens` (>= 2 tokens), EOS appended to both."""
  mask = noise_mask(tf.size(tokens), density, mean_span, seeds)
  inputs = replace_spans_with_sentinels(tokens, mask, vocab_size)
  targets = replace_spans_with_sentinels(tokens, tf.logical_not(mask), vocab_size)
  eos = tf.constant([eos_id], dtype=tokens.dtype)
  return tf.concat([inputs, eos], axis=0), tf.concat([targets, eos], axis=0)
