"""The decoder-only feature converter: seqio's, plus rows of a set length for prefix-LM examples.

seqio's DecoderFeatureConverter makes a row of inputs + targets positions when the task has
'inputs' (its PrefixLMFeatureConverter): right for examples whose inputs and targets both may reach
their lengths (span corruption: 512 + 114), twice too long for examples whose inputs and targets
share one total (a sequence of L tokens split anywhere needs inputs L and targets L, yet every
example is L tokens). TASK_FEATURE_LENGTHS['decoder_length'] sets the row instead:

  {'inputs': 626, 'targets': 626, 'decoder_length': 626}  -> rows of 626: one split sequence each

Everything else is seqio's: inputs‖targets concatenated, loss on the targets only,
decoder_causal_attention over the inputs plus one position, packing (segments and positions) or
padding. An example longer than the row is an error, never truncated. The key is this converter's,
not a task feature: it is removed before seqio validates the task's features, and callers that
check TASK_FEATURE_LENGTHS against an objective drop `ROW_LENGTH_KEYS` of the model's converter
first (experiments/run_config.py). Without the key the converter is seqio's, unchanged.
"""

from __future__ import annotations

from typing import Mapping, Optional

import seqio
import tensorflow as tf

DECODER_LENGTH = "decoder_length"


def row_length_keys(converter_cls) -> tuple[str, ...]:
  """TASK_FEATURE_LENGTHS keys that `converter_cls` reads beyond the task's features."""
  return tuple(getattr(converter_cls, "ROW_LENGTH_KEYS", ()))


def split_lengths(task_feature_lengths: Mapping[str, int]) -> tuple[dict, Optional[int]]:
  """(the task's feature lengths, the decoder row length or None)."""
  lengths = dict(task_feature_lengths)
  row = lengths.pop(DECODER_LENGTH, None)
  if row is None:
    return lengths, None
  if isinstance(row, bool) or not isinstance(row, int) or row < 1:
    raise ValueError(f"TASK_FEATURE_LENGTHS[{DECODER_LENGTH!r}] must be a positive integer (the "
                     f"decoder row length), got {row!r}.")
  if "inputs" not in lengths or "suffixes" in lengths:
    raise ValueError(
        f"TASK_FEATURE_LENGTHS[{DECODER_LENGTH!r}] sets the row of inputs‖targets examples; "
        f"{sorted(lengths)} is not inputs + targets (a task without 'inputs' has rows of "
        f"'targets' positions already).")
  return lengths, int(row)


class _PrefixLMRows(seqio.PrefixLMFeatureConverter):
  """seqio's PrefixLMFeatureConverter with rows of `row_length` instead of inputs + targets."""

  def __init__(self, row_length: int, **kwargs):
    self._row_length = row_length
    super().__init__(**kwargs)

  def _concat_and_add_masks(self, features):
    # seqio pads empty targets to one position; the row must hold that too.
    size = tf.size(features["inputs"]) + tf.maximum(tf.size(features["targets"]), 1)
    fits = tf.debugging.assert_less_equal(
        size, self._row_length,
        message=(f"An example's inputs + targets exceed TASK_FEATURE_LENGTHS['{DECODER_LENGTH}']"
                 f" = {self._row_length}; raise it (or drop it: rows of inputs + targets)."))
    with tf.control_dependencies([fits]):
      return super()._concat_and_add_masks(features)

  def _concat_task_feature_lengths(self, task_feature_lengths):
    lengths = dict(super()._concat_task_feature_lengths(task_feature_lengths))
    for key in ("targets", "inputs_width", "inputs_width_add_pos"):
      lengths[key] = self._row_length
    return lengths

  def get_model_feature_lengths(self, task_feature_lengths):
    lengths = super().get_model_feature_lengths(task_feature_lengths)
    return {k: v if k in self._passthrough_features else self._row_length
            for k, v in lengths.items()}


class DecoderFeatureConverter(seqio.DecoderFeatureConverter):
  """seqio's decoder converter; TASK_FEATURE_LENGTHS['decoder_length'] sets prefix-LM rows."""

  ROW_LENGTH_KEYS = (DECODER_LENGTH,)

  def __init__(self, loss_on_targets_only: bool = True, pack: bool = True,
               use_custom_packing_ops: bool = False, apply_length_check: bool = True,
               bos_id: int = 0, passthrough_features=None) -> None:
    super().__init__(loss_on_targets_only=loss_on_targets_only, pack=pack,
                     use_custom_packing_ops=use_custom_packing_ops,
                     apply_length_check=apply_length_check, bos_id=bos_id,
                     passthrough_features=passthrough_features)
    self._options = dict(loss_on_targets_only=loss_on_targets_only, pack=pack,
                         use_custom_packing_ops=use_custom_packing_ops,
                         apply_length_check=apply_length_check, bos_id=bos_id,
                         passthrough_features=passthrough_features)

  def __call__(self, ds: tf.data.Dataset, task_feature_lengths: Mapping[str, int]):
    lengths, row = split_lengths(task_feature_lengths)
    if row is None:
      return super().__call__(ds, lengths)
    return _PrefixLMRows(row, **self._options)(ds, lengths)

  def get_model_feature_lengths(self, task_feature_lengths: Mapping[str, int]):
    lengths, row = split_lengths(task_feature_lengths)
    if row is None:
      return super().get_model_feature_lengths(lengths)
    return _PrefixLMRows(row, **self._options).get_model_feature_lengths(lengths)
