"""EAI-Eval is lm-evaluation-harness 0.2.0's protocol: wording, continuations, metrics, truncation.

The expected strings are written by hand from lm-eval 0.2.0's doc_to_text / construct_requests
(lm_eval/tasks/*.py): the prompt is doc_to_text, each choice the continuation it scores.
"""

import json

import gin
import jax.numpy as jnp
import numpy as np
import pytest

from eval import aggregation
from eval import loaders
from eval import rank_classification as rc
from eval import suites
from eval import templates as tmpl
from eval import zero_shot
from eval.loaders import local
from eval.loaders import tfds_loaders

_TEMPLATES = tmpl.builtin_templates()
_TASKS = {t.name: t for t in suites.get_suite("eai_eval").tasks}

_NLI3 = ({"premise": "A man sleeps.", "hypothesis": "A man is awake.", "label": 2},
         ("A man sleeps.\nQuestion: A man is awake. True, False, or Neither?\nAnswer:",
          [" True", " Neither", " False"], 2))
_ARC = ({"query": "Question: Which is a gas?", "choices": ["ice", "steam"], "label": 1},
        ("Question: Which is a gas?\nAnswer:", [" ice", " steam"], 1))
_WSC_TEXT = ("Mark told Pete many lies about himself , which Pete included in his book . He "
             "should have been more truthful .")

