"""lm-evaluation-harness through HarnessLM: parity with rank classification, windows, bad input."""

import json
import logging
import pathlib
import sys
import types

import jax
import numpy as np
import pytest

from arch import config as config_lib
from arch import models
from arch import registry
from eval import lm_eval_suite
from eval import rank_classification as rc
from eval import records as records_lib
from eval import zero_shot

lm_eval = pytest.importorskip("lm_eval", reason="the [lm_eval] extra is not installed")
from eval import lm_eval_adaptor  # noqa: E402  # pylint: disable=g-import-not-at-top


class ByteVocab:
  """Latin-1 characters + 3 (0 pad, 1 EOS, 2 unk)."""

  eos_id = 1
  vocab_size = 259

  def encode(self, text):
    return [ord(c) + 3 for c in text.encode("latin-1", "replace").decode("latin-1")]

  def decode(self, ids):
    return "".join(chr(i - 3) for i in ids if i >= 3)


_CFG = config_lib.TransformerConfig(
    vocab_size=259, emb_dim=32, num_heads=2, head_dim=16, mlp_dim=64, num_layers=2,
    num_encoder_layers=2, num_decoder_layers=2)

_RTE = [("The cat sat on the mat all day.", "The cat was on the mat.", "entailment"),
        ("It rained in Paris on Monday.", "Paris was dry on Monday.", "not_entailment"),
        ("Ann bought three red apples.", "Ann bought fruit.", "entailment"),
        ("The museum opens at nine.", "The museum is closed all week.", "not_entailment"),
        ("Tom wrote a long letter to Sue.", "Sue wrote to Tom.", "not_entailment"),
        ("The river froze in January.", "It was cold in January.", "entailment"),
        ("A dog chased the ball.", "An animal ran.", "entailment"),
        ("The shop sells only bread.", "The shop sells shoes.", "not_entailment")]

# Our eai_eval 'eai_rte' template's text (eval/templates/eai_eval.yaml) as an lm-eval task.
_TASK_YAML = """task: harness_rte_parity
dataset_path: json
dataset_name: null
dataset_kwargs:
  data_files:
    validation: {data}
output_type: multiple_choice
validation_split: validation
doc_to_text: "{{{{premise}}}}\\nQuestion: {{{{hypothesis}}}} True or False?\\nAnswer:"
doc_to_target: label
doc_to_choice: ["True", "False"]
metric_list:
  - metric: acc
"""


def _model(name):
  model = models.get_model(name, _CFG)
  shapes = model.input_shapes(1, {"inputs": 8, "targets": 8})
  params = jax.jit(lambda rng: model.get_initial_variables(rng, shapes))(
      jax.random.PRNGKey(3))["params"]
  # Scaled up so that options differ clearly (no near-ties that float order could flip).
  return model, jax.tree_util.tree_map(lambda x: x * 3.0, params)


def _write_rte(root: pathlib.Path) -> pathlib.Path:
  (root / "superglue").mkdir(parents=True, exist_ok=True)
  with (root / "superglue" / "rte_val.jsonl").open("w") as f:
    for i, (p, h, label) in enumerate(_RTE):
      f.write(json.dumps({"premise": p, "hypothesis": h, "label": label, "idx": i}) + "\n")
  data = root / "rte_lm_eval.jsonl"
  with data.open("w") as f:
    for p, h, label in _RTE:
      f.write(json.dumps({"premise": p, "hypothesis": h,
                          "label": 0 if label == "entailment" else 1}) + "\n")
  return data


def _yaml_task(tmp_path: pathlib.Path, data: pathlib.Path):
  from lm_eval.tasks import _yaml_loader  # pylint: disable=g-import-not-at-top
  path = tmp_path / "harness_rte_parity.yaml"
  path.write_text(_TASK_YAML.format(data=data))
  cfg = _yaml_loader.load_yaml(path)
  cfg["dataset_kwargs"]["cache_dir"] = str(tmp_path / "hf_cache")
  return lm_eval_suite._task_manager().load([cfg])["tasks"]["harness_rte_parity"]  # pylint: disable=protected-access


