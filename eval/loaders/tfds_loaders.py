"""TFDS sources of the evaluation sets, converted to the canonical fields of local.py.

Nothing is downloaded unless asked (`download=True`): offline, an unprepared data set is reported
as unavailable with the TFDS name and data_dir to prepare, and the suite goes on without it.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Iterable

from eval.loaders import lm_eval_docs
from eval.loaders import local
from eval.loaders.errors import DatasetUnavailable

Converter = Callable[[dict], Iterable[dict]]


def _s(x: Any) -> str:
  return x.decode("utf-8") if isinstance(x, bytes) else str(x)


def _nli(ex):
  yield {"premise": _s(ex["premise"]), "hypothesis": _s(ex["hypothesis"]),
         "label": int(ex["label"])}


def _anli(ex):
  yield {"premise": _s(ex["context"]), "hypothesis": _s(ex["hypothesis"]),
         "label": int(ex["label"])}


def _wsc(ex):
  yield {"text": _s(ex["text"]), "span1_text": _s(ex["span1_text"]),
         "span2_text": _s(ex["span2_text"]), "span1_index": int(ex["span1_index"]),
         "span2_index": int(ex["span2_index"]), "label": int(ex["label"])}


def _wic(ex):
  yield {"word": _s(ex["word"]), "sentence1": _s(ex["sentence1"]),
         "sentence2": _s(ex["sentence2"]), "start1": int(ex["start1"]), "end1": int(ex["end1"]),
         "label": int(ex["label"])}


def _copa(ex):
  yield local.copa_example(_s(ex["premise"]), _s(ex["question"]), _s(ex["choice1"]),
                           _s(ex["choice2"]), int(ex["label"]))


def _boolq(ex):
  yield {"question": _s(ex["question"]), "passage": _s(ex["passage"]), "label": int(ex["label"])}


def _winogrande(ex):
  sentence = _s(ex["sentence"])
  blank = sentence.index("_")
  options = [_s(ex["option1"]), _s(ex["option2"])]
  head, tail = sentence[:blank], sentence[blank + 1:].strip()
  yield {"context_options": [head + o for o in options], "continuation": tail,
         "sentence": sentence, "option1": options[0], "option2": options[1],
         "answer": str(int(ex["label"]) + 1), "label": int(ex["label"])}


_BRACKETS = re.compile(r"\[[^\]]*\]")


def _clean(text: str) -> str:
  return re.sub(r"\s+", " ", _BRACKETS.sub("", text.replace(" [title]", ". "))).strip()


def _hellaswag(ex):
  full = local.hellaswag_example(_s(ex["activity_label"]), _s(ex["context"]),
                                 [_s(e) for e in ex["endings"]], int(ex["label"]))
  # The EAI prompt reads lm-evaluation-harness's cleaned text (lm_eval_docs cleans raw_endings);
  # promptsource reads the raw fields.
  full.update(query=_clean(f"{_s(ex['activity_label'])}: {_s(ex['context'])}"),
              choices=[_clean(e) for e in full["endings"]], raw_endings=list(full["endings"]))
  yield full


def _story_cloze(ex):
  yield local.story_cloze_example(_s(ex["context"]), [_s(e) for e in ex["endings"]],
                                  int(ex["label"]))


def _openbookqa(ex):
  q = ex["question"]
  yield {"query": _s(q["stem"]), "choices": [_s(q[f"choice_{c}"]) for c in "ABCD"],
         "label": int(ex["answerKey"])}


def _arc(ex):
  labels = [int(x) for x in ex["choices"]["label"]]
  yield {"query": f"Question: {_s(ex['question'])}",
         "choices": [_s(t) for t in ex["choices"]["text"]],
         "label": labels.index(int(ex["answerKey"]))}


def _piqa(ex):
  yield {"query": f"Question: {_s(ex['goal'])}", "choices": [_s(ex["sol1"]), _s(ex["sol2"])],
         "label": int(ex["label"])}


def _pair(a: str, b: str):
  def convert(ex):
    yield {"sentence1": _s(ex[a]), "sentence2": _s(ex[b]), "label": int(ex["label"])}
  return convert


def _sst(ex):
  yield {"sentence": _s(ex["sentence"]), "label": int(ex["label"])}


def _multirc(ex):
  # group: the question the answer belongs to (acc_all scores a question, all answers right).
  idx = ex["idx"]
  yield {"paragraph": _s(ex["paragraph"]), "question": _s(ex["question"]),
         "answer": _s(ex["answer"]), "label": int(ex["label"]),
         "group": f"{int(idx['paragraph'])}/{int(idx['question'])}"}


def _race(ex):
  # lm-evaluation-harness's RACE document: one per article, scored on its last question.
  options = [[_s(o) for o in opts] for opts in ex["options"]]
  golds = ["ABCD".index(_s(a)) for a in ex["answers"]]
  problems = [{"question": _s(q), "answer_text": o[g]}
              for q, o, g in zip(ex["questions"], options, golds)]
  yield {"query": lm_eval_docs.race_query(_s(ex["article"]), problems), "choices": options[-1],
         "label": golds[-1]}


def _mathqa(ex):
  yield {"query": f"Question: {_s(ex['Problem'])}",
         "choices": lm_eval_docs.mathqa_choices(_s(ex["options"])),
         "label": "abcde".index(_s(ex["correct"]))}


def _lambada(ex):
  passage = _s(ex["passage"])
  context, _, word = passage.rpartition(" ")
  yield {"context": context, "continuation": word}


def _triviaqa(ex):
  yield {"question": _s(ex["question"]),
         "answers": [_s(a) for a in ex["answer"]["aliases"]]}


def _webqs(ex):
  yield {"question": _s(ex["question"]), "answers": [_s(a) for a in ex["answers"]]}


def _blimp(ex):
  yield {"sentence_good": _s(ex["sentence_good"]), "sentence_bad": _s(ex["sentence_bad"]),
         "uid": _s(ex["UID"]), "label": 0}


CONVERTERS: dict[str, Converter] = {
    "nli": _nli, "anli": _anli, "wsc": _wsc, "wic": _wic, "copa": _copa, "boolq": _boolq,
    "winogrande": _winogrande, "hellaswag": _hellaswag, "story_cloze": _story_cloze,
    "openbookqa": _openbookqa, "arc": _arc, "piqa": _piqa, "mrpc": _pair("sentence1", "sentence2"),
    "qqp": _pair("question1", "question2"), "qnli": _pair("question", "sentence"),
    "wnli": _pair("sentence1", "sentence2"), "sst": _sst, "multirc": _multirc, "race": _race,
    "mathqa": _mathqa, "lambada": _lambada, "triviaqa": _triviaqa, "webqs": _webqs,
    "blimp": _blimp,
}


def load(name: str, split: str, converter: str, data_dir: str | None = None,
         manual_dir: str | None = None, download: bool = False,
         needs_manual_dir: bool = False) -> list[dict]:
  """Examples of TFDS `name`/`split` in canonical fields; DatasetUnavailable when not prepared."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  try:
    builder = tfds.builder(name, data_dir=data_dir, try_gcs=False)
  except Exception as e:  # pylint: disable=broad-except
    raise DatasetUnavailable(f"TFDS has no dataset {name!r} ({type(e).__name__})") from e
  if not builder.is_prepared():
    if not download:
      raise DatasetUnavailable(
          f"TFDS dataset {name!r} is not prepared in {builder.data_dir} (prepare it with "
          f"`tfds build {name}`{' --manual_dir=...' if needs_manual_dir else ''}, or pass "
          "download=True / provide the local files under LOCAL_DATA_DIR)")
    try:
      config = tfds.download.DownloadConfig(manual_dir=manual_dir)
      builder.download_and_prepare(download_config=config)
    except Exception as e:  # pylint: disable=broad-except
      raise DatasetUnavailable(f"TFDS dataset {name!r} could not be prepared: "
                               f"{type(e).__name__}: {str(e)[:200]}") from e
  if split not in builder.info.splits:
    raise DatasetUnavailable(f"TFDS dataset {name!r} has no split {split!r} "
                             f"(has {sorted(builder.info.splits)})")
  ds = builder.as_dataset(split=split, shuffle_files=False)
  convert = CONVERTERS[converter]
  return [out for ex in tfds.as_numpy(ds) for out in convert(ex)]