# task -> (canonical example as a loader gives it, (prompt, continuations, gold))
_CASES = {
    "anli_r1": _NLI3, "anli_r2": _NLI3, "anli_r3": _NLI3,
    "arc_easy": _ARC, "arc_challenge": _ARC,
    "boolq": ({"passage": "Cats are mammals.", "question": "is a cat a mammal", "label": 1},
              ("Cats are mammals.\nQuestion: is a cat a mammal?\nAnswer:", [" no", " yes"], 1)),
    "copa": (local.copa_example("The man broke his toe.", "cause",
                                "He dropped a hammer on his foot.", "He got a hole in his sock.",
                                0),
             ("The man broke his toe because",
              [" he dropped a hammer on his foot.", " he got a hole in his sock."], 0)),
    "headqa": ({"query": "Question: ¿Qué órgano bombea la sangre?",
                "choices": ["Corazón", "Pulmón"], "label": 0},
               ("Question: ¿Qué órgano bombea la sangre?\nAnswer:", [" Corazón", " Pulmón"],
                0)),
    # A TFDS row (raw fields): lm-eval would capitalise ctx_b ('He'), which TFDS cannot split off.
    "hellaswag": ({"query": "ours", "choices": ["x", "y"], "label": 1,
                   "activity_label": "Roof shingle removal", "ctx": "A man is on a roof. he",
                   "endings": ["x", "y"],
                   "raw_endings": ["is using wrap on a pair of skis.",
                                   "starts pulling up roofing [title] on a roof [step] now."]},
                  ("Roof shingle removal: A man is on a roof. he",
                   [" is using wrap on a pair of skis.",
                    " starts pulling up roofing. on a roof now."], 1)),
    "lambada": ({"context": "He opened the", "continuation": "door"},
                ("He opened the", [" door"], 0)),
    "logiqa": ({"query": "Passage: All cats purr.\nQuestion: Does Tom purr?\nChoices:\nA. yes\n"
                         "B. no\nC. maybe\nD. never",
                "choices": ["yes", "no", "maybe", "never"], "label": 0},
               ("Passage: All cats purr.\nQuestion: Does Tom purr?\nChoices:\nA. yes\nB. no\n"
                "C. maybe\nD. never\nAnswer:", [" yes", " no", " maybe", " never"], 0)),
    "mathqa": (next(tfds_loaders.CONVERTERS["mathqa"]({
        "Problem": "what is 2 + 2 ?", "options": "a ) 3 , b ) 4 , c ) 1,5 , d ) 6 , e ) 7",
        "correct": "b"})),
               ("Question: what is 2 + 2 ?\nAnswer:", [" 3", " 4", " 1,5", " 6", " 7"], 1)),
    "mrpc": ({"sentence1": "The company ( ABC ) did n't say .", "sentence2": 'He said " no " .',
              "label": 1},
             ("Sentence 1: The company (ABC) didn't say.\nSentence 2: He said\"no\".\n"
              "Question: Do both sentences mean the same thing?\nAnswer:", [" no", " yes"], 1)),
    "multirc": ({"paragraph": "Tom has a red car.", "question": "What color is it?",
                 "answer": "Blue", "label": 0, "group": "0/0"},
                ("Tom has a red car.\nQuestion: What color is it?\nAnswer:",
                 [" Blue\nIs the answer correct? no", " Blue\nIs the answer correct? yes"], 0)),
    "openbookqa": ({"query": "Predators eat", "choices": ["lions", "bunnies"], "label": 1},
                   ("Predators eat", [" lions", " bunnies"], 1)),
    "piqa": (next(tfds_loaders.CONVERTERS["piqa"]({"goal": "To open a jar",
                                                   "sol1": "twist the lid", "sol2": "kick it",
                                                   "label": 0})),
             ("Question: To open a jar\nAnswer:", [" twist the lid", " kick it"], 0)),
    "prost": ({"query": "A ball is dropped.\nQuestion: What falls?", "choices": ["ball", "hand"],
               "label": 0},
              ("A ball is dropped.\nQuestion: What falls?\nAnswer:", [" ball", " hand"], 0)),
    "pubmedqa": ({"query": "Abstract: First.\nSecond.\nQuestion: Does it work?",
                  "choices": ["yes", "no", "maybe"], "label": 2},
                 ("Abstract: First.\nSecond.\nQuestion: Does it work?\nAnswer:",
                  [" yes", " no", " maybe"], 2)),
    "qnli": (next(tfds_loaders.CONVERTERS["qnli"]({"question": "Who came?",
                                                   "sentence": "Bob came.", "label": 0})),
             ("Who came?\nBob came.\nQuestion: Does this response answer the question?\nAnswer:",
              [" yes", " no"], 0)),
    "qqp": (next(tfds_loaders.CONVERTERS["qqp"]({"question1": "Is it hot?",
                                                 "question2": "Is it warm?", "label": 1})),
            ("Question 1: Is it hot?\nQuestion 2: Is it warm?\nQuestion: Do both questions ask "
             "the same thing?\nAnswer:", [" no", " yes"], 1)),
    "race": (next(tfds_loaders.CONVERTERS["race"]({
        "article": "Tom went home.", "questions": ["Who went?", "Tom went  _  .", "Why?"],
        "options": [["Tom", "Ann", "Bob", "Sue"], ["out", "home", "away", "in"],
                    ["rain", "sun", "snow", "night"]],
        "answers": ["A", "B", "D"]})),
             ("Article: Tom went home.\n\nQuestion: Who went?\nAnswer: Tom\n _  .home\nWhy?",
              [" rain", " sun", " snow", " night"], 3)),
    "rte": ({"premise": "Dana died.", "hypothesis": "Dana is alive.", "label": 1},
            ("Dana died.\nQuestion: Dana is alive. True or False?\nAnswer:", [" True", " False"],
             1)),
    "sciq": ({"query": "Water boils at 100 C.\nQuestion: When does water boil?",
              "choices": ["50 C", "100 C"], "label": 1},
             ("Water boils at 100 C.\nQuestion: When does water boil?\nAnswer:",
              [" 50 C", " 100 C"], 1)),
    "sst": ({"sentence": "it 's a charming , funny film . ", "label": 1},
            ("it's a charming, funny film. \nQuestion: Is this sentence positive or negative?\n"
             "Answer:", [" negative", " positive"], 1)),
    "triviaqa": ({"question": "Who wrote Hamlet?",
                  "answers": ["William Shakespeare", "Shakespeare's", "Shakespeare"]},
                 ("Question: Who wrote Hamlet?\nAnswer:", [" Shakespeare", " William Shakespeare"],
                  0)),
    "webqs": ({"question": "where is paris?", "answers": ["France"]},
              ("Question: where is paris?\nAnswer:", [" France"], 0)),
    "wic": ({"word": "run", "sentence1": "He runs fast.", "sentence2": "The run was long.",
             "start1": 3, "end1": 7, "label": 0},
            ("Sentence 1: He runs fast.\nSentence 2: The run was long.\nQuestion: Is the word "
             "'runs' used in the same way in the two sentences above?\nAnswer:", [" no", " yes"],
             0)),
    "winogrande": (local.winogrande_example(
        ["Sarah beat Maria so Sarah", "Sarah beat Maria so Maria"], "was happy.", 0),
                   (["Sarah beat Maria so Sarah", "Sarah beat Maria so Maria"],
                    [" was happy.", " was happy."], 0)),
    "wnli": ({"sentence1": "The cup fell.", "sentence2": "It broke.", "label": 1},
             ("The cup fell.\nQuestion: It broke. True or False?\nAnswer:", [" False", " True"],
              1)),
    "wsc": ({"text": _WSC_TEXT, "span1_text": "Mark", "span2_text": "He", "span1_index": 0,
             "span2_index": 15, "label": 0},
            ("Passage: Mark told Pete many lies about himself, which Pete included in his book. "
             "*He* should have been more truthful.\nQuestion: In the passage above, does the "
             "pronoun \"*He*\" refer to \"*Mark*\"?\nAnswer:", [" no", " yes"], 0)),
}


