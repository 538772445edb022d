"""NUM_FEWSHOT for our own suites: k demonstrations, never the example, the same for every model."""

import json

import numpy as np
import pytest

from eval import fewshot
from eval import zero_shot

_ROWS = [("The cat sat on the mat.", "The cat was on the mat.", "entailment"),
         ("It rained in Paris.", "Paris was dry.", "not_entailment"),
         ("Ann bought apples.", "Ann bought fruit.", "entailment"),
         ("The museum opens at nine.", "The museum is closed.", "not_entailment"),
         ("Tom wrote to Sue.", "Sue wrote to Tom.", "not_entailment")]


class RecordingScorer:
  """A 'model': scores from a seeded generator; keeps every pair it was asked to score."""

  config = None

  def __init__(self, seed):
    self.rng, self.pairs = np.random.default_rng(seed), []

  def score(self, pairs):
    self.pairs.extend(pairs)
    return self.rng.normal(size=len(pairs))

  def greedy_match(self, pairs):
    raise AssertionError("no greedy task here")


@pytest.fixture
def data_dir(tmp_path):
  (tmp_path / "superglue").mkdir()
  (tmp_path / "superglue" / "rte_val.jsonl").write_text("".join(
      json.dumps({"premise": p, "hypothesis": h, "label": l}) + "\n" for p, h, l in _ROWS))
  return tmp_path


def _rendered(premise, hypothesis):
  return f"{premise}\nQuestion: {hypothesis} True or False?\nAnswer:"


def test_one_demonstration_never_the_example_same_for_every_model(data_dir, tmp_path):
  runs = []
  for seed in (0, 1):  # two different "models"
    scorer = RecordingScorer(seed)
    results = zero_shot.evaluate(None, None, None, "eai_eval:rte", tmp_path / f"out{seed}",
                                 data_dir, scorer=scorer, num_fewshot=1, fewshot_seed=7)
    runs.append(scorer.pairs)
  assert runs[0] == runs[1]  # identical demonstrations (and prompts) across models
  examples = {_rendered(p, h): (p, h, l) for p, h, l in _ROWS}
  demos = {_rendered(p, h) + (" True" if l == "entailment" else " False")
           for p, h, l in _ROWS}
  prompts = sorted({prompt for prompt, _, _, _ in runs[0]})
  assert len(prompts) == len(_ROWS)
  for prompt in prompts:
    parts = prompt.split(fewshot.DELIMITER)
    assert len(parts) == 2  # exactly one demonstration
    demo, scored = parts
    assert scored in examples and demo in demos
    assert not demo.startswith(scored)  # never the example itself
  written = json.loads((tmp_path / "out0" / "results.json").read_text())
  assert written["protocol"]["fewshot"]["k"] == 1 and written["protocol"]["fewshot"]["seed"] == 7
  assert written["tasks"]["rte"]["n"] == len(_ROWS)


def test_zero_shot_prompts_are_unchanged_and_seed_changes_the_draw(data_dir, tmp_path):
  scorer = RecordingScorer(0)
  zero_shot.evaluate(None, None, None, "eai_eval:rte", None, data_dir, scorer=scorer)
  assert {p for p, _, _, _ in scorer.pairs} == {_rendered(p, h) for p, h, _ in _ROWS}
  draws = {tuple(fewshot.draw(50, 3, 2, seed, "rte", 3)) for seed in range(5)}
  assert len(draws) > 1 and all(3 not in d and len(set(d)) == 2 for d in draws)


def test_fewshot_larger_than_the_pool_is_an_error_before_scoring(data_dir):
  scorer = RecordingScorer(0)
  with pytest.raises(fewshot.FewshotError, match="NUM_FEWSHOT = 5.*4 other examples"):
    zero_shot.evaluate(None, None, None, "eai_eval:rte", None, data_dir, scorer=scorer,
                       num_fewshot=5)
  assert not scorer.pairs
  with pytest.raises(fewshot.FewshotError, match="NUM_FEWSHOT = -1"):
    zero_shot.evaluate(None, None, None, "eai_eval:rte", None, data_dir, scorer=scorer,
                       num_fewshot=-1)
