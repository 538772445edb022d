"""Scoring arithmetic with a stub scorer of known log-probabilities: acc, acc_norm, medians, means."""

import json

import numpy as np
import pytest

from eval import aggregation
from eval import suites
from eval import templates as tmpl
from eval import zero_shot

# acc prefers "No" (-1 is the highest sum); per character, "Maybe" wins (-2/5 > -1/2 > -3/3).
_LOGP = {"Yes": -3.0, "No": -1.0, "Maybe": -2.0}

_TEMPLATES = tmpl.parse_templates("""
three:
  - name: plain
    prompt: "{{ text }}"
    choices: ["Yes", "No", "Maybe"]
  - name: yes_first
    prompt: "{{ text }}?"
    choices: ["Yes!", "No", "Maybe"]
  - name: flat
    prompt: "{{ text }}!"
    choices: ["Yes", "Yes", "Yes"]
two:
  - name: only
    prompt: "{{ text }}"
    choices: ["Yes", "No"]
greedy:
  - name: answer
    prompt: "{{ text }}"
    choices: answers
    gold: "0"
""")


class StubScorer:
  """log p(option | prompt) from a table; 'Yes!' beats everything; greedy hits answers 'ok'."""

  def __init__(self):
    self.calls = []

  def score(self, pairs):
    self.calls.append(list(pairs))
    return np.array([0.0 if o == "Yes!" else _LOGP[o] for _, o, _, _ in pairs])

  def greedy_match(self, pairs):
    return np.array([o == "ok" for _, o, _, _ in pairs])


_LABELS3 = [0, 1, 1, 2, 1, 0, 2, 2, 2, 2]  # 2 x label 0, 3 x label 1, 5 x label 2
_LABELS2 = [0, 0, 0, 1]


def _fake_load(dataset, *unused):
  if dataset == "three":
    return [{"text": f"t{i}", "label": y} for i, y in enumerate(_LABELS3)]
  if dataset == "two":
    return [{"text": f"u{i}", "label": y} for i, y in enumerate(_LABELS2)]
  if dataset == "greedy":
    return [{"text": "q1", "answers": ["no", "ok"]}, {"text": "q2", "answers": ["no"]}]
  from eval.loaders.errors import DatasetUnavailable
  raise DatasetUnavailable(f"no {dataset} here")


@pytest.fixture
def fake_suite(monkeypatch):
  monkeypatch.setattr(zero_shot, "_load_examples", _fake_load)
  return suites.Suite("fake", (
      suites.TaskSpec("three", "three", "three"), suites.TaskSpec("two", "two", "two"),
      suites.TaskSpec("greedy", "greedy", "greedy", kind=suites.GREEDY),
      suites.TaskSpec("absent", "absent", "two")), prompt_eos=True, option_eos=False)


def test_hand_computed_results(fake_suite, tmp_path):
  scorer = StubScorer()
  r = zero_shot.evaluate(None, None, None, fake_suite, output_dir=tmp_path, scorer=scorer,
                         templates=_TEMPLATES)
  three = r["tasks"]["three"]["prompts"]
  # plain: acc picks "No" (label 1: 3/10); acc_norm picks "Maybe" (label 2: 5/10).
  assert three["plain"] == {"accuracy": 0.3, "acc_norm": 0.5, "n": 10,
                            "random_baseline": pytest.approx(1 / 3)}
  # yes_first: "Yes!" scores 0, the best under both metrics (label 0: 2/10).
  assert three["yes_first"]["accuracy"] == 0.2 and three["yes_first"]["acc_norm"] == 0.2
  # flat: a three-way tie everywhere gives exactly the random baseline, not the gold-first 0.2.
  assert three["flat"]["accuracy"] == pytest.approx(1 / 3)
  t = r["tasks"]["three"]
  assert t["median"] == pytest.approx(0.3)
  assert t["spread"] == {"min": 0.2, "max": pytest.approx(1 / 3)}
  assert t["n"] == 10 and t["random_baseline"] == pytest.approx(1 / 3)
  # two: "No" always: label 1 is 1 of 4.
  assert r["tasks"]["two"]["median"] == 0.25
  assert r["tasks"]["greedy"]["median"] == 0.5 and r["tasks"]["greedy"]["random_baseline"] == 0
  assert r["missing"] == {"absent": "no absent here"}
  agg = r["aggregate"]
  assert agg["n_tasks"] == 3
  assert agg["mean_of_medians"] == pytest.approx((0.3 + 0.25 + 0.5) / 3)
  norm = [(0.3 - 1 / 3) / (2 / 3), (0.25 - 0.5) / 0.5, 0.5]
  assert agg["normalized_mean"] == pytest.approx(np.mean(norm))
  # The protocol reached the scorer: EOS after the prompt, none after the option.
  assert all(p[2] is True and p[3] is False for p in scorer.calls[0])
  on_disk = json.loads((tmp_path / "results.json").read_text())
  assert on_disk["tasks"]["three"]["median"] == pytest.approx(0.3)
  assert set(on_disk) >= {"suite", "tasks", "missing", "aggregate"}


def test_partial_scoring_uses_per_option_prompts():
  ex = aggregation.RankedExample(("ctx A", "ctx B"), ("same", "same"), 1)
  m = aggregation.prompt_metrics([ex], [[-2.0, -1.0]])
  assert m["accuracy"] == 1.0 and m["acc_norm"] == 1.0


def test_acc_norm_divides_by_characters():
  ex = aggregation.RankedExample(("p", "p"), ("a", "aaaa"), 1)
  m = aggregation.prompt_metrics([ex], [[-1.0, -2.0]])  # per char: -1 vs -0.5
  assert m["accuracy"] == 0.0 and m["acc_norm"] == 1.0


def test_bad_shapes_raise():
  ex = aggregation.RankedExample(("p", "p"), ("a", "b"), 0)
  with pytest.raises(ValueError, match="choices"):
    aggregation.prompt_metrics([ex], [[0.0, 1.0, 2.0]])
  with pytest.raises(ValueError, match="one prompt per choice"):
    aggregation.RankedExample(("p",), ("a", "b"), 0)


def test_unknown_suite_and_task_list_valid_ones():
  with pytest.raises(ValueError, match="valid suites: t0_eval, eai_eval, blimp, embedded"):
    suites.get_suite("t1_eval")
  with pytest.raises(ValueError, match=r"Unknown task\(s\) \['cbb'\].*anli_r1"):
    suites.get_suite("t0_eval:cb,cbb")
  assert [t.name for t in suites.get_suite("t0_eval:rte,cb").tasks] == ["cb", "rte"]


def test_suites_match_the_paper_lists():
  assert len(suites.get_suite("t0_eval").tasks) == 11
  eai = suites.get_suite("eai_eval")
  assert len(eai.tasks) == 30 and eai.max_prompts == 1
  assert len(suites.get_suite("blimp").tasks) == 67
  templates = tmpl.builtin_templates()
  for name in suites.SUITE_NAMES:
    for task in suites.get_suite(name).tasks:
      assert task.templates in templates, (name, task.name)
  # The embedded families have >= 3 wordings; T0 tasks several.
  assert all(len(templates[f"embedded_{f}"]) >= 3 for f in suites.EMBEDDED_FAMILIES)
  assert all(len(templates[t.templates]) >= 4 for t in suites.get_suite("t0_eval").tasks)
