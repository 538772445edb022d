"""Cached decoding (predict_batch): parity with full recomputation, positions, batching, sampling.
"""

import jax
import numpy as np
import pytest

from arch import decoding
from arch import models
from arch import testing

ARCHS = ("causal_decoder", "non_causal_decoder", "encoder_decoder")
# Rows of different lengths (right-padded): left-padding in the cache must keep positions per row.
PROMPTS = np.array([[5, 6, 7, 8, 9, 10, 0],
                    [11, 12, 0, 0, 0, 0, 0],
                    [20, 21, 22, 23, 24, 25, 26]], np.int32)


def _sharp_model(name, **overrides):
  """An untrained tiny model whose greedy continuations vary from token to token.

  At init the tiny models repeat one token forever, which would hide a wrong position; scaling the
  layer weights up (not the embedding) makes each step's argmax depend on the context.
  """
  model = models.get_model(name, testing.tiny_config(**overrides))
  shapes = model.input_shapes(3, {"inputs": 8, "targets": 8}, pack=False)
  params = model.get_initial_variables(jax.random.PRNGKey(1), shapes)["params"]
  scaled = jax.tree_util.tree_map(lambda x: x * 3.0, params)
  scaled["token_embedder"] = params["token_embedder"]
  return model, scaled


def _full_network_logits(model, params, prompts_BxP, forced_BxN):
  """The model's own logits on [BOS, prompt, forced] rows as the feature converter builds them."""
  lengths = (prompts_BxP > 0).sum(1)
  n = forced_BxN.shape[1]
  if model.arch.encoder_decoder:
    dec_in = np.concatenate([np.zeros((len(prompts_BxP), 1), np.int32), forced_BxN[:, :-1]], 1)
    feats = {"encoder_input_tokens": prompts_BxP, "decoder_input_tokens": dec_in,
             "decoder_target_tokens": forced_BxN, "decoder_loss_weights": np.ones_like(forced_BxN)}
    return np.asarray(model.logits(params, feats))
  length = prompts_BxP.shape[1] + n
  seq = np.zeros((len(prompts_BxP), length), np.int32)
  causal = np.zeros_like(seq)
  for b, p in enumerate(lengths):
    seq[b, :p + n] = np.concatenate([prompts_BxP[b, :p], forced_BxN[b]])
    causal[b, :p + 1] = 1
  dec_in = np.zeros_like(seq)
  dec_in[:, 1:] = seq[:, :-1]
  feats = {"decoder_input_tokens": dec_in, "decoder_target_tokens": seq,
           "decoder_loss_weights": np.ones_like(seq), "decoder_causal_attention": causal}
  logits = np.asarray(model.logits(params, feats))
  # The logits that predict forced token i sit at the prompt's last position + i.
  return np.stack([logits[b, p:p + n] for b, p in enumerate(lengths)])


# The paper's relative bias always; rotary and ALiBi in the slow pass (several compiles each).
@pytest.mark.parametrize("scheme", ["relative", pytest.param("rotary", marks=pytest.mark.slow),
                                    pytest.param("alibi", marks=pytest.mark.slow)])
@pytest.mark.parametrize("name", ARCHS)
def test_cached_steps_equal_full_recomputation(name, scheme):
  """Every cached step's logits equal the full network's at that position, and greedy tokens agree
  one for one. Generated tokens' positions off by one give logit errors of ~10 (relative, rotary)
  against the 1e-3 tolerance; for ALiBi a shift shared by all of a causal query's keys cancels in
  the softmax, so ND's bidirectional prompt block is what pins its key positions."""
  overrides = dict(position_scheme=scheme)
  if name == "non_causal_decoder" and scheme == "relative":
    overrides["prefix_bucketing"] = "bidirectional"  # the harder ND bucketing: both directions
  model, params = _sharp_model(name, **overrides)
  forced = np.random.RandomState(0).randint(2, 200, size=(3, 10)).astype(np.int32)
  cached = np.asarray(decoding.forced_step_logits(model, params, {"inputs": PROMPTS}, forced))
  full = _full_network_logits(model, params, PROMPTS, forced)
  np.testing.assert_allclose(cached[..., :200], full[..., :200], rtol=1e-3, atol=1e-3)

  greedy = np.asarray(model.predict_batch(params, {"inputs": PROMPTS}, max_new_tokens=16,
                                          eos_id=None))
  reference = np.asarray(decoding.greedy_no_cache(model, params, {"inputs": PROMPTS},
                                                  max_new_tokens=16, eos_id=None))
  np.testing.assert_array_equal(greedy, reference)
  assert len(set(greedy[0].tolist())) > 3, "a constant continuation would hide position errors"


