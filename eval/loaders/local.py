"""Readers of the published local formats (the ones in ../shared/data) into canonical examples.

Canonical examples are plain dicts with an integer `label` (the gold option) and the fields the
templates of eval/templates/*.yaml read; TFDS loaders (tfds_loaders.py) give the same fields, so
one template serves both sources. A malformed row raises LoaderError naming file, line and field.
An optional `group` puts examples that are scored together under acc_all (MultiRC: the answers of
one question).
"""

from __future__ import annotations

import json
import pathlib
import re
from typing import Any, Callable, Mapping, Sequence

from eval.loaders.errors import DatasetUnavailable, LoaderError

_SUPERGLUE_LABELS = {
    "cb": ("entailment", "contradiction", "neutral"),
    "rte": ("entailment", "not_entailment"),
}
_ANLI_LABELS = {"e": 0, "n": 1, "c": 2}


def _check(cond: bool, path: pathlib.Path, line: int, field: str, expected: str, got: Any):
  if not cond:
    raise LoaderError(f"{path.name}, line {line}: field {field!r} expected {expected}, "
                      f"got {got!r} (file {path}).")


def read_jsonl(path: pathlib.Path, required: Mapping[str, type | tuple[type, ...]]
               ) -> list[tuple[int, dict]]:
  """(line number, row) of a jsonl file whose rows must carry `required` fields of given types."""
  path = pathlib.Path(path)
  if not path.is_file():
    raise DatasetUnavailable(f"no file {path.name} at {path.parent}")
  rows = []
  with path.open("rb") as f:  # bytes, so a decoding error knows its line
    for line_no, raw in enumerate(f, start=1):
      try:
        line = raw.decode("utf-8")
      except UnicodeDecodeError as e:
        raise LoaderError(f"{path.name}, line {line_no}: not UTF-8 (byte {raw[e.start]:#04x} at "
                          f"byte {e.start + 1} of the line) (file {path}).") from None
      if not line.strip():
        continue
      try:
        row = json.loads(line)
      except json.JSONDecodeError as e:
        raise LoaderError(f"{path.name}, line {line_no}: not valid JSON ({e.msg}) "
                          f"(file {path}).") from e
      _check(isinstance(row, dict), path, line_no, "<row>", "a JSON object", row)
      for field, types in required.items():
        _check(field in row, path, line_no, field, "to be present", "<missing>")
        _check(isinstance(row[field], types) and not (
            isinstance(row[field], bool) and bool not in _as_tuple(types)),
               path, line_no, field, _type_names(types), row[field])
      rows.append((line_no, row))
  if not rows:
    raise LoaderError(f"{path.name} has no rows (file {path}).")
  return rows


def _as_tuple(types) -> tuple:
  return types if isinstance(types, tuple) else (types,)


def _type_names(types) -> str:
  return " or ".join(t.__name__ for t in _as_tuple(types))


def _choices(path, line_no, row, field="choices", min_len=2) -> list[str]:
  ch = row[field]
  _check(isinstance(ch, list) and len(ch) >= min_len and all(isinstance(c, str) for c in ch),
         path, line_no, field, f"a list of >= {min_len} strings", ch)
  return ch


def _gold(path, line_no, row, n: int, field: str = "gold") -> int:
  g = row[field]
  _check(isinstance(g, int) and not isinstance(g, bool) and 0 <= g < n, path, line_no, field,
         f"an integer in [0, {n})", g)
  return g


# -- SuperGLUE official jsonl ------------------------------------------------------------------


def superglue_nli(path: pathlib.Path, task: str) -> list[dict]:
  """CB / RTE: premise, hypothesis, label (string) -> label index."""
  names = _SUPERGLUE_LABELS[task]
  out = []
  for line_no, row in read_jsonl(path, {"premise": str, "hypothesis": str, "label": str}):
    _check(row["label"] in names, path, line_no, "label", f"one of {list(names)}", row["label"])
    out.append({"premise": row["premise"], "hypothesis": row["hypothesis"],
                "label": names.index(row["label"]), "idx": row.get("idx", line_no - 1)})
  return out


def superglue_wsc(path: pathlib.Path) -> list[dict]:
  out = []
  for line_no, row in read_jsonl(path, {"text": str, "target": dict, "label": bool}):
    t = row["target"]
    for f in ("span1_text", "span2_text"):
      _check(isinstance(t.get(f), str), path, line_no, f"target.{f}", "a string", t.get(f))
    out.append({"text": row["text"], "span1_text": t["span1_text"],
                "span2_text": t["span2_text"], "span1_index": t.get("span1_index", -1),
                "span2_index": t.get("span2_index", -1), "label": int(row["label"])})
  return out


def superglue_wic(path: pathlib.Path) -> list[dict]:
  """The word, both sentences, and the word's character offsets in sentence 1 when given."""
  req = {"word": str, "sentence1": str, "sentence2": str, "label": bool}
  return [{**{k: row[k] for k in ("word", "sentence1", "sentence2")}, "label": int(row["label"]),
           **{k: row[k] for k in ("start1", "end1") if isinstance(row.get(k), int)}}
          for _, row in read_jsonl(path, req)]


