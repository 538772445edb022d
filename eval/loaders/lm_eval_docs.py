"""EAI-Eval's data: lm-evaluation-harness 0.2.0's documents, derived from the canonical examples.

The eai_eval suite reproduces lm-evaluation-harness (lm-eval) 0.2.0, the release of the paper's
time (Wang et al., 2022 drove it zero-shot through an adaptor in their t5x fork). Its prompt
wording is template data (eval/templates/eai_eval.yaml); this module does the data-level steps
lm-eval applies before formatting (detokenising, HellaSwag's clean-up, WSC's marked pronoun,
TriviaQA's alias pruning) and names the split lm-eval reads: its evaluator takes a task's test
documents when it has them, else the validation ones.

Local multiple-choice files ({query, choices, gold}, ../shared/data/multiple_choice) hold lm-eval's
query without the trailing "\\nAnswer:" that its doc_to_text adds (as arc_easy.jsonl does); the
templates add it back. Each derive function adds fields and never removes the canonical ones.
"""

from __future__ import annotations

import re
from typing import Any

from eval.loaders.errors import LoaderError

LM_EVAL_VERSION = "0.2.0"


def general_detokenize(text: str) -> str:
  """lm-eval 0.2.0's utils.general_detokenize (MRPC, SST, WSC)."""
  for old, new in ((" n't", "n't"), (" )", ")"), ("( ", "("), ('" ', '"'), (' "', '"')):
    text = text.replace(old, new)
  return re.sub(r" (['.,])", r"\1", text)


def continuations(ex: dict) -> dict:
  """Multiple choice: each choice as lm-eval scores it, after a space."""
  return {**ex, "continuations": [" " + c for c in ex["choices"]]}


def _hellaswag_clean(text: str) -> str:
  # lm-eval's HellaSwag.preprocess: the brackets are WikiHow artefacts.
  text = text.strip().replace(" [title]", ". ")
  return re.sub(r"\[.*?\]", "", text).replace("  ", " ")


def hellaswag(ex: dict) -> dict:
  """lm-eval's query 'activity_label: ctx' and endings, cleaned (TFDS rows carry the raw fields).

  lm-eval joins ctx_a and ctx_b.capitalize(); TFDS keeps only their join (ctx), so a TFDS row's
  ctx_b keeps its own case (listed among the suite's deviations). Local rows are used as written.
  """
  if "raw_endings" in ex:
    ex = {**ex, "query": _hellaswag_clean(f"{ex['activity_label']}: {ex['ctx']}"),
          "choices": [_hellaswag_clean(e) for e in ex["raw_endings"]]}
  return continuations(ex)


def detokenized(*fields: str):
  """MRPC and SST: lm-eval shows the sentences detokenised."""
  def derive(ex: dict) -> dict:
    return {**ex, **{f: general_detokenize(ex[f]) for f in fields}}
  return derive


def wsc(ex: dict) -> dict:
  """lm-eval's passage: the pronoun (a word index, as Hugging Face / TFDS give it) in *stars*."""
  text, pronoun = ex["text"], ex["span2_text"]
  if ex.get("span2_index", -1) < 0:
    raise LoaderError("WSC rows need target.span2_index (the pronoun's word index): "
                      "lm-evaluation-harness marks the pronoun there.")
  pre = " ".join(text.split()[:ex["span2_index"]])
  post = text[len(pre) + len(pronoun) + 1:]
  return {**ex, "passage": general_detokenize(pre + f" *{pronoun}*" + post)}


def wic(ex: dict) -> dict:
  """lm-eval names the word as it is written in sentence 1 (sentence1[start1:end1])."""
  if not isinstance(ex.get("start1"), int) or not isinstance(ex.get("end1"), int):
    raise LoaderError("WiC rows need start1 and end1 (character offsets of the word in sentence1): "
                      "lm-evaluation-harness shows sentence1[start1:end1], not the lemma.")
  return {**ex, "surface_word": ex["sentence1"][ex["start1"]:ex["end1"]]}


def _remove_prefixes(aliases: list[str]) -> list[str]:
  # lm-eval's _remove_prefixes: sorted, an alias that extends the last kept one is dropped.
  aliases = sorted(aliases)
  kept = [aliases[0]]
  for alias in aliases[1:]:
    if not alias.startswith(kept[-1]):
      kept.append(alias)
  return kept


def answer_aliases(ex: dict) -> dict:
  """TriviaQA / WebQuestions: greedy match of any alias, pruned and spaced as lm-eval does."""
  if not ex["answers"]:
    raise LoaderError(f"an open-QA example has no answers: {ex.get('question')!r}")
  return {**ex, "continuations": [" " + a for a in _remove_prefixes(list(ex["answers"]))]}


def race_query(article: str, problems: list[dict[str, Any]]) -> str:
  """lm-eval 0.2.0's RACE document: one per article, earlier questions answered, the last asked.

  Each problem is {'question', 'answer_text'}; a question ending in '  _  .' (a cloze) is shown by
  its last five characters and the answer, as lm-eval does.
  """
  text = "Article: " + article + "\n\n"
  for p in problems[:-1]:
    if p["question"][-6:] == "  _  .":
      text += p["question"][-5:] + p["answer_text"] + "\n"
    else:
      text += "Question: " + p["question"] + "\n" + "Answer: " + p["answer_text"] + "\n"
  return text + problems[-1]["question"]


_MATHQA_OPTION = re.compile(r"[abcd] \) .*?, |e \) .*?$")


def mathqa_choices(options: str) -> list[str]:
  """lm-eval 0.2.0's MathQA option parsing ('a ) 12 , b ) 13 , ... e ) 16')."""
  return [c[4:].rstrip(" ,") for c in _MATHQA_OPTION.findall(options)]
