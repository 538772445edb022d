"""The evaluation suites: which data sets, which prompts, which scoring protocol.

- t0_eval: T0's held-out datasets (validation) with T0's 116 promptsource prompts (default; or this
  project's own with prompt_source='builtin'); summed log-prob of each option followed by its EOS,
  no EOS after the prompt (T0's seqio tasks: `inputs` add_eos=False, `targets` add_eos=True), no
  length normalisation; median over prompts per task, mean over tasks.
- eai_eval: the paper's 30 lm-evaluation-harness tasks in lm-eval 0.2.0's own wording and metric
  (acc; MultiRC acc_all; LAMBADA, TriviaQA and WebQuestions by greedy match), continuation scoring
  without EOS on either side, prompts cut to their last 512 tokens (gin:
  eval.suites.eai_eval.max_prompt_length).
- blimp: the 67 BLiMP paradigms, good vs bad sentence with an empty prompt, no EOS (as
  lm-evaluation-harness scores whole sentences).
- embedded: the held-out families generated from the embedded corpus's held-out plays; no EOS, as
  EAI-Eval: the options (a line, a word, a Yes/No) sit in the middle of text, where the pretraining
  stream has no EOS (it marks only the end of a document).

Encoder-decoder models always read an EOS when a prompt is empty (blimp): an encoder row with no
token has nothing to attend to. Every suite's rule is written to results.json's `protocol`.

A suite name may be narrowed to some of its tasks: 'eai_eval:copa,rte', 'embedded:word_order'.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

import gin

from eval import loaders
from experiments.runtime.errors import ConfigError

RANK, GREEDY = "rank", "greedy"


@dataclasses.dataclass(frozen=True)
class TaskSpec:
  """One evaluated task: its data set, its templates and how it is scored."""

  name: str
  dataset: str  # a loaders.DATASETS name, blimp_<paradigm>, or embedded_<family>
  templates: str  # key of the template dictionary
  kind: str = RANK  # RANK (argmax over options) or GREEDY (greedy match of an answer)
  metric: str = "accuracy"  # the task's headline: accuracy, or acc_all (per example group)
  deviations: tuple[str, ...] = ()  # where the task knowingly differs from its reference protocol


@dataclasses.dataclass(frozen=True)
class Suite:
  name: str
  tasks: tuple[TaskSpec, ...]
  prompt_eos: bool  # EOS after the prompt (none of the paper's protocols adds one)
  option_eos: bool  # EOS after each option (T0 scores it, lm-evaluation-harness does not)
  eos_rule: str = ""  # where the rule comes from, for results.json
  max_prompts: int | None = None  # None: every template of the task
  description: str = ""
  max_prompt_length: int | None = None  # prompt tokens kept (the last ones); None: scoring config's
  reference: str = ""  # the protocol reproduced (harness and version)
  deviations: tuple[str, ...] = ()  # suite-wide differences from the reference


def protocol_notes(suite: Suite) -> dict:
  """results.json's protocol fields on what the suite reproduces and where it differs."""
  tasks = {t.name: list(t.deviations) for t in suite.tasks if t.deviations}
  return {"reference": suite.reference or None,
          "metrics": {t.name: t.metric for t in suite.tasks},
          "max_prompt_length": suite.max_prompt_length,
          "deviations": {"suite": list(suite.deviations), "tasks": tasks}}


def _t0_tasks() -> tuple[TaskSpec, ...]:
  tasks = [TaskSpec(f"anli_r{r}", f"anli_r{r}", "anli") for r in (1, 2, 3)]
  tasks += [TaskSpec(n, n, n) for n in ("cb", "rte", "wsc", "wic", "winogrande", "copa",
                                        "hellaswag", "story_cloze")]
  return tuple(tasks)


# Template of each EAI-Eval task (eval/templates/eai_eval.yaml); its data set is 'eai_<task>'.
_EAI_TEMPLATES = {
    "anli_r1": "eai_anli", "anli_r2": "eai_anli", "anli_r3": "eai_anli",
    "arc_challenge": "eai_query_answer", "arc_easy": "eai_query_answer", "boolq": "eai_boolq",
    "copa": "eai_copa", "headqa": "eai_query_answer", "hellaswag": "eai_query",
    "lambada": "eai_lambada", "logiqa": "eai_query_answer", "mathqa": "eai_query_answer",
    "mrpc": "eai_mrpc", "multirc": "eai_multirc", "openbookqa": "eai_query",
    "piqa": "eai_query_answer", "prost": "eai_query_answer", "pubmedqa": "eai_query_answer",
    "qnli": "eai_qnli", "qqp": "eai_qqp", "race": "eai_query", "rte": "eai_rte",
    "sciq": "eai_query_answer", "sst": "eai_sst", "triviaqa": "eai_open_qa",
    "webqs": "eai_open_qa", "wic": "eai_wic", "winogrande": "eai_winogrande",
    "wnli": "eai_wnli", "wsc": "eai_wsc",
}
_GREEDY_TASKS = ("lambada", "triviaqa", "webqs")
_EAI_METRICS = {"multirc": "acc_all"}  # lm-eval: a question counts when all its answers are right
EAI_REFERENCE = "EleutherAI lm-evaluation-harness 0.2.0, zero-shot (Wang et al., 2022)"
# The paper's harness configuration gave the t5x adaptor 512-token inputs.
EAI_MAX_PROMPT_LENGTH = 512
_EAI_DEVIATIONS = (
    "ties share the credit (the expected random tie-break); lm-eval's argmax takes the first "
    "tied option and its two-way tasks a fixed side",
    "tokens are the model's own vocabulary; prompt and continuation are encoded separately, as "
    "lm-eval does",
    "a prompt longer than max_prompt_length tokens keeps its last tokens (lm-eval's own models "
    "cut context and continuation together from the left to their length)",
    "max_examples takes the first examples in file order; lm-eval's limit takes them after a "
    "seed-42 shuffle (without a limit the order does not matter)",
    "acc_norm (length in characters of the choice, without its leading space) is recorded for "
    "every ranked task; lm-eval reports it only for its multiple-choice tasks (arc, headqa, "
    "hellaswag, logiqa, mathqa, openbookqa, piqa, prost, sciq)",
)
_EAI_TASK_DEVIATIONS = {
    "headqa": ("lm-eval 0.2.0's 'headqa' is the Spanish set (headqa_es), test split; read from "
               "multiple_choice/headqa.jsonl only (no TFDS source)",),
    "hellaswag": ("read from TFDS, ctx_b keeps its case: TFDS stores only ctx, so lm-eval's "
                  "ctx_a + ' ' + ctx_b.capitalize() cannot be rebuilt (a local file is used as "
                  "written)",),
    "lambada": ("TFDS 'lambada' is the original tokenised release; lm-eval (and "
                "multiple_choice/lambada_openai.jsonl) use OpenAI's detokenised test set",),
    "race": ("read from TFDS, one document per article file; lm-eval groups Hugging Face rows by "
             "identical article text, merging articles that appear twice",),
    "triviaqa": ("TFDS strips the aliases' surrounding whitespace; lm-eval scores them as "
                 "written",),
}