def test_nd_reads_the_prompt_bidirectionally():
  """ND's prefill differs from CD's on the same weights (the prompt block is bidirectional)."""
  nd, params = _sharp_model("non_causal_decoder")
  cd = models.get_model("causal_decoder", nd.config)
  forced = np.full((3, 4), 7, np.int32)
  nd_logits = np.asarray(decoding.forced_step_logits(nd, params, {"inputs": PROMPTS}, forced))
  cd_logits = np.asarray(decoding.forced_step_logits(cd, params, {"inputs": PROMPTS}, forced))
  assert np.abs(nd_logits - cd_logits).max() > 1e-2


@pytest.mark.parametrize("name", ARCHS)
def test_batched_equals_one_prompt_at_a_time(name):
  model, params = _sharp_model(name)
  batched = np.asarray(model.predict_batch(params, {"inputs": PROMPTS}, max_new_tokens=12))
  for b, row in enumerate(PROMPTS):
    alone = row[:(row > 0).sum()][None, :]
    single = np.asarray(model.predict_batch(params, {"inputs": alone}, max_new_tokens=12))
    np.testing.assert_array_equal(batched[b], single[0])


def test_stops_at_eos_and_pads_after_it():
  model, params = _sharp_model("causal_decoder")
  free = np.asarray(model.predict_batch(params, {"inputs": PROMPTS[:1]}, max_new_tokens=12,
                                        eos_id=None))[0]
  eos = int(free[3])
  first = int(np.flatnonzero(free == eos)[0])
  stopped = np.asarray(model.predict_batch(params, {"inputs": PROMPTS[:1]}, max_new_tokens=12,
                                           eos_id=eos))[0]
  np.testing.assert_array_equal(stopped[:first + 1], free[:first + 1])
  assert (stopped[first + 1:] == 0).all() and first + 1 < 12


def test_sampling_reproduces_with_a_seed():
  model, params = _sharp_model("causal_decoder")
  batch = {"inputs": PROMPTS}
  sample = lambda seed, **kw: np.asarray(model.predict_batch(  # noqa: E731
      params, batch, jax.random.PRNGKey(seed), max_new_tokens=12, eos_id=None, **kw))
  a, b, c = sample(3, temperature=2.0), sample(3, temperature=2.0), sample(4, temperature=2.0)
  np.testing.assert_array_equal(a, b)
  assert (a != c).any()
  greedy = np.asarray(model.predict_batch(params, batch, max_new_tokens=12, eos_id=None))
  np.testing.assert_array_equal(sample(5, temperature=1.0, top_k=1), greedy)
  top3 = sample(6, temperature=5.0, top_k=3)
  assert (top3 != greedy).any()


def test_scanned_layers_decode_as_unrolled():
  model, params = _sharp_model("causal_decoder")
  scanned = models.get_model("causal_decoder", model.config.replace(scan_layers=True))
  from arch import stack  # pylint: disable=g-import-not-at-top
  out = model.predict_batch(params, {"inputs": PROMPTS}, max_new_tokens=6)
  out_scanned = scanned.predict_batch(stack.unrolled_to_scanned(params), {"inputs": PROMPTS},
                                      max_new_tokens=6)
  np.testing.assert_array_equal(out, out_scanned)


@pytest.mark.parametrize("batch, kwargs, match", [
    ({"inputs": PROMPTS}, dict(max_new_tokens=8, cache_length=10),
     "cache_length = 10 is too short"),
    ({"inputs": np.array([[3, 0, 4]])}, dict(max_new_tokens=4), "padding\\) inside its prompt"),
    ({"inputs": PROMPTS}, dict(max_new_tokens=0), "max_new_tokens = 0"),
    ({"inputs": PROMPTS}, dict(max_new_tokens=4, top_k=500), "top_k = 500"),
    ({"inputs": PROMPTS}, dict(max_new_tokens=4, temperature=-1.0), "temperature = -1.0"),
    ({"decoder_input_tokens": PROMPTS}, dict(max_new_tokens=4), "needs batch\\['inputs'\\]"),
])
def test_bad_requests_fail_clearly(batch, kwargs, match):
  model = models.get_model("causal_decoder", testing.tiny_config())
  with pytest.raises(decoding.DecodeInputError, match=match):
    model.predict_batch({}, batch, **kwargs)
