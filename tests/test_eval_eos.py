"""EOS placement per suite, token by token, in the rows rank classification builds for CD, ND, ED.

T0-Eval follows T0's seqio tasks (`inputs` add_eos=False, `targets` add_eos=True): the option ends
with a scored EOS and the prompt has none. EAI-Eval, BLiMP and the embedded families add no EOS
(an encoder-decoder's empty prompt is one EOS: the encoder needs a token).
"""

import numpy as np
import pytest

from arch import config as config_lib
from arch import models
from arch import registry
from eval import rank_classification as rc
from eval import suites

_EOS = 1
_CFG = config_lib.TransformerConfig(
    vocab_size=259, emb_dim=16, num_heads=2, head_dim=8, mlp_dim=32, num_layers=1,
    num_encoder_layers=1, num_decoder_layers=1)


class ByteVocab:
  eos_id = _EOS
  vocab_size = 259

  def encode(self, text):
    return [ord(c) + 3 for c in text]


def _enc(text):
  return ByteVocab().encode(text)


# suite -> (prompt EOS, option EOS) of the paper's protocols.
_RULES = {"t0_eval": (False, True), "eai_eval": (False, False), "blimp": (False, False),
          "embedded": (False, False)}


def test_suites_carry_the_papers_eos_rules():
  for name, rule in _RULES.items():
    s = suites.get_suite(name)
    assert (s.prompt_eos, s.option_eos) == rule, name
    assert s.eos_rule, name  # stated in results.json's protocol


def _rows(arch, pair):
  scorer = rc.ModelScorer(models.get_model(arch, _CFG), None, ByteVocab(),
                          rc.ScoringConfig(row_length=16))
  # pylint: disable=protected-access
  items = scorer._items([pair])
  build = scorer._ed_batches if scorer.is_encoder_decoder else scorer._decoder_batches
  ((feats, spans),) = list(build(items))
  return scorer.is_encoder_decoder, feats, spans


@pytest.mark.parametrize("arch", registry.names())
@pytest.mark.parametrize("suite", list(_RULES))
def test_eos_tokens_in_scored_rows(arch, suite):
  s = suites.get_suite(suite)
  prompt = "" if suite == "blimp" else "Is it?"  # BLiMP scores whole sentences
  option = " yes"
  ed, feats, ((_, row, start, end),) = _rows(arch, (prompt, option, s.prompt_eos, s.option_eos))
  want_option = _enc(option) + ([_EOS] if s.option_eos else [])
  targets = feats["decoder_target_tokens"][row]
  weights = feats["decoder_loss_weights"][row]
  assert list(targets[start:end]) == want_option  # the scored span: option (+ its EOS)
  assert list(np.nonzero(weights)[0]) == list(range(start, end))
  assert not targets[end:].any()  # nothing after the option
  if ed:
    enc_row = feats["encoder_row"][row]
    enc = feats["encoder_input_tokens"][enc_row]
    # The encoder reads the prompt and nothing after it (an empty prompt is a lone EOS).
    want_prompt = _enc(prompt) if prompt else [_EOS]
    assert list(enc[:len(want_prompt)]) == want_prompt and not enc[len(want_prompt):].any()
    assert start == 0
  else:
    want_prompt = _enc(prompt) + ([_EOS] if s.prompt_eos else [])
    assert list(targets[:start]) == want_prompt  # no EOS between prompt and option
    # The prefix (read bidirectionally by ND) is the prompt plus one position.
    assert list(np.nonzero(feats["decoder_causal_attention"][row])[0]) == list(
        range(min(len(want_prompt) + 1, end)))
  assert list(targets).count(_EOS) == int(s.option_eos) + int(s.prompt_eos and not ed)


def test_t0_eval_has_no_eos_after_the_prompt_for_any_architecture():
  """The old rule (EOS after T0's prompt) put an EOS token before the option: never again."""
  s = suites.get_suite("t0_eval")
  for arch in registry.names():
    ed, feats, ((_, row, start, _),) = _rows(arch, ("Q:", " A", s.prompt_eos, s.option_eos))
    before = (feats["encoder_input_tokens"][feats["encoder_row"][row]] if ed
              else feats["decoder_target_tokens"][row][:start])
    assert _EOS not in list(before), arch
