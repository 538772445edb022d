"""Where each evaluation data set comes from: local published files first, then TFDS.

`load_dataset(name, local_data_dir=...)` returns canonical examples (see local.py). A data set with
no source raises DatasetUnavailable listing every place looked at; suites turn that into a
'missing' entry of results.json. A present but malformed file raises LoaderError (a ConfigError:
the command line's `error:` line and exit 2).
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
from typing import Callable

from eval.loaders import lm_eval_docs, local, tfds_loaders
from eval.loaders.errors import DatasetUnavailable, LoaderError

__all__ = ["DatasetSpec", "DATASETS", "DatasetUnavailable", "LoaderError", "load_dataset",
           "blimp_paradigms"]


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  """Local files (relative to LOCAL_DATA_DIR, first found wins) and the TFDS fallback."""

  local: tuple[tuple[str, Callable[[pathlib.Path], list[dict]]], ...] = ()
  tfds: tuple[str, str, str] | None = None  # (name, split, converter)
  manual_dir: bool = False  # TFDS needs a manual download folder (StoryCloze)
  derive: Callable[[dict], dict] | None = None  # applied to every example, whatever the source


def _mc(name: str) -> tuple[str, Callable]:
  return (f"multiple_choice/{name}.jsonl", local.multiple_choice)


_NLI = {
    "cb": lambda p: local.superglue_nli(p, "cb"),
    "rte": lambda p: local.superglue_nli(p, "rte"),
}

DATASETS: dict[str, DatasetSpec] = {
    # T0-Eval (validation splits).
    **{f"anli_r{r}": DatasetSpec(local=((f"anli/r{r}_dev.jsonl", local.anli),),
                                 tfds=(f"anli/r{r}", "validation", "anli")) for r in (1, 2, 3)},
    "cb": DatasetSpec(local=(("superglue/cb_val.jsonl", _NLI["cb"]),),
                      tfds=("super_glue/cb", "validation", "nli")),
    "rte": DatasetSpec(local=(("superglue/rte_val.jsonl", _NLI["rte"]),),
                       tfds=("super_glue/rte", "validation", "nli")),
    "wsc": DatasetSpec(local=(("superglue/wsc_val.jsonl", local.superglue_wsc),),
                       tfds=("super_glue/wsc.fixed", "validation", "wsc")),
    "wic": DatasetSpec(local=(("superglue/wic_val.jsonl", local.superglue_wic),),
                       tfds=("super_glue/wic", "validation", "wic")),
    "winogrande": DatasetSpec(local=(("multiple_choice/winogrande.jsonl", local.winogrande),),
                              tfds=("winogrande", "validation", "winogrande")),
    "copa": DatasetSpec(local=(("multiple_choice/copa.jsonl", local.copa_multiple_choice),
                               ("superglue/copa_val.jsonl", local.superglue_copa)),
                        tfds=("super_glue/copa", "validation", "copa")),
    "hellaswag": DatasetSpec(local=(("multiple_choice/hellaswag.jsonl",
                                     local.hellaswag_multiple_choice),),
                             tfds=("hellaswag", "validation", "hellaswag")),
    "story_cloze": DatasetSpec(local=(("multiple_choice/story_cloze.jsonl",
                                       local.story_cloze_multiple_choice),),
                               tfds=("story_cloze/2016", "validation", "story_cloze"),
                               manual_dir=True),
    # EAI-Eval extras (lm-evaluation-harness 0.2.0's splits: test if it has one, else validation).
    "arc_easy": DatasetSpec(local=(_mc("arc_easy"),), tfds=("ai2_arc/ARC-Easy", "test", "arc")),
    "arc_challenge": DatasetSpec(local=(_mc("arc_challenge"),),
                                 tfds=("ai2_arc/ARC-Challenge", "test", "arc")),
    "openbookqa": DatasetSpec(local=(_mc("openbook_qa"),),
                              tfds=("openbookqa", "test", "openbookqa")),
    "boolq": DatasetSpec(local=(("superglue/boolq_val.jsonl", local.superglue_boolq),),
                         tfds=("super_glue/boolq", "validation", "boolq")),
    "piqa": DatasetSpec(local=(_mc("piqa"),), tfds=("piqa", "validation", "piqa")),
    "mrpc": DatasetSpec(tfds=("glue/mrpc", "validation", "mrpc")),
    "qqp": DatasetSpec(tfds=("glue/qqp", "validation", "qqp")),
    "qnli": DatasetSpec(tfds=("glue/qnli", "validation", "qnli")),
    "wnli": DatasetSpec(tfds=("glue/wnli", "validation", "wnli")),
    "sst": DatasetSpec(tfds=("glue/sst2", "validation", "sst")),
    "multirc": DatasetSpec(local=(("superglue/multirc_val.jsonl", local.superglue_multirc),),
                           tfds=("super_glue/multirc", "validation", "multirc")),
    "race": DatasetSpec(local=(_mc("race"),), tfds=("race/high", "test", "race")),
    "mathqa": DatasetSpec(local=(_mc("mathqa"),), tfds=("math_qa", "test", "mathqa")),
    "headqa": DatasetSpec(local=(_mc("headqa"),)),
    "logiqa": DatasetSpec(local=(_mc("logiqa"),)),
    "prost": DatasetSpec(local=(_mc("prost"),)),
    "pubmedqa": DatasetSpec(local=(_mc("pubmedqa"),)),
    "sciq": DatasetSpec(local=(_mc("sciq"),)),
    "lambada": DatasetSpec(local=(("multiple_choice/lambada_openai.jsonl",
                                   local.context_continuation),),
                           tfds=("lambada", "test", "lambada")),
    # lm-eval's TriviaQA is the unfiltered web dev set (no evidence documents).
    "triviaqa": DatasetSpec(tfds=("trivia_qa/unfiltered.nocontext", "validation", "triviaqa")),
    "webqs": DatasetSpec(tfds=("web_questions", "test", "webqs")),
}


def _eai_specs() -> dict[str, DatasetSpec]:
  """EAI-Eval's data sets, 'eai_<task>': lm-evaluation-harness 0.2.0's documents and splits.

  lm-eval reads a task's test documents when it has them (ANLI: test_r1-3; ARC, OpenBookQA, RACE,
  MathQA, HEAD-QA, LogiQA, SciQ, PROST, PubMedQA, WebQuestions: test), else validation.
  """
  d = lm_eval_docs
  derive = {
      **{t: d.continuations for t in ("arc_easy", "arc_challenge", "openbookqa", "piqa", "race",
                                      "mathqa", "headqa", "logiqa", "prost", "pubmedqa", "sciq")},
      "hellaswag": d.hellaswag, "mrpc": d.detokenized("sentence1", "sentence2"),
      "sst": d.detokenized("sentence"), "wsc": d.wsc, "wic": d.wic,
      "triviaqa": d.answer_aliases, "webqs": d.answer_aliases,
  }
  base = {t: DATASETS[t] for t in (
      "arc_easy", "arc_challenge", "openbookqa", "piqa", "race", "mathqa", "headqa", "logiqa",
      "prost", "pubmedqa", "sciq", "hellaswag", "mrpc", "sst", "wic", "webqs", "boolq", "copa",
      "lambada", "multirc", "qnli", "qqp", "rte", "triviaqa", "winogrande", "wnli")}
  base.update({
      **{f"anli_r{r}": DatasetSpec(local=((f"anli/r{r}_test.jsonl", local.anli),),
                                   tfds=(f"anli/r{r}", "test", "anli")) for r in (1, 2, 3)},
      # lm-eval reads super_glue 'wsc', not T0's 'wsc.fixed' (whose pronoun indices differ).
      "wsc": DatasetSpec(local=(("superglue/wsc_val.jsonl", local.superglue_wsc),),
                         tfds=("super_glue/wsc", "validation", "wsc")),
  })
  return {f"eai_{t}": dataclasses.replace(spec, derive=derive.get(t)) for t, spec in base.items()}


DATASETS.update(_eai_specs())


@functools.lru_cache(maxsize=1)
def blimp_paradigms() -> tuple[str, ...]:
  """The 67 BLiMP paradigms (TFDS builder configs; no data needed to list them)."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  return tuple(c.name for c in tfds.builder_cls("blimp").BUILDER_CONFIGS)