@pytest.mark.slow
@pytest.mark.parametrize("arch", registry.names())
def test_parity_with_rank_classification(arch, tmp_path):
  """The same prompt by both routes: identical accuracy and per-example choices (CD, ND, ED)."""
  lm_eval_suite.require_lm_eval()
  data = _write_rte(tmp_path)
  model, params = _model(arch)
  scorer = rc.ModelScorer(model, params, ByteVocab(), rc.ScoringConfig(progress=False))
  ours = zero_shot.evaluate(model, params, ByteVocab(), "eai_eval:rte", tmp_path / "ours",
                            tmp_path, scorer=scorer)
  task = _yaml_task(tmp_path, data)
  plan = lm_eval_suite.Plan(suite="lm_eval:harness_rte_parity", version="0.4.13",
                            tasks={task.task_name: task},
                            output_types={task.task_name: "multiple_choice"}, sources={},
                            missing={}, num_fewshot=0, fewshot_seed=1234)
  theirs = zero_shot.evaluate_lm_eval(model, params, ByteVocab(), plan, tmp_path / "theirs",
                                      scorer=scorer)
  a = records_lib.read(tmp_path / "ours").sort_values("id")
  b = records_lib.read(tmp_path / "theirs").sort_values("id")
  assert list(a["id"]) == list(b["id"]) == list(range(len(_RTE)))
  np.testing.assert_allclose(np.stack(a["scores"]), np.stack(b["scores"]), atol=1e-4)
  assert list(a["chosen"]) == list(b["chosen"])
  assert list(a["gold"]) == list(b["gold"])
  acc_ours = ours["tasks"]["rte"]["median"]
  acc_theirs = theirs["tasks"]["harness_rte_parity"]["median"]
  assert acc_ours == pytest.approx(acc_theirs) == pytest.approx(np.mean(a["chosen"] == a["gold"]))
  assert (tmp_path / "theirs" / "lm_eval" / "results.json").is_file()


class _Vocab(ByteVocab):
  pass


class FakeScorer:
  """Sums the option's character codes; greedy when the option is short."""

  def __init__(self, ed=False, max_length=16, max_target_length=8):
    self.vocabulary = _Vocab()
    self.is_encoder_decoder = ed
    self.config = rc.ScoringConfig(max_length=max_length, max_target_length=max_target_length)
    self.model = self.params = None
    self.greedy_calls = 0
    self.token_pairs = []

  def score(self, pairs):
    return np.array([-float(len(o)) for _, o, _, _ in pairs])

  def greedy_match(self, pairs):
    self.greedy_calls += len(pairs)
    return np.array([len(o) < 3 for _, o, _, _ in pairs])

  def score_token_pairs(self, pairs):
    self.token_pairs.extend(pairs)
    return np.array([-float(len(c)) for _, c in pairs]), np.array([len(c) for _, c in pairs])


def _req(args, task="t"):
  return types.SimpleNamespace(args=args, task_name=task)


def test_loglikelihood_scores_and_greedy_only_for_tasks_that_read_it():
  scorer = FakeScorer()
  lm = lm_eval_adaptor.HarnessLM(scorer, greedy_tasks=["lambada_openai"])
  out = lm.loglikelihood([_req(("ctx", " ab"), "lambada_openai"), _req(("ctx", " abcd"), "rte")])
  assert out == [(-3.0, False), (-5.0, False)]
  assert scorer.greedy_calls == 1
  out = lm_eval_adaptor.HarnessLM(scorer).loglikelihood([_req(("c", "x"))])
  assert out == [(-1.0, True)]


@pytest.mark.parametrize("ed", [False, True])
def test_rolling_windows_score_every_token_once_and_fit(ed):
  scorer = FakeScorer(ed=ed)
  lm = lm_eval_adaptor.HarnessLM(scorer)
  text = "".join(chr(97 + i % 26) for i in range(53))
  windows = lm.rolling_windows(text)
  ids = ByteVocab().encode(text)
  assert [t for _, c in windows for t in c] == ids
  assert windows[0][0] == ([ByteVocab.eos_id] if ed else [])
  for ctx, cont in windows:
    if ed:
      assert 0 < len(cont) <= 8 and 0 < len(ctx) <= 16
    else:
      assert len(ctx) + len(cont) <= 16
  start = len(windows[0][1])
  for ctx, cont in windows[1:]:  # later windows read the tokens just before them
    assert ctx and ctx == ids[start - len(ctx):start]
    start += len(cont)
  total = lm.loglikelihood_rolling([_req((text,)), _req(("abc",))])
  assert total == [-53.0, -3.0]


