"""Loaders: the real sets in ../shared/data (counts, golds), malformed rows, missing data sets."""

import collections
import json

import pytest

from eval import loaders
from eval import suites
from eval import templates as tmpl
from eval import zero_shot
from eval.loaders import embedded
from eval.loaders import local
from eval.loaders import tfds_loaders


@pytest.mark.data
@pytest.mark.parametrize("name,count,golds", [
    ("cb", 56, {0: 23, 1: 28, 2: 5}),  # entailment / contradiction / neutral
    ("rte", 277, {0: 146, 1: 131}),  # entailment / not_entailment
    ("copa", 100, {0: 55, 1: 45}),
    ("winogrande", 1267, {0: 628, 1: 639}),
    ("openbookqa", 500, {0: 138, 1: 126, 2: 132, 3: 104}),
    ("arc_easy", 2376, {0: 565, 1: 592, 2: 634, 3: 585}),
])
def test_shared_data_counts_and_golds(shared_data, name, count, golds):
  examples = loaders.load_dataset(name, local_data_dir=shared_data)
  assert len(examples) == count
  assert dict(collections.Counter(e["label"] for e in examples)) == golds


@pytest.mark.data
def test_shared_data_fields_render_with_every_template(shared_data):
  templates = tmpl.builtin_templates()
  first = {n: loaders.load_dataset(n, local_data_dir=shared_data)[0]
           for n in ("cb", "rte", "copa", "winogrande", "openbookqa", "arc_easy", "lambada")}
  assert first["cb"]["hypothesis"] == "Valence was helping" and first["cb"]["label"] == 1
  copa = first["copa"]
  assert copa["premise"] == "The man turned on the faucet." and copa["question"] == "effect"
  assert copa["choice2"] == "Water flowed from the spout." and copa["label"] == 1
  wino = first["winogrande"]
  assert wino["sentence"].endswith("so _ always got the easier cases.")
  assert (wino["option1"], wino["option2"], wino["label"]) == ("Sarah", "Maria", 1)
  assert first["lambada"]["continuation"] == "signs"
  for task in suites.get_suite("t0_eval").tasks:  # eai_eval: tests/test_eval_eai_protocol.py
    if task.dataset in first:
      for t in templates[task.templates]:
        prompts, choices, gold = t.render_options(first[task.dataset])
        assert len(prompts) == len(choices) >= 1 and 0 <= gold < len(choices)


@pytest.mark.data
def test_suite_with_local_data_reports_the_rest_missing(shared_data, tmp_path):
  class Constant:
    def score(self, pairs):
      return [0.0] * len(pairs)

    def greedy_match(self, pairs):
      return [False] * len(pairs)

  r = zero_shot.evaluate(None, None, None, "t0_eval", tmp_path / "out", shared_data,
                         scorer=Constant(), max_examples=8, tfds_data_dir=str(tmp_path / "tfds"))
  assert set(r["tasks"]) == {"cb", "rte", "copa", "winogrande"}
  assert set(r["missing"]) == {"anli_r1", "anli_r2", "anli_r3", "wsc", "wic", "hellaswag",
                               "story_cloze"}
  assert "story_cloze/2016" in r["missing"]["story_cloze"]
  # All-equal scores earn exactly the random baseline (ties share credit).
  for t in r["tasks"].values():
    assert t["median"] == pytest.approx(t["random_baseline"])
  assert json.loads((tmp_path / "out" / "results.json").read_text())["missing"] == r["missing"]


def _write(path, rows):
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
  return path


@pytest.mark.parametrize("row,match", [
    ({"premise": "p", "hypothesis": "h"}, r"line 2: field 'label' expected to be present"),
    ({"premise": "p", "hypothesis": "h", "label": "maybe"}, r"line 2: field 'label' expected one of"),
    ({"premise": 3, "hypothesis": "h", "label": "neutral"}, r"line 2: field 'premise' expected str"),
    ("{not json", r"line 2: not valid JSON"),
])
def test_malformed_row_names_file_line_field(tmp_path, row, match):
  good = {"premise": "p", "hypothesis": "h", "label": "neutral"}
  path = _write(tmp_path / "superglue" / "cb_val.jsonl", [good, row])
  with pytest.raises(loaders.LoaderError, match=r"cb_val\.jsonl, " + match):
    loaders.load_dataset("cb", local_data_dir=tmp_path)


