"""eval/generate.py: text in, continuations out (order, batching, stop strings, truncation, CLI)."""

import logging

import jax
import numpy as np
import pytest

from arch import models
from arch import testing
from eval import generate
from experiments import testing as exp_testing


class ByteVocab:
  """Bytes shifted by 3 (0 pad, 1 EOS, 2 unk), as tests/test_eval_rank.py's."""

  eos_id = 1
  vocab_size = 259

  def encode(self, text):
    return [b + 3 for b in text.encode("utf-8")]

  def decode(self, ids):
    return bytes(i - 3 for i in ids if i >= 3).decode("utf-8", errors="replace")


PROMPTS = ["The quick brown fox", "a", "Some longer prompt than the others, by far"]


@pytest.fixture(scope="module")
def sharp_cd():
  """A tiny CD whose greedy continuations vary (weights scaled, as tests/test_arch_decoding.py)."""
  model = models.get_model("causal_decoder", testing.tiny_config(vocab_size=259))
  params = model.get_initial_variables(jax.random.PRNGKey(2),
                                       model.input_shapes(1, {"targets": 8}))["params"]
  scaled = jax.tree_util.tree_map(lambda x: x * 3.0, params)
  scaled["token_embedder"] = params["token_embedder"]
  return model, scaled


def test_texts_follow_prompt_order_whatever_the_batching(sharp_cd):
  model, params = sharp_cd
  vocab = ByteVocab()
  kw = dict(max_new_tokens=8, vocabulary=vocab)
  batched = generate.generate_texts(model, params, PROMPTS, batch_size=2, **kw)
  singly = [generate.generate_texts(model, params, [p], batch_size=1, **kw)[0] for p in PROMPTS]
  assert batched == singly
  ids = np.zeros((1, 64), np.int32)
  ids[0, :len(PROMPTS[2])] = vocab.encode(PROMPTS[2])
  toks = np.asarray(model.predict_batch(params, {"inputs": ids}, max_new_tokens=8))[0].tolist()
  toks = toks[:toks.index(1)] if 1 in toks else toks
  assert batched[2] == vocab.decode(toks)
  assert any(len(t) > 2 for t in batched)


def test_stop_strings_cut_the_text(sharp_cd):
  model, params = sharp_cd
  free = generate.generate_texts(model, params, PROMPTS[:1], max_new_tokens=10,
                                 vocabulary=ByteVocab())[0]
  stop = free[3:5]
  cut = generate.generate_texts(model, params, PROMPTS[:1], max_new_tokens=10,
                                vocabulary=ByteVocab(), until=["never there", stop])[0]
  assert cut == free[:free.index(stop)]
  assert generate.cut_at_stop("abc\n\ndef\n\n", ["\n\n", "zz"]) == "abc"
  assert generate.cut_at_stop("abc", []) == "abc"


def test_long_prompts_lose_their_beginning_and_say_so_once(sharp_cd, caplog):
  model, params = sharp_cd
  kw = dict(max_new_tokens=4, vocabulary=ByteVocab())
  with caplog.at_level(logging.WARNING):
    long = generate.generate_texts(model, params, ["x" * 50 + "tail", "y" * 60 + "tail"],
                                   max_prompt_length=8, **kw)
  assert sum("lose their beginning" in r.getMessage() for r in caplog.records) == 1
  short = generate.generate_texts(model, params, ["x" * 4 + "tail", "y" * 4 + "tail"], **kw)
  assert long == short


@pytest.mark.parametrize("prompts", ["a lone string", [], ["ok", 3]])
def test_bad_prompts_fail_clearly(prompts):
  with pytest.raises(generate.GenerateConfigError):
    generate.check_prompts(prompts)


def test_command_line_restores_and_prints(tmp_path, capsys):
  path = exp_testing.untrained_eval_checkpoint(tmp_path / "cd")
  flags = [f"--gin_file={f}" for f in exp_testing.EVAL_STACK]
  code = exp_testing.cli_exit_code(generate.main, flags + [
      f"--gin.CHECKPOINT_PATH='{path}'", "--gin.PROMPTS=['ROMEO:', 'To be']",
      "--gin.eval.generate.generate_checkpoint.max_new_tokens=5"])
  assert code == 0
  out = capsys.readouterr().out
  import json  # pylint: disable=g-import-not-at-top
  rows = json.loads(out)
  assert [r["prompt"] for r in rows] == ["ROMEO:", "To be"]
  assert all(isinstance(r["continuation"], str) for r in rows)
  bad = exp_testing.cli_exit_code(generate.main, flags + [
      f"--gin.CHECKPOINT_PATH='{path}'", "--gin.PROMPTS='not a list'"])
  assert bad == 2