def _render(task_name, example):
  """The task's dataset derivation, then its template: (prompts, continuations, gold)."""
  task = _TASKS[task_name]
  spec = loaders.DATASETS[task.dataset]
  doc = spec.derive(example) if spec.derive is not None else example
  (template,) = _TEMPLATES[task.templates]
  return template.render_options(doc)


def test_every_eai_task_has_a_hand_written_case():
  assert set(_CASES) == set(_TASKS) and len(_TASKS) == 30


@pytest.mark.parametrize("task_name", sorted(_CASES))
def test_renders_lm_eval_doc_to_text_and_continuations(task_name):
  example, (prompt, continuations, gold) = _CASES[task_name]
  prompts, choices, got_gold = _render(task_name, example)
  expected_prompts = prompt if isinstance(prompt, list) else [prompt] * len(continuations)
  assert (prompts, choices, got_gold) == (expected_prompts, continuations, gold)


def test_wsc_and_wic_need_the_offsets_lm_eval_reads():
  with pytest.raises(loaders.LoaderError, match="start1 and end1"):
    _render("wic", {"word": "run", "sentence1": "a", "sentence2": "b", "label": 0})
  with pytest.raises(loaders.LoaderError, match="span2_index"):
    _render("wsc", {"text": "x", "span1_text": "a", "span2_text": "b", "span2_index": -1,
                    "label": 0})


def test_metrics_and_splits_follow_lm_eval():
  assert {n for n, t in _TASKS.items() if t.kind == suites.GREEDY} == {"lambada", "triviaqa",
                                                                       "webqs"}
  assert {n: t.metric for n, t in _TASKS.items() if t.metric != "accuracy"} == {
      "multirc": "acc_all"}
  # lm-eval reads test documents when a task has them: ANLI's test rounds, not dev.
  assert loaders.DATASETS["eai_anli_r1"].tfds == ("anli/r1", "test", "anli")
  assert loaders.DATASETS["eai_anli_r1"].local[0][0] == "anli/r1_test.jsonl"
  assert loaders.DATASETS["eai_wsc"].tfds[0] == "super_glue/wsc"  # not T0's wsc.fixed
  notes = suites.protocol_notes(suites.get_suite("eai_eval"))
  assert "0.2.0" in notes["reference"] and notes["max_prompt_length"] == 512
  assert notes["metrics"]["multirc"] == "acc_all" and "headqa" in notes["deviations"]["tasks"]


def test_multirc_acc_all_counts_a_question_only_when_all_its_answers_are_right():
  def ex(group, gold):
    return aggregation.RankedExample(("p", "p"), (" no", " yes"), gold, group=group)
  # Question a: first answer right, second wrong -> wrong. Question b: its one answer right.
  # Question c: its one answer tied -> half credit (the expected random tie-break).
  examples = [ex("a", 1), ex("a", 0), ex("b", 0), ex("c", 1)]
  scores = [[-2.0, -1.0], [-2.0, -1.0], [-1.0, -3.0], [-1.0, -1.0]]
  m = aggregation.prompt_metrics(examples, scores)
  assert m["accuracy"] == pytest.approx((1 + 0 + 1 + 0.5) / 4)
  assert m["acc_all"] == pytest.approx((0 + 1 + 0.5) / 3) and m["n_groups"] == 3
  assert m["acc_all_random_baseline"] == pytest.approx((0.25 + 0.5 + 0.5) / 3)
  summary = aggregation.task_summary({"lm_eval": m}, metric="acc_all")
  assert summary["median"] == pytest.approx(0.5) and summary["n"] == 3
  assert summary["metric"] == "acc_all"
  assert summary["random_baseline"] == pytest.approx(1.25 / 3)


def test_acc_norm_does_not_count_the_leading_space():
  ex = aggregation.RankedExample(("p", "p"), (" ab", " abcd"), 1)
  # Without the space: -1/2 = -0.5 < -1.9/4 = -0.475, the gold (second) choice wins; counting
  # the space, -1/3 > -1.9/5 would pick the first.
  assert aggregation.prompt_metrics([ex], [[-1.0, -1.9]])["acc_norm"] == 1.0
  assert -1.0 / 3 > -1.9 / 5


class _CharVocab:
  eos_id = 1

  def encode(self, text):
    return [2 + (ord(c) % 50) for c in text]


class _StubModel:
  """A decoder-only model of the model API whose log-probabilities are all zero."""

  class arch:  # pylint: disable=invalid-name
    encoder_decoder = False

  def token_log_probs(self, params, batch):
    del params
    return jnp.zeros(batch["decoder_target_tokens"].shape, jnp.float32)