def test_generate_until_without_eval_generate_is_a_clear_error(monkeypatch):
  monkeypatch.setitem(sys.modules, "eval.generate", None)
  lm = lm_eval_adaptor.HarnessLM(FakeScorer())
  with pytest.raises(lm_eval_adaptor.GenerationUnavailable, match="eval.generate"):
    lm.generate_until([_req(("Q:", {"until": ["\n"], "max_gen_toks": 4}))])
  with pytest.raises(lm_eval_suite.LmEvalConfigError, match="gsm8k.*generate_until"):
    lm_eval_suite.task_configs(["gsm8k"], "lm_eval:gsm8k")


def test_generate_until_honours_until_and_max_gen_toks():
  generate = pytest.importorskip("eval.generate", reason="eval.generate (decoding) not merged yet")
  model, params = _model("causal_decoder")
  scorer = rc.ModelScorer(model, params, ByteVocab(), rc.ScoringConfig(progress=False))
  lm = lm_eval_adaptor.HarnessLM(scorer)
  prompts = ["Q: one\nA:", "Q: a longer question\nA:"]
  out = lm.generate_until([_req((p, {"until": ["\n", "Q:"], "max_gen_toks": 6})) for p in prompts])
  direct = generate.generate_texts(model, params, prompts, until=["\n", "Q:"], max_new_tokens=6,
                                   vocabulary=ByteVocab())
  assert len(out) == 2
  for text, ref in zip(out, direct):
    assert "\n" not in text and "Q:" not in text
    assert len(ByteVocab().encode(text)) <= 6
    assert ref.startswith(text)


def test_unknown_task_lists_close_matches_and_groups_are_refused():
  with pytest.raises(lm_eval_suite.LmEvalConfigError, match="arc_eazy.*close: .*arc_easy"):
    lm_eval_suite.task_configs(["arc_eazy"], "lm_eval:arc_eazy")
  with pytest.raises(lm_eval_suite.LmEvalConfigError, match="group or tag"):
    lm_eval_suite.task_configs(["ai2_arc"], "lm_eval:ai2_arc")
  with pytest.raises(lm_eval_suite.LmEvalConfigError, match="names no lm-eval task"):
    lm_eval_suite.task_names("lm_eval:")


def test_missing_extra_names_it(monkeypatch):
  monkeypatch.setitem(sys.modules, "lm_eval.evaluator", None)
  with pytest.raises(lm_eval_suite.LmEvalConfigError, match=r"\[lm_eval\]"):
    lm_eval_suite.require_lm_eval("lm_eval:rte")


def test_fewshot_beyond_the_pool_and_bad_names_fail_before_the_restore(tmp_path):
  _write_rte(tmp_path)
  (tmp_path / "superglue" / "cb_val.jsonl").write_text("".join(
      json.dumps({"premise": p, "hypothesis": h, "label": "neutral"}) + "\n"
      for p, h, _ in _RTE[:3]))
  with pytest.raises(lm_eval_suite.LmEvalConfigError, match="NUM_FEWSHOT = 3.*'cb' has 2"):
    lm_eval_suite.prepare("lm_eval:cb", tmp_path, num_fewshot=3, data_dir=tmp_path / "d")
  plan = lm_eval_suite.prepare("lm_eval:cb", tmp_path, num_fewshot=2, data_dir=tmp_path / "d")
  assert plan.sources["cb"]["source"] == "local" and plan.sources["cb"]["n"] == 3
  # The CLI path: a bad task name is reported although the checkpoint does not exist either.
  zero_shot.parse(["gin_configs/arch/causal_decoder.gin", "gin_configs/sizes/tiny.gin",
                   "gin_configs/data/embedded.gin"],
                  [f"CHECKPOINT_PATH = '{tmp_path / 'none'}'", "EVAL_SUITE = 'lm_eval:rtee'"])
  with pytest.raises(lm_eval_suite.LmEvalConfigError, match="rtee.*close: .*rte"):
    zero_shot.evaluate_checkpoint()


