"""Rank classification parity: packed / encode-once scoring equals seqio's features scored one by one."""

import jax
import numpy as np
import pytest
import seqio
import tensorflow as tf

from arch import config as config_lib
from arch import models
from arch import registry
from eval import rank_classification as rc


class ByteVocab:
  """Latin-1 characters + 3 (0 pad, 1 EOS, 2 unk): every id >= 3 decodes to one character."""

  eos_id = 1
  vocab_size = 259

  def encode(self, text):
    return [ord(c) + 3 for c in text.encode("latin-1").decode("latin-1")]


_CFG = config_lib.TransformerConfig(
    vocab_size=259, emb_dim=32, num_heads=2, head_dim=16, mlp_dim=64, num_layers=2,
    num_encoder_layers=2, num_decoder_layers=2)

# Shared prompts with several options, an empty prompt, EOS on and off, partial-scoring pairs.
_PAIRS = [
    ("The cat sat on", " the mat", False, True),
    ("The cat sat on", " a dog", False, True),
    ("The cat sat on", " it", False, True),
    ("", "Hello there.", False, False),
    ("Why? Tell me", "because", True, True),
    ("Why? Tell me", "no", True, True),
    ("ctx A", "shared end", False, False),
    ("ctx B", "shared end", False, False),
]


@pytest.fixture(scope="module", params=registry.names())
def model_and_params(request):
  model = models.get_model(request.param, _CFG)
  # Scale up the random init so that scores differ clearly between options and prompts.
  return model, jax.tree_util.tree_map(lambda x: x * 3.0, _init(model, 1))


def _init(model, seed):
  shapes = model.input_shapes(1, {"inputs": 8, "targets": 8})
  return jax.jit(lambda rng: model.get_initial_variables(rng, shapes))(
      jax.random.PRNGKey(seed))["params"]


def _seqio_batch(model, pairs, vocab, length=64):
  """Each pair through seqio's own feature converter, unpacked: the reference features."""
  def tokens(text):
    return vocab.encode(text) if text else []
  rows = []
  for prompt, option, prompt_eos, option_eos in pairs:
    p = tokens(prompt) + ([vocab.eos_id] if prompt_eos or (not prompt and _is_ed(model)) else [])
    rows.append({"inputs": p, "targets": tokens(option) + ([vocab.eos_id] if option_eos else [])})
  ds = tf.data.Dataset.from_generator(
      lambda: iter(rows), output_signature={k: tf.TensorSpec([None], tf.int32)
                                            for k in ("inputs", "targets")})
  converted = model.feature_converter_cls(pack=False)(ds, {"inputs": length, "targets": length})
  feats = list(converted.as_numpy_iterator())
  return {k: np.stack([f[k] for f in feats]) for k in feats[0]}


def _is_ed(model):
  return isinstance(model, models.EncoderDecoderModel)


@pytest.mark.parametrize("pack", [True, False])
def test_scores_equal_per_option_forward_pass(model_and_params, pack):
  model, params = model_and_params
  vocab = ByteVocab()
  scorer = rc.ModelScorer(model, params, vocab,
                          rc.ScoringConfig(pack=pack, row_length=64, batch_tokens=128))
  got = scorer.score(_PAIRS)
  reference = np.asarray(jax.jit(model.score_batch)(params, _seqio_batch(model, _PAIRS, vocab)))
  np.testing.assert_allclose(got, reference, rtol=1e-5, atol=1e-4)
  assert len(set(np.round(reference, 3))) > 4  # the check has teeth: options score differently
  if pack:  # several pairs share rows: fewer rows than pairs were scored
    assert len(scorer.shapes_compiled) == 1


def test_packed_rows_hold_several_pairs_and_ed_encodes_each_prompt_once(model_and_params):
  model, params = model_and_params
  scorer = rc.ModelScorer(model, params, ByteVocab(), rc.ScoringConfig(row_length=64))
  items = scorer._items(list(dict.fromkeys(_PAIRS)))  # pylint: disable=protected-access
  if _is_ed(model):
    (feats, spans), = list(scorer._ed_batches(items))  # pylint: disable=protected-access
    n_prompts = len({p for p, _, _, _ in _PAIRS})
    # Each distinct prompt appears exactly once among the encoder rows: count EOS-free segments.
    segs = feats["encoder_segment_ids"]
    assert sum(len(set(r[r > 0])) for r in segs) == n_prompts
    assert feats["encoder_row"].shape[0] == feats["decoder_target_tokens"].shape[0]
  else:
    (feats, spans), = list(scorer._decoder_batches(items))  # pylint: disable=protected-access
    assert feats["decoder_segment_ids"].max() > 1
  assert len(spans) == len(set(_PAIRS))


def test_ed_encode_once_equals_reencoding_with_many_options():
  model = models.get_model("encoder_decoder", _CFG)
  params = _init(model, 2)
  prompts = [f"prompt number {i} " * (1 + i % 3) for i in range(5)]
  pairs = [(p, f"option {j}{'!' * j}", True, True) for p in prompts for j in range(3)]
  vocab = ByteVocab()
  once = rc.ModelScorer(model, params, vocab, rc.ScoringConfig(row_length=64, batch_tokens=256))
  reference = jax.jit(model.score_batch)(params, _seqio_batch(model, pairs, vocab, length=128))
  np.testing.assert_allclose(once.score(pairs), np.asarray(reference), rtol=1e-5, atol=1e-4)


