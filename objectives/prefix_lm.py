"""Prefix language modeling (PLM): a sequence split at a point uniform in [1, L).

The stream (the paper's `targets_for_prefix_lm_objective`, T5's preprocessors): every document is
followed by one EOS, the documents are concatenated, and the stream is cut into L-token sequences
(L = TASK_FEATURE_LENGTHS['targets'], 626 in the paper). So EOS marks document ends wherever they
fall, inside the prefix or the targets, exactly as FLM; no EOS is added at the split or at the end
of a sequence. Each sequence is split at s uniform in [1, L): 'inputs' the first s tokens, 'targets'
the other L - s. Decoders see inputs‖targets with loss on the targets only and bidirectional
attention over the inputs for ND (seqio's decoder_causal_attention); ED encodes the inputs and
decodes the targets.

Rows (the paper's two public configs). TASK_FEATURE_LENGTHS is {'inputs': L, 'targets': L}.
- Encoder-decoder (enc_dec_c4_prefix_lm.gin, `pack_prefix_lm_encoder_decoder`): examples come in
  complementary pairs, two consecutive sequences split at s and L - s, so seqio's packer fills each
  row with exactly one pair: L encoder and L decoder tokens, 2L tokens per row at batch 1024.
- Decoder-only (nc_dec_c4_prefix_lm.gin, `pack_prefix_lm_decoder_only`): every sequence is its own
  example with its own split point, independent of every other.
`paired=None` (the default) picks by the feature converter the batches are built for
(objectives.get_dataset sets it through `packing_for`): pairs for seqio's EncDecFeatureConverter,
independent sequences otherwise, and pairs when no converter is known (a bare Task.get_dataset).
True / False force either. The post-objective shuffle moves pairs, never splitting one.

Decoder row length: the architecture's converter decides (arch/converters.py), not this module.
By default a decoder row is inputs + targets = 2L positions, holding two independent sequences as
two packed segments (attention never crosses them; positions restart): 1024 rows carry the paper's
2048 x L tokens per step. With TASK_FEATURE_LENGTHS['decoder_length'] = L a row holds exactly one
sequence (every example is s + (L - s) = L tokens), 2048 rows per step: the paper's ND layout.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Iterator, Mapping, Optional

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


_ENCODER_DECODER_ROWS: contextvars.ContextVar[Optional[bool]] = contextvars.ContextVar(
    "prefix_lm_encoder_decoder_rows", default=None)


@contextlib.contextmanager
def packing_for(feature_converter: Optional[seqio.FeatureConverter]) -> Iterator[None]:
  """Within it, `paired=None` pairs sequences iff `feature_converter` builds encoder-decoder rows."""
  rows = None if feature_converter is None else isinstance(feature_converter,
                                                           seqio.EncDecFeatureConverter)
  token = _ENCODER_DECODER_ROWS.set(rows)
  try:
    yield
  finally:
    _ENCODER_DECODER_ROWS.reset(token)


def uses_pairs(paired: Optional[bool] = None) -> bool:
  """Whether examples come in complementary pairs: `paired`, else by the converter in scope."""
  if paired is not None:
    return bool(paired)
  rows = _ENCODER_DECODER_ROWS.get()
  return True if rows is None else rows


@gin.configurable(module="objectives.prefix_lm")
def prefix_lm(
    ds: tf.data.Dataset,
    sequence_length: Mapping[str, int],
    output_features: Mapping[str, seqio.Feature],
    length: Optional[int] = None,
    paired: Optional[bool] = None,
) -> tf.data.Dataset:
  """Tokenized documents {'targets'} -> {'inputs', 'targets'} prefix-LM examples."""
  total = chunk_length(sequence_length, length)
  # EOS after every document, before the stream is cut (targets_for_prefix_lm_objective's
  # append_eos), so a document end is visible to the model wherever the cut or the split falls.
  eos_id = output_features["targets"].vocabulary.eos_id

  if not uses_pairs(paired):

    @seqio.map_over_dataset(num_seeds=1)
    def split_one(tokens, seed):
      return _split(tokens, _uniform_split(tf.size(tokens), seed))

    pieces = common.chunk_stream(ds, total, eos_id=eos_id, min_length=2)
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

  units = common.chunk_stream(ds, 2 * total, eos_id=eos_id, min_length=2)
  pairs = common.shuffle(split_pair(units))
  return pairs.flat_map(emit)


# eos: no feature *ends* in EOS by rule; EOS sits at document ends inside the stream (as full_lm).
registry.register(registry.Objective(
    name="prefix_lm", short="PLM", preprocessor=prefix_lm, features=("inputs", "targets"),
    raw_length=lambda task_feature_lengths, vocabulary: chunk_length(task_feature_lengths),
    eos={"inputs": False, "targets": False}, tiny_lengths={"inputs": 64, "targets": 64},
))