def blimp_spec(paradigm: str) -> DatasetSpec:
  return DatasetSpec(local=((f"blimp/{paradigm}.jsonl", local.blimp_paradigm),),
                     tfds=(f"blimp/{paradigm}", "train", "blimp"))


def load_dataset(name: str, local_data_dir: str | pathlib.Path | None = None,
                 tfds_data_dir: str | None = None, download: bool = False,
                 manual_dir: str | None = None) -> list[dict]:
  """Canonical examples of data set `name`, in the source's fixed order."""
  if name.startswith("blimp_"):
    spec = blimp_spec(name[len("blimp_"):])
  elif name in DATASETS:
    spec = DATASETS[name]
  else:
    raise KeyError(f"Unknown data set {name!r}; known: {', '.join(sorted(DATASETS))}, "
                   "blimp_<paradigm>.")
  reasons: list[str] = []
  if local_data_dir is not None:
    root = pathlib.Path(local_data_dir)
    for rel, reader in spec.local:
      if (root / rel).is_file():
        return _derived(spec, reader(root / rel))
      reasons.append(f"no {rel} under LOCAL_DATA_DIR")
  elif spec.local:
    reasons.append("LOCAL_DATA_DIR not set")
  if spec.tfds is not None:
    tfds_name, split, converter = spec.tfds
    try:
      examples = tfds_loaders.load(tfds_name, split, converter, data_dir=tfds_data_dir,
                                   manual_dir=manual_dir, download=download,
                                   needs_manual_dir=spec.manual_dir)
    except DatasetUnavailable as e:
      reasons.append(str(e))
    else:
      return _derived(spec, examples)
  else:
    reasons.append("no TFDS source")
  raise DatasetUnavailable("; ".join(reasons))


def _derived(spec: DatasetSpec, examples: list[dict]) -> list[dict]:
  return [spec.derive(ex) for ex in examples] if spec.derive is not None else examples