def test_long_prompts_are_cut_from_the_left_and_said_once(caplog):
  model = types.SimpleNamespace(arch=types.SimpleNamespace(encoder_decoder=False),
                                token_log_probs=lambda p, b: None)
  scorer = rc.ModelScorer(model, None, ByteVocab(), rc.ScoringConfig(max_length=8))
  pairs = [("abcdefghijkl", " x", False, False), ("ab", " x", False, False)]
  with caplog.at_level(logging.WARNING):
    items = scorer._items(pairs)  # pylint: disable=protected-access
    scorer._items(pairs)  # pylint: disable=protected-access
  assert items[0].prompt == ByteVocab().encode("ghijkl")  # 8 - 2 option tokens: the end kept
  assert sum("keep only their last tokens" in r.message for r in caplog.records) == 1
  assert scorer.stats["truncated_prompts"] == 2


@pytest.mark.data
@pytest.mark.slow
def test_offline_tasks_read_the_shared_files(shared_data, tmp_path):
  names = "rte,cb,copa,winogrande,arc_easy,openbookqa,lambada_openai,piqa"
  plan = lm_eval_suite.prepare(f"lm_eval:{names}", shared_data, data_dir=tmp_path / "d")
  expected = {"rte": 277, "cb": 56, "copa": 100, "winogrande": 1267, "arc_easy": 2376,
              "openbookqa": 500, "lambada_openai": 5153}
  for name, n in expected.items():
    if plan.sources[name]["source"] == "local":  # unless that Hugging Face set is cached here
      assert plan.sources[name]["n"] == n
  assert "piqa" in plan.missing and "multiple_choice/piqa.jsonl" in plan.missing["piqa"]
  results = zero_shot.evaluate_lm_eval(None, None, ByteVocab(), plan, tmp_path / "out",
                                       scorer=FakeScorer(max_length=4096), max_examples=4)
  assert set(results["tasks"]) == set(expected)
  assert all(t["n"] == 4 for t in results["tasks"].values())
  assert results["protocol"]["lm_eval_version"] == "0.4.13"
  assert results["tasks"]["copa"]["random_baseline"] == 0.5
  written = json.loads((tmp_path / "out" / "results.json").read_text())
  assert written["missing"].keys() == {"piqa"}


def test_a_suite_whose_every_task_is_missing_is_an_error_listing_them(tmp_path):
  plan = lm_eval_suite.prepare("lm_eval:piqa", tmp_path, data_dir=tmp_path / "d")
  assert "multiple_choice/piqa.jsonl" in plan.missing["piqa"]
  with pytest.raises(zero_shot.EvalConfigError, match="nothing scored.*piqa.*piqa.jsonl"):
    zero_shot.evaluate_lm_eval(None, None, ByteVocab(), plan, tmp_path / "out",
                               scorer=FakeScorer())
  assert json.loads((tmp_path / "out" / "results.json").read_text())["missing"].keys() == {"piqa"}


@pytest.mark.slow
@pytest.mark.parametrize("arch", registry.names())
def test_rolling_loglikelihood_equals_scoring_the_text_from_nothing(arch):
  """One window: rolling log p(text) = our score of the text after an empty prompt; longer texts
  sum their windows, each scored through the same batches."""
  model, params = _model(arch)
  scorer = rc.ModelScorer(model, params, ByteVocab(),
                          rc.ScoringConfig(max_length=16, max_target_length=8, progress=False))
  lm = lm_eval_adaptor.HarnessLM(scorer)
  short, long = "a cat", "the cat sat on the mat and then it slept"
  got = lm.loglikelihood_rolling([_req((short,)), _req((long,))])
  assert got[0] == pytest.approx(float(scorer.score([("", short, False, False)])[0]), abs=1e-4)
  windows = lm.rolling_windows(long)
  assert len(windows) > 1
  assert got[1] == pytest.approx(float(np.sum(scorer.score_token_pairs(windows)[0])), abs=1e-4)
  assert np.isfinite(got).all() and max(got) < 0
