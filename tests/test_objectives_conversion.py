"""Feature conversion per architecture on hand-built examples: the features the model API expects."""

import numpy as np
import seqio
import tensorflow as tf


def _convert(converter, examples, lengths):
  keys = examples[0].keys()
  ds = tf.data.Dataset.from_generator(
      lambda: iter(examples),
      output_signature={k: tf.TensorSpec([None], tf.int32) for k in keys},
  )
  return [dict(e) for e in converter(ds, lengths).as_numpy_iterator()]


DENOISED = {"inputs": np.array([5, 6, 4099, 1], np.int32), "targets": np.array([4099, 7, 1], np.int32)}


def test_decoder_only_gets_inputs_then_targets_with_prefix_marked():
  conv = seqio.DecoderFeatureConverter(loss_on_targets_only=True, pack=False)
  (f,) = _convert(conv, [DENOISED], {"inputs": 5, "targets": 4})
  np.testing.assert_array_equal(f["decoder_target_tokens"], [5, 6, 4099, 1, 4099, 7, 1, 0, 0])
  # Unpacked rows shift the padded row right, so the last token reaches one pad position (weight 0).
  np.testing.assert_array_equal(f["decoder_input_tokens"], [0, 5, 6, 4099, 1, 4099, 7, 1, 0])
  np.testing.assert_array_equal(f["decoder_loss_weights"], [0, 0, 0, 0, 1, 1, 1, 0, 0])
  # ND attends bidirectionally over the inputs plus one position; CD ignores this feature.
  np.testing.assert_array_equal(f["decoder_causal_attention"], [1, 1, 1, 1, 1, 0, 0, 0, 0])


def test_decoder_only_packed_rows_carry_segments():
  conv = seqio.DecoderFeatureConverter(loss_on_targets_only=True, pack=True)
  second = {"inputs": np.array([8], np.int32), "targets": np.array([9, 1], np.int32)}
  (f,) = _convert(conv, [DENOISED, second], {"inputs": 5, "targets": 5})
  np.testing.assert_array_equal(f["decoder_target_tokens"], [5, 6, 4099, 1, 4099, 7, 1, 8, 9, 1])
  np.testing.assert_array_equal(f["decoder_segment_ids"], [1] * 7 + [2] * 3)
  np.testing.assert_array_equal(f["decoder_positions"], list(range(7)) + [0, 1, 2])
  np.testing.assert_array_equal(f["decoder_loss_weights"], [0, 0, 0, 0, 1, 1, 1, 0, 1, 1])
  np.testing.assert_array_equal(f["decoder_causal_attention"], [1, 1, 1, 1, 1, 0, 0, 1, 1, 0])
  # Each segment starts from BOS (0), never from the previous segment's last token.
  assert f["decoder_input_tokens"][7] == 0


def test_full_lm_on_decoders_weights_every_token():
  conv = seqio.DecoderFeatureConverter(loss_on_targets_only=True, pack=False)
  (f,) = _convert(conv, [{"targets": np.array([5, 6, 7, 1], np.int32)}], {"targets": 6})
  np.testing.assert_array_equal(f["decoder_target_tokens"], [5, 6, 7, 1, 0, 0])
  np.testing.assert_array_equal(f["decoder_input_tokens"], [0, 5, 6, 7, 1, 0])
  np.testing.assert_array_equal(f["decoder_loss_weights"], [1, 1, 1, 1, 0, 0])
  assert "decoder_causal_attention" not in f


def test_encoder_decoder_gets_inputs_in_the_encoder():
  conv = seqio.EncDecFeatureConverter(pack=False)
  (f,) = _convert(conv, [DENOISED], {"inputs": 5, "targets": 4})
  np.testing.assert_array_equal(f["encoder_input_tokens"], [5, 6, 4099, 1, 0])
  np.testing.assert_array_equal(f["decoder_target_tokens"], [4099, 7, 1, 0])
  np.testing.assert_array_equal(f["decoder_input_tokens"], [0, 4099, 7, 1])
  np.testing.assert_array_equal(f["decoder_loss_weights"], [1, 1, 1, 0])