def superglue_boolq(path: pathlib.Path) -> list[dict]:
  req = {"question": str, "passage": str, "label": bool}
  return [{"question": row["question"], "passage": row["passage"], "label": int(row["label"])}
          for _, row in read_jsonl(path, req)]


def superglue_multirc(path: pathlib.Path) -> list[dict]:
  """Official MultiRC jsonl (a passage with questions with answers) -> one example per answer."""
  out = []
  for line_no, row in read_jsonl(path, {"passage": dict}):
    passage = row["passage"]
    _check(isinstance(passage.get("text"), str) and isinstance(passage.get("questions"), list),
           path, line_no, "passage", "{text: str, questions: list}", passage)
    for q_no, q in enumerate(passage["questions"]):
      _check(isinstance(q, dict) and isinstance(q.get("question"), str) and
             isinstance(q.get("answers"), list), path, line_no, f"passage.questions[{q_no}]",
             "{question: str, answers: list}", q)
      for a in q["answers"]:
        _check(isinstance(a, dict) and isinstance(a.get("text"), str) and a.get("label") in (0, 1),
               path, line_no, f"passage.questions[{q_no}].answers", "{text: str, label: 0 or 1}", a)
        out.append({"paragraph": passage["text"], "question": q["question"], "answer": a["text"],
                    "label": int(a["label"]),
                    "group": f"{row.get('idx', line_no - 1)}/{q.get('idx', q_no)}"})
  return out


def superglue_copa(path: pathlib.Path) -> list[dict]:
  req = {"premise": str, "choice1": str, "choice2": str, "question": str, "label": int}
  out = []
  for line_no, row in read_jsonl(path, req):
    _check(row["question"] in ("cause", "effect"), path, line_no, "question",
           "'cause' or 'effect'", row["question"])
    _gold(path, line_no, row, 2, "label")
    out.append(copa_example(row["premise"], row["question"], row["choice1"], row["choice2"],
                            row["label"]))
  return out


def copa_example(premise: str, question: str, choice1: str, choice2: str, label: int) -> dict:
  """Canonical COPA: official fields plus the connective query and lower-cased choices."""
  connective = "because" if question == "cause" else "therefore"
  lower = [c[:1].lower() + c[1:] for c in (choice1, choice2)]
  return {"premise": premise, "question": question, "choice1": choice1, "choice2": choice2,
          "query": f"{premise.rstrip().rstrip('.')}, {connective}", "choices": lower,
          "label": label}


def anli(path: pathlib.Path) -> list[dict]:
  """The official ANLI jsonl: context, hypothesis, label in e/n/c."""
  out = []
  for line_no, row in read_jsonl(path, {"context": str, "hypothesis": str, "label": str}):
    _check(row["label"] in _ANLI_LABELS, path, line_no, "label", "one of e, n, c", row["label"])
    out.append({"premise": row["context"], "hypothesis": row["hypothesis"],
                "label": _ANLI_LABELS[row["label"]]})
  return out


# -- the multiple-choice jsonl of ../shared/data/multiple_choice --------------------------------


def multiple_choice(path: pathlib.Path) -> list[dict]:
  """{query, choices, gold} -> {query, choices, label}."""
  out = []
  for line_no, row in read_jsonl(path, {"query": str, "choices": list, "gold": int}):
    choices = _choices(path, line_no, row)
    out.append({"query": row["query"], "choices": choices,
                "label": _gold(path, line_no, row, len(choices))})
  return out


def copa_multiple_choice(path: pathlib.Path) -> list[dict]:
  """COPA as {query: 'premise, because|therefore', choices, gold} -> canonical COPA."""
  out = []
  for line_no, row in read_jsonl(path, {"query": str, "choices": list, "gold": int}):
    choices = _choices(path, line_no, row)
    head, sep, connective = row["query"].rpartition(", ")
    _check(sep and connective in ("because", "therefore"), path, line_no, "query",
           "'<premise>, because' or '<premise>, therefore'", row["query"])
    question = "cause" if connective == "because" else "effect"
    upper = [c[:1].upper() + c[1:] for c in choices]
    ex = copa_example(head + ".", question, upper[0], upper[1], _gold(path, line_no, row, 2))
    ex["choices"] = choices  # keep the file's own spelling
    out.append(ex)
  return out


_NO_SPACE_BEFORE = frozenset("'’.,;:!?)")


def winogrande_example(context_options: Sequence[str], continuation: str, label: int) -> dict:
  """Canonical Winogrande: partial-scoring fields plus the blanked sentence and the two options."""
  a, b = context_options
  n = 0
  while n < min(len(a), len(b)) and a[n] == b[n]:
    n += 1
  n = a.rfind(" ", 0, n) + 1 if (n < len(a) or n < len(b)) else n  # back off to a word start
  option1, option2 = a[n:], b[n:]
  # The file dropped the space after the blank: none before punctuation ("_'s", "_.").
  space = "" if continuation[:1] in _NO_SPACE_BEFORE else " "
  return {"context_options": list(context_options), "continuation": continuation,
          "sentence": f"{a[:n]}_{space}{continuation}", "option1": option1, "option2": option2,
          "answer": str(label + 1), "label": label}


