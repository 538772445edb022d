"""Held-out continuation loss (issue 13): equals hand-computed log-probs on every architecture."""

import json

import gin
import jax
import numpy as np
import pytest

from arch import config as config_lib
from arch import models
from arch import registry
from eval import continuation
from eval import rank_classification as rc
from eval import zero_shot
from experiments import testing
from experiments.runtime.errors import ConfigError

_CFG = config_lib.TransformerConfig(
    vocab_size=259, emb_dim=32, num_heads=2, head_dim=16, mlp_dim=64, num_layers=2,
    num_encoder_layers=2, num_decoder_layers=2)
_P, _C = 6, 5
_TEXT = ("Now is the winter of our discontent made glorious summer by this sun of York. ",
         "Short.",
         "Friends, Romans, countrymen, lend me your ears; I come to bury Caesar.")


class ByteVocab:
  """Latin-1 characters + 3 (0 pad, 1 EOS, 2 unk)."""

  eos_id = 1
  vocab_size = 259

  def encode(self, text):
    return [ord(c) + 3 for c in text]


@pytest.fixture(autouse=True)
def clean_gin():
  yield
  gin.clear_config()


@pytest.fixture(scope="module", params=registry.names())
def model_and_params(request):
  model = models.get_model(request.param, _CFG)
  shapes = model.input_shapes(1, {"inputs": 8, "targets": 8})
  params = jax.jit(lambda r: model.get_initial_variables(r, shapes))(jax.random.PRNGKey(3))
  # Scaled up so that attending to the prefix changes the continuation's log-probs clearly.
  return model, jax.tree_util.tree_map(lambda x: x * 3.0, params["params"])


def _windows(n=4, p=_P, c=_C):
  cfg = continuation.ContinuationConfig(prefix_length=p, continuation_length=c, windows=n)
  return continuation.heldout_windows("text", ByteVocab(), cfg, documents=_TEXT)


def _hand_log_probs(model, params, prefix, cont, prefix_attention=None):
  """Sum of log_softmax(logits)[target] over the continuation, from a batch built here."""
  if isinstance(model, models.EncoderDecoderModel):
    batch = {"encoder_input_tokens": [prefix], "decoder_target_tokens": [cont],
             "decoder_input_tokens": [[0] + cont[:-1]]}
    scored = slice(0, len(cont))
    targets = cont
  else:
    seq = prefix + cont
    n = len(prefix) + 1 if prefix_attention is None else prefix_attention
    batch = {"decoder_target_tokens": [seq], "decoder_input_tokens": [[0] + seq[:-1]],
             "decoder_causal_attention": [[1] * n + [0] * (len(seq) - n)]}
    scored = slice(len(prefix), len(seq))
    targets = seq
  batch = {k: np.asarray(v, np.int32) for k, v in batch.items()}
  batch["decoder_loss_weights"] = np.ones_like(batch["decoder_target_tokens"])
  logp_LxV = jax.nn.log_softmax(np.asarray(model.logits(params, batch), np.float64)[0], axis=-1)
  return float(sum(logp_LxV[i, targets[i]] for i in range(len(targets))[scored]))


def test_windows_are_fixed_round_robin_and_hold_no_eos():
  w = _windows(n=13)
  width = _P + _C
  ids = [ByteVocab().encode(t) for t in _TEXT]
  # Round one: the first window of each long-enough document ("Short." has none), then round two.
  expected = [ids[0][:width], ids[2][:width], ids[0][width:2 * width], ids[2][width:2 * width]]
  assert [list(p + c) for p, c in w.pairs[:4]] == expected
  assert all(len(p) == _P and len(c) == _C and 1 not in p + c for p, c in w.pairs)
  assert _windows(n=13).ids_sha256() == w.ids_sha256() != _windows(n=12).ids_sha256()