def test_features_match_seqio_decoder_converter():
  model = models.get_model("non_causal_decoder", _CFG)
  pairs = [("abc", "de", False, True), ("xy", "z", True, False)]
  vocab = ByteVocab()
  scorer = rc.ModelScorer(model, None, vocab, rc.ScoringConfig(pack=True, row_length=16))
  (feats, _), = list(scorer._decoder_batches(scorer._items(pairs)))  # pylint: disable=protected-access
  rows = [{"inputs": [100, 101, 102], "targets": [103, 104, 1]},
          {"inputs": [123, 124, 1], "targets": [125]}]
  ds = tf.data.Dataset.from_generator(
      lambda: iter(rows), output_signature={k: tf.TensorSpec([None], tf.int32)
                                            for k in ("inputs", "targets")})
  ref = next(seqio.DecoderFeatureConverter(pack=True)(
      ds, {"inputs": 8, "targets": 8}).as_numpy_iterator())
  # Pairs are packed longest first; seqio packs in order: the same two segments here.
  for key, value in ref.items():
    np.testing.assert_array_equal(feats[key][0], value, err_msg=key)


def test_long_prompts_lose_their_start():
  model = models.get_model("causal_decoder", _CFG)
  scorer = rc.ModelScorer(model, None, ByteVocab(), rc.ScoringConfig(max_length=32))
  (item,) = scorer._items([("x" * 100 + "END", "opt", False, True)])  # pylint: disable=protected-access
  assert len(item.prompt) + len(item.option) == 32
  assert item.prompt[-3:] == ByteVocab().encode("END") and len(item.option) == 4


def _greedy_continuation(model, params, vocab, prompt, steps=2):
  """The model's own greedy continuation of `prompt` (stops at a pad, EOS or unk id)."""
  logits_fn = jax.jit(model.logits)
  text = ""
  for _ in range(steps):
    batch = _seqio_batch(model, [(prompt, text + "x", False, False)], vocab)
    pos = int(np.flatnonzero(batch["decoder_loss_weights"][0])[-1])
    token = int(np.argmax(np.asarray(logits_fn(params, batch))[0, pos]))
    if not 3 <= token < ByteVocab.vocab_size:
      break
    text += chr(token - 3)
  return text


def test_greedy_match_agrees_with_argmax(model_and_params):
  model, params = model_and_params
  vocab = ByteVocab()
  hits = [(p, c, False, False) for p in ("The cat", "Why", "Hello")
          if (c := _greedy_continuation(model, params, vocab, p))]
  assert hits, "no greedy continuation found"
  pairs = _PAIRS + hits + [(p, c + c, False, False) for p, c, _, _ in hits]
  batch = _seqio_batch(model, pairs, vocab)
  argmax = np.asarray(jax.jit(lambda p, b: jax.numpy.argmax(model.logits(p, b), -1))(
      params, batch))
  w = batch["decoder_loss_weights"] > 0
  want = [bool(np.all(argmax[i][w[i]] == batch["decoder_target_tokens"][i][w[i]]))
          for i in range(len(pairs))]
  scorer = rc.ModelScorer(model, params, vocab, rc.ScoringConfig(row_length=64))
  got = scorer.greedy_match(pairs)
  np.testing.assert_array_equal(got, want)
  assert got[len(_PAIRS):len(_PAIRS) + len(hits)].all()  # the model's own continuations match


def test_ed_batches_stay_within_batch_tokens_for_a_blimp_shaped_suite():
  """One empty prompt with thousands of long options (BLiMP) no longer lands in one huge batch."""
  model = models.get_model("encoder_decoder", _CFG)
  params = _init(model, 3)
  vocab = ByteVocab()
  cfg = rc.ScoringConfig(row_length=64, batch_tokens=1024)
  scorer = rc.ModelScorer(model, params, vocab, cfg)
  rng = np.random.default_rng(0)
  words = ["the", "a", "cat", "dogs", "sleeps", "ran", "who", "very", "quickly", "never"]
  options = [" ".join(rng.choice(words, size=rng.integers(6, 14))) + "." for _ in range(3000)]
  pairs = [("", o, False, True) for o in dict.fromkeys(options)]
  items = scorer._items(pairs)  # pylint: disable=protected-access
  batches = list(scorer._ed_batches(items))  # pylint: disable=protected-access
  assert len(batches) > 1
  for feats, _ in batches:  # the memory bound: positions per side, hence logits per batch
    assert feats["decoder_target_tokens"].size <= cfg.batch_tokens
    assert feats["encoder_input_tokens"].size <= cfg.batch_tokens
  assert sorted(i for _, spans in batches for i, *_ in spans) == list(range(len(pairs)))
  # Peak memory of the compiled scoring step, stated: a few logits-sized buffers of one batch
  # (batch_tokens x V float32), far from the 13,400-row batch that exhausted memory before.
  feats = batches[0][0]
  compiled = jax.jit(model.token_log_probs).lower(params, feats).compile()
  analysis = compiled.memory_analysis()
  if analysis is not None:
    logits_bytes = cfg.batch_tokens * _CFG.vocab_size * 4
    assert analysis.temp_size_in_bytes <= 8 * logits_bytes
  # The spilled options still score as one forward pass each (a sample, through the public API).
  sample = pairs[::150]
  reference = jax.jit(model.score_batch)(params, _seqio_batch(model, sample, vocab, length=128))
  np.testing.assert_allclose(scorer.score(pairs)[::150], np.asarray(reference), rtol=1e-5,
                             atol=1e-4)