def winogrande(path: pathlib.Path) -> list[dict]:
  out = []
  for line_no, row in read_jsonl(path, {"context_options": list, "continuation": str,
                                        "gold": int}):
    opts = _choices(path, line_no, row, "context_options")
    _check(len(opts) == 2, path, line_no, "context_options", "exactly 2 contexts", opts)
    out.append(winogrande_example(opts, row["continuation"], _gold(path, line_no, row, 2)))
  return out


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def hellaswag_example(activity_label: str, ctx: str, endings: Sequence[str], label: int) -> dict:
  """Canonical HellaSwag: {query, choices, label} plus Hugging Face's names (promptsource reads
  ctx, ctx_a, ctx_b, endings, activity_label).

  TFDS and lm-evaluation-harness give only the joined context, so ctx_a / ctx_b are recovered: an
  unfinished last sentence (ActivityNet's ctx_b, e.g. 'then') is ctx_b, the sentences before it
  ctx_a; a context that ends a sentence (most WikiHow items) has an empty ctx_b.
  """
  ctx = ctx.strip()
  parts = _SENTENCE_END.split(ctx)
  ctx_a, ctx_b = ctx, ""
  if len(parts) > 1 and not ctx.endswith((".", "!", "?")):
    ctx_b = parts[-1]
    ctx_a = ctx[:len(ctx) - len(ctx_b)].rstrip()
  endings = list(endings)
  return {"query": f"{activity_label}: {ctx}" if activity_label else ctx, "choices": endings,
          "label": label, "ctx": ctx, "ctx_a": ctx_a, "ctx_b": ctx_b, "endings": endings,
          "activity_label": activity_label}


def hellaswag_multiple_choice(path: pathlib.Path) -> list[dict]:
  """lm-evaluation-harness's HellaSwag ({query: 'activity: context', choices, gold}) with the
  Hugging Face fields added; its capitalised ctx_b gets back its lower-case first letter."""
  out = []
  for ex in multiple_choice(path):
    activity, sep, ctx = ex["query"].partition(": ")
    if not sep:
      activity, ctx = "", ex["query"]
    full = hellaswag_example(activity, ctx, ex["choices"], ex["label"])
    if full["ctx_b"]:
      b = full["ctx_b"][:1].lower() + full["ctx_b"][1:]
      full.update(ctx_b=b, ctx=f"{full['ctx_a']} {b}")
    full["query"] = ex["query"]  # the file's own text for the EAI prompt
    out.append(full)
  return out


def story_cloze_example(context: str, endings: Sequence[str], label: int) -> dict:
  """Canonical StoryCloze: {query, choices, label} plus Hugging Face's names (promptsource reads
  input_sentence_1..4, sentence_quiz1/2, answer_right_ending in 1..2).

  The four input sentences are split from the joined context (TFDS and lm-evaluation-harness keep
  only that); a context that does not split into exactly four keeps its tail in the fourth.
  """
  sentences = _SENTENCE_END.split(context.strip())
  sentences = sentences[:3] + [" ".join(sentences[3:])] if len(sentences) >= 4 else (
      sentences + [""] * (4 - len(sentences)))
  endings = list(endings)
  return {"query": context, "choices": endings, "label": label,
          **{f"input_sentence_{i + 1}": s for i, s in enumerate(sentences)},
          "sentence_quiz1": endings[0], "sentence_quiz2": endings[1],
          "answer_right_ending": label + 1}


def story_cloze_multiple_choice(path: pathlib.Path) -> list[dict]:
  """StoryCloze as {query: the four sentences, choices: two endings, gold}."""
  out = []
  for line_no, row in read_jsonl(path, {"query": str, "choices": list, "gold": int}):
    choices = _choices(path, line_no, row)
    _check(len(choices) == 2, path, line_no, "choices", "exactly 2 endings", choices)
    out.append(story_cloze_example(row["query"], choices, _gold(path, line_no, row, 2)))
  return out


def context_continuation(path: pathlib.Path) -> list[dict]:
  """LAMBADA-style {context, continuation} (scored by greedy match of the continuation)."""
  return [{"context": row["context"], "continuation": row["continuation"]}
          for _, row in read_jsonl(path, {"context": str, "continuation": str})]


def blimp_paradigm(path: pathlib.Path) -> list[dict]:
  """One BLiMP paradigm file: sentence_good, sentence_bad (UID names the paradigm)."""
  return [{"sentence_good": row["sentence_good"], "sentence_bad": row["sentence_bad"],
           "uid": row.get("UID", path.stem), "label": 0}
          for _, row in read_jsonl(path, {"sentence_good": str, "sentence_bad": str})]


Reader = Callable[[pathlib.Path], list[dict]]