def test_continuation_loss_equals_hand_computed_log_probs(model_and_params):
  model, params = model_and_params
  windows = _windows()
  scorer = rc.ModelScorer(model, params, ByteVocab(), rc.ScoringConfig(row_length=32,
                                                                        batch_tokens=64))
  got = continuation.continuation_loss(scorer, windows)
  hand = [_hand_log_probs(model, params, list(p), list(c)) for p, c in windows.pairs]
  np.testing.assert_allclose(got["per_window"], [-h / _C for h in hand], rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(got["nats_per_token"], -sum(hand) / (_C * len(hand)), rtol=1e-5)
  assert got["tokens"] == _C * 4 and got["windows"] == 4
  assert got["stderr"] == pytest.approx(np.std(got["per_window"], ddof=1) / 2)
  assert got["ids_sha256"] == windows.ids_sha256()  # the same ids whatever the architecture
  if model.name == "non_causal_decoder":  # the prefix is read bidirectionally: it matters here
    causal = [_hand_log_probs(model, params, list(p), list(c), prefix_attention=0)
              for p, c in windows.pairs]
    assert abs(sum(causal) - sum(hand)) > 1e-3


def test_lengths_below_one_and_too_little_text_name_the_setting():
  for field in ("prefix_length", "continuation_length", "windows"):
    with pytest.raises(ConfigError, match=rf"ContinuationConfig\.{field} = 0: expected an int"):
      continuation.ContinuationConfig(**{field: 0})
  with pytest.raises(ConfigError, match=r"ContinuationConfig\.windows = 14: .* only 13 windows "
                                        r"of prefix_length \+ continuation_length = 11 tokens"):
    _windows(n=14)


def test_windows_that_do_not_fit_the_scoring_rows_fail_before_scoring():
  cfg = continuation.ContinuationConfig(prefix_length=200, continuation_length=100)
  with pytest.raises(ConfigError, match="max_target_length = 64"):
    continuation.check_fits(cfg, rc.ScoringConfig(max_target_length=64))
  with pytest.raises(ConfigError, match="max_length = 256"):
    continuation.check_fits(cfg, rc.ScoringConfig(max_length=256))


def test_text_corpus_held_out_files(tmp_path):
  (tmp_path / "valid.txt").write_text(_TEXT[0])
  gin.parse_config([f"objectives.corpora.text_files.validation_files = ['{tmp_path}/*.txt']"])
  cfg = continuation.ContinuationConfig(prefix_length=4, continuation_length=4, windows=2)
  w = continuation.heldout_windows("text", ByteVocab(), cfg)
  assert [p + c for p, c in w.pairs] == [tuple(ByteVocab().encode(_TEXT[0])[i:i + 8])
                                         for i in (0, 8)]
  with pytest.raises(ConfigError, match="text_files.validation_files"):
    continuation.heldout_windows("text", ByteVocab(), continuation.ContinuationConfig())


_STACK = list(testing.EVAL_STACK)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
  """A MODEL_DIR holding the tiny causal decoder's initial parameters (no training)."""
  path = testing.untrained_eval_checkpoint(tmp_path_factory.mktemp("cd"))
  gin.clear_config()
  return path


def _data_dir(tmp_path):
  path = tmp_path / "data" / "multiple_choice" / "headqa.jsonl"
  path.parent.mkdir(parents=True)
  path.write_text(json.dumps({"query": "Q: which?", "choices": ["a", "b"], "gold": 0}) + "\n")
  return tmp_path / "data"


def test_evaluator_writes_the_continuation_block(model_dir, tmp_path):
  out = tmp_path / "eval"
  base = [f"CHECKPOINT_PATH = '{model_dir}'", "EVAL_SUITE = 'eai_eval:headqa'",
          f"EVAL_OUTPUT_DIR = '{out}'", f"LOCAL_DATA_DIR = '{_data_dir(tmp_path)}'"]
  results = zero_shot.run(_STACK, base)
  assert "continuation_loss" not in results  # off by default
  results = zero_shot.run(_STACK, base + [
      "CONTINUATION_LOSS = True", "eval.continuation.ContinuationConfig.windows = 8",
      "eval.continuation.ContinuationConfig.prefix_length = 16"])
  block = json.loads((out / "results.json").read_text())["continuation_loss"]
  assert block == results["continuation_loss"]
  assert (block["corpus"], block["windows"], block["tokens"]) == ("embedded", 8, 8 * 64)
  # An untrained model is near uniform over the vocabulary (4,100 ids, padded to 4,224).
  assert abs(block["nats_per_token"] - np.log(4224)) < 0.5 and block["stderr"] > 0


def test_too_little_text_fails_before_the_restore(model_dir, tmp_path, monkeypatch):
  monkeypatch.setattr(zero_shot, "restore_for_eval", lambda *a, **k: pytest.fail("restored"))
  with pytest.raises(ConfigError, match=r"ContinuationConfig\.windows = 100000: the 'embedded' "
                                        r"corpus's 'validation' split holds only 1500 windows"):
    zero_shot.run(_STACK, [f"CHECKPOINT_PATH = '{model_dir}'", "EVAL_SUITE = 'embedded'",
                           "CONTINUATION_LOSS = True",
                           "eval.continuation.ContinuationConfig.windows = 100000"])


def test_bad_length_on_the_command_line_is_one_error_line_and_exit_2(model_dir, capsys):
  argv = [*(f"--gin_file={f}" for f in _STACK), f"--gin.CHECKPOINT_PATH='{model_dir}'",
          "--gin.EVAL_SUITE='embedded'", "--gin.CONTINUATION_LOSS=True",
          "--gin.eval.continuation.ContinuationConfig.prefix_length=0"]
  assert testing.cli_exit_code(zero_shot.main, argv) == 2
  err = capsys.readouterr().err
  assert "error: eval.continuation.ContinuationConfig.prefix_length = 0: expected an integer" in err
  assert "Traceback" not in err and "In call to configurable" not in err