def test_malformed_multiple_choice_gold(tmp_path):
  path = _write(tmp_path / "x.jsonl", [{"query": "q", "choices": ["a", "b"], "gold": 2}])
  with pytest.raises(loaders.LoaderError, match=r"x\.jsonl, line 1: field 'gold' expected an "
                                                r"integer in \[0, 2\)"):
    local.multiple_choice(path)
  path = _write(tmp_path / "c.jsonl", [{"query": "no connective", "choices": ["a", "b"],
                                        "gold": 0}])
  with pytest.raises(loaders.LoaderError, match="because' or"):
    local.copa_multiple_choice(path)


def test_missing_dataset_is_unavailable_not_a_crash(tmp_path):
  with pytest.raises(loaders.DatasetUnavailable, match="no multiple_choice/sciq.jsonl"):
    loaders.load_dataset("sciq", local_data_dir=tmp_path)
  with pytest.raises(KeyError, match="Unknown data set 'sciqq'.*arc_easy"):
    loaders.load_dataset("sciqq")


def test_blimp_local_paradigm_files(tmp_path):
  rows = [{"sentence_good": f"Good {i}.", "sentence_bad": f"Bad {i}.", "UID": "anaphor_x"}
          for i in range(3)]
  _write(tmp_path / "blimp" / "adjunct_island.jsonl", rows)
  examples = loaders.load_dataset("blimp_adjunct_island", local_data_dir=tmp_path)
  assert len(examples) == 3 and examples[0]["uid"] == "anaphor_x"
  t = tmpl.builtin_templates()["blimp"][0]
  assert t.render(examples[1]) == ("", ["Good 1.", "Bad 1."], 0)


def test_tfds_converters_give_canonical_fields():
  wg = next(tfds_loaders.CONVERTERS["winogrande"](
      {"sentence": b"The cup beat the jar so _ won.", "option1": b"the cup",
       "option2": b"the jar", "label": 1}))
  assert wg["context_options"] == ["The cup beat the jar so the cup", "The cup beat the jar so "
                                   "the jar"]
  assert wg["continuation"] == "won." and wg["label"] == 1
  local_wg = local.winogrande_example(wg["context_options"], wg["continuation"], 1)
  assert local_wg["sentence"] == "The cup beat the jar so the _ won."  # word-level back-off
  # lm-evaluation-harness's file lost the blank's spacing: none before punctuation (Hugging Face's).
  assert local.winogrande_example(["He took Tom", "He took Ann"], "'s car.", 0)["sentence"] == (
      "He took _'s car.")
  copa = next(tfds_loaders.CONVERTERS["copa"](
      {"premise": b"It rained.", "choice1": b"We got wet.", "choice2": b"It was dry.",
       "question": b"effect", "label": 0}))
  assert copa["query"] == "It rained, therefore" and copa["choices"][0] == "we got wet."
  arc = next(tfds_loaders.CONVERTERS["arc"](
      {"question": b"Q?", "choices": {"text": [b"a", b"b", b"c"], "label": [0, 1, 2]},
       "answerKey": 2}))
  assert arc == {"query": "Question: Q?", "choices": ["a", "b", "c"], "label": 2}
  mq = next(tfds_loaders.CONVERTERS["mathqa"](
      {"Problem": b"1+1", "options": b"a ) 1 , b ) 2 , c ) 3 , d ) 4 , e ) 5", "correct": b"b"}))
  assert mq["choices"] == ["1", "2", "3", "4", "5"] and mq["label"] == 1


def test_embedded_families_are_deterministic_and_balanced():
  for family in suites.EMBEDDED_FAMILIES:
    a = embedded.family_examples(family, n=24)
    assert a == embedded.family_examples(family, n=24) and len(a) == 24
    labels = collections.Counter(e["label"] for e in a)
    assert len(labels) >= 2  # the gold position varies
    plays = {e["play"] for e in a}
    assert len(plays) == 6  # drawn from every held-out play
  wo = embedded.family_examples("word_order", n=12)
  for e in wo:
    assert sorted(e["choices"][0].split()) == sorted(e["choices"][1].split())
    assert e["choices"][0] != e["choices"][1]
  cloze = embedded.family_examples("cloze", n=12)
  for e in cloze:
    assert len({c.lower() for c in e["candidates"]}) == 4
    assert all(c in e["context"] for c in e["candidates"])
  with pytest.raises(KeyError, match="known: next_line"):
    embedded.family_examples("speaker_attribution")


def test_embedded_families_use_only_heldout_plays():
  from objectives import plays
  train_titles = {p.title for p in plays.load_plays("train")}
  for family in suites.EMBEDDED_FAMILIES:
    assert not {e["play"] for e in embedded.family_examples(family, n=12)} & train_titles