def test_prompts_keep_their_last_max_prompt_length_tokens():
  vocab = _CharVocab()
  scorer = rc.ModelScorer(_StubModel(), {}, vocab, rc.ScoringConfig(max_prompt_length=512))
  long_prompt = "".join(chr(97 + i % 26) for i in range(700))
  (item,) = scorer._items([(long_prompt, " yes", False, False)])  # pylint: disable=protected-access
  assert item.prompt == vocab.encode(long_prompt)[-512:] and item.option == vocab.encode(" yes")
  (short,) = scorer._items([("abc", " no", False, False)])  # pylint: disable=protected-access
  assert short.prompt == vocab.encode("abc")


@pytest.mark.parametrize("binding,expected", [(None, 512), (8, 8)])
def test_eai_eval_truncation_is_set_by_gin(tmp_path, binding, expected):
  gin.clear_config()
  if binding is not None:
    gin.parse_config(f"eval.suites.eai_eval.max_prompt_length = {binding}")
  try:
    suite = suites.get_suite("eai_eval:boolq")
    assert suite.max_prompt_length == expected
    data = tmp_path / "superglue"
    data.mkdir()
    (data / "boolq_val.jsonl").write_text(
        '{"question": "is it", "passage": "' + "word " * 200 + '", "label": true}\n')
    results = zero_shot.evaluate(_StubModel(), {}, _CharVocab(), suite, local_data_dir=tmp_path)
  finally:
    gin.clear_config()
  assert results["protocol"]["scoring"]["max_prompt_length"] == expected
  assert results["protocol"]["max_prompt_length"] == expected
  assert results["tasks"]["boolq"]["median"] == pytest.approx(0.5)  # all-zero scores: a tie
  assert np.isclose(results["tasks"]["boolq"]["random_baseline"], 0.5)


@pytest.mark.data
@pytest.mark.parametrize("task_name,count,prompt_end,continuations,gold", [
    ("arc_easy", 2376, "foundation of most food webs?\nAnswer:",
     [" Sunlight is the source of energy for nearly all ecosystems.",
      " Most ecosystems are found on land instead of in water.",
      " Carbon dioxide is more available than other gases.",
      " The producers in all ecosystems are plants."], 0),
    ("openbookqa", 500, "they decide the best way to save money is to",
     [" make more phone calls", " quit eating lunch out", " buy less with monopoly money",
      " have lunch with friends"], 1),
    ("lambada", 5153, "in a confident grin, I don't care about", [" signs"], 0),
    # The file's query has a comma ('..., therefore'); lm-eval's has none.
    ("copa", 100, "The man turned on the faucet therefore",
     [" the toilet filled with water.", " water flowed from the spout."], 1),
    ("rte", 277,
     "Foundation.\nQuestion: Christopher Reeve had an accident. True or False?\nAnswer:",
     [" True", " False"], 1),
    ("winogrande", 1267, "Sarah was a much better surgeon than Maria so Sarah",
     [" always got the easier cases."] * 2, 1),
])
def test_shared_data_loads_and_renders_lm_eval_strings(shared_data, task_name, count, prompt_end,
                                                       continuations, gold):
  task = _TASKS[task_name]
  examples = loaders.load_dataset(task.dataset, local_data_dir=shared_data)
  assert len(examples) == count
  (template,) = _TEMPLATES[task.templates]
  prompts, choices, got_gold = template.render_options(examples[0])
  assert prompts[0].endswith(prompt_end) and (choices, got_gold) == (continuations, gold)
  if task_name == "copa":
    assert prompts[0] == prompt_end
  for ex in examples:  # every row renders
    template.render_options(ex)


def test_local_multirc_gives_one_example_per_answer_grouped_by_question(tmp_path):
  row = {"idx": 4, "passage": {"text": "Tom has a red car.", "questions": [
      {"idx": 0, "question": "What color?", "answers": [{"idx": 0, "text": "Red", "label": 1},
                                                        {"idx": 1, "text": "Blue", "label": 0}]},
      {"idx": 1, "question": "Who?", "answers": [{"idx": 2, "text": "Tom", "label": 1}]}]}}
  path = tmp_path / "superglue" / "multirc_val.jsonl"
  path.parent.mkdir()
  path.write_text(json.dumps(row) + "\n")
  examples = loaders.load_dataset("eai_multirc", local_data_dir=tmp_path)
  assert [(e["answer"], e["label"], e["group"]) for e in examples] == [
      ("Red", 1, "4/0"), ("Blue", 0, "4/0"), ("Tom", 1, "4/1")]
  assert examples[0]["paragraph"] == "Tom has a red car."
  answers = [{"text": "a"}]  # no label
  bad = dict(row, passage={"text": "x", "questions": [{"question": "q", "answers": answers}]})
  path.write_text(json.dumps(bad) + "\n")
  with pytest.raises(loaders.LoaderError, match=r"line 1: field 'passage.questions\[0\].answers'"):
    loaders.load_dataset("eai_multirc", local_data_dir=tmp_path)