def _eai_tasks() -> tuple[TaskSpec, ...]:
  return tuple(TaskSpec(n, f"eai_{n}", t, GREEDY if n in _GREEDY_TASKS else RANK,
                        metric=_EAI_METRICS.get(n, "accuracy"),
                        deviations=_EAI_TASK_DEVIATIONS.get(n, ()))
               for n, t in _EAI_TEMPLATES.items())


@gin.configurable(module="eval.suites")
def eai_eval(max_prompt_length: int | None = EAI_MAX_PROMPT_LENGTH) -> Suite:
  """EAI-Eval; gin: eval.suites.eai_eval.max_prompt_length (None: the scoring config's limit)."""
  return Suite("eai_eval", _eai_tasks(), prompt_eos=False, option_eos=False, max_prompts=1,
               eos_rule="lm-evaluation-harness: no EOS on either side",
               description="lm-evaluation-harness tasks, acc (multirc acc_all)",
               max_prompt_length=max_prompt_length, reference=EAI_REFERENCE,
               deviations=_EAI_DEVIATIONS)


def _blimp_tasks() -> tuple[TaskSpec, ...]:
  return tuple(TaskSpec(f"blimp_{p}", f"blimp_{p}", "blimp") for p in loaders.blimp_paradigms())


EMBEDDED_FAMILIES = ("next_line", "cloze", "word_order", "same_speaker")


def _embedded_tasks() -> tuple[TaskSpec, ...]:
  return tuple(TaskSpec(f"embedded_{f}", f"embedded_{f}", f"embedded_{f}")
               for f in EMBEDDED_FAMILIES)


_SUITES = {
    "t0_eval": lambda: Suite(
        "t0_eval", _t0_tasks(), prompt_eos=False, option_eos=True,
        eos_rule="T0's seqio tasks: inputs add_eos=False, targets add_eos=True (each option is "
                 "scored with its EOS; the prompt has none)",
        description="T0 held-out datasets, median over prompts"),
    "eai_eval": eai_eval,
    "blimp": lambda: Suite(
        "blimp", _blimp_tasks(), prompt_eos=False, option_eos=False,
        eos_rule="lm-evaluation-harness: whole sentences, no EOS (encoder-decoder: the empty "
                 "prompt is one EOS)",
        description="BLiMP minimal pairs, per paradigm"),
    "embedded": lambda: Suite(
        "embedded", _embedded_tasks(), prompt_eos=False, option_eos=False,
        eos_rule="no EOS on either side, as eai_eval: options sit mid-text, where pretraining "
                 "text has none",
        description="held-out families of the embedded corpus"),
}
SUITE_NAMES = tuple(_SUITES)


class UnknownSuiteError(ConfigError):
  """EVAL_SUITE names no suite, or no task of its suite: the message lists the valid names."""


def get_suite(spec: str) -> Suite:
  """'suite' or 'suite:task,task'; unknown names raise listing the valid ones."""
  name, colon, only = spec.partition(":")
  if name not in _SUITES:
    raise UnknownSuiteError(f"Unknown EVAL_SUITE {name!r}; valid suites: {', '.join(SUITE_NAMES)} "
                            "(optionally narrowed as 'suite:task1,task2').")
  suite = _SUITES[name]()
  if not colon:
    return suite
  valid = [t.name for t in suite.tasks]
  asked = [t for t in (x.strip() for x in only.split(",")) if t]
  if not asked:  # 'embedded:' is a narrowing that lost its tasks, not the whole suite
    raise UnknownSuiteError(f"EVAL_SUITE {spec!r} names no task after the colon; {name} has: "
                            f"{', '.join(valid)} (or {name!r} alone for all of them).")
  # Short names work too: 'embedded:word_order' is the task embedded_word_order.
  wanted = [t if t in valid or f"{name}_{t}" not in valid else f"{name}_{t}" for t in asked]
  unknown = [t for t in wanted if t not in valid]
  if unknown:
    raise UnknownSuiteError(f"Unknown task(s) {unknown} in EVAL_SUITE {spec!r}; {name} has: "
                            f"{', '.join(valid)}.")
  return dataclasses.replace(suite, tasks=tuple(t for t in suite.tasks if t.name in wanted))


def task_names(suite: str) -> Sequence[str]:
  return [t.name for t in get_suite(suite).tasks]
