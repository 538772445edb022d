"""EVAL_SUITE 'lm_eval:piqa,arc_easy,rte': lm-evaluation-harness's own tasks through HarnessLM.

lm-eval's task definitions are used unchanged (prompts, few-shot formatting, metrics); the model is
eval/lm_eval_adaptor.py's HarnessLM over our scorer. results.json has our suites' schema (each
task's headline metric with n, stderr and a 95% interval; `missing`; `aggregate`) and records the
lm-eval version, the few-shot k and seed and where each task's data came from; lm-eval's own output
(its results and per-sample logs) is written under EVAL_OUTPUT_DIR/lm_eval/.

Data never comes from the network: Hugging Face datasets and the Hub are put offline before lm-eval
is imported. A task whose Hugging Face dataset is not in the local cache is read from the file the
harness knows for it under LOCAL_DATA_DIR (eval/loaders), converted to the fields the lm-eval task
reads and handed to it as a local JSON dataset (`dataset_path: json`, `data_files`) in place of the
split lm-eval evaluates; a task found nowhere is listed under `missing` with the places looked at.

Everything here is checked before the checkpoint is restored: lm-eval installed (else: the extra to
install), task names (close matches listed), output types the adaptor serves, data, and NUM_FEWSHOT
against each task's pool of demonstrations.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import importlib
import importlib.metadata
import json
import logging
import os
import pathlib
import sys
import tempfile
import time
from typing import Any, Callable, Mapping, Sequence

from eval import aggregation
from eval import loaders
from eval import rank_classification as rc
from eval import records as records_lib
from experiments.runtime.errors import ConfigError
from experiments.runtime import storage

PREFIX = "lm_eval:"
PINNED_VERSION = "0.4.13"
INSTALL_HINT = ("pip install -e '.[lm_eval]' (the harness's optional extra [lm_eval], "
                f"lm_eval=={PINNED_VERSION}; `make test` installs it)")
SERVED_OUTPUT_TYPES = ("multiple_choice", "loglikelihood", "loglikelihood_rolling",
                       "generate_until")
OUTPUT_DIR = "lm_eval"  # lm-eval's own output, under EVAL_OUTPUT_DIR
DEFAULT_FEWSHOT_SEED = 1234  # lm-eval's own default fewshot_random_seed
_OFFLINE_ENV = {"HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                "HF_HUB_DISABLE_TELEMETRY": "1"}


class LmEvalConfigError(ConfigError):
  """An lm_eval: suite that cannot run as asked (extra, task names, output types, few-shot)."""


def is_lm_eval_suite(suite: Any) -> bool:
  return isinstance(suite, str) and suite.startswith(PREFIX)


def task_names(suite: str) -> list[str]:
  names = [t.strip() for t in suite[len(PREFIX):].split(",") if t.strip()]
  if not names:
    raise LmEvalConfigError(f"EVAL_SUITE = {suite!r} names no lm-eval task: expected "
                            "'lm_eval:task[,task...]', e.g. 'lm_eval:piqa,arc_easy,rte'.")
  return list(dict.fromkeys(names))


def go_offline() -> None:
  """Hugging Face datasets and Hub read their local caches only (also when already imported)."""
  os.environ.update(_OFFLINE_ENV)
  for module, attrs in (("datasets.config", ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE")),
                        ("huggingface_hub.constants", ("HF_HUB_OFFLINE",))):
    mod = sys.modules.get(module)
    for attr in attrs:
      if mod is not None and hasattr(mod, attr):
        setattr(mod, attr, True)


def require_lm_eval(suite: str = PREFIX) -> str:
  """lm-eval's version; LmEvalConfigError naming the extra when it is not installed."""
  go_offline()
  try:
    importlib.import_module("lm_eval.evaluator")
  except ImportError as e:
    raise LmEvalConfigError(f"EVAL_SUITE = {suite!r} needs lm-evaluation-harness, which is not "
                            f"installed ({e}): {INSTALL_HINT}.") from None
  # Its per-task notes (default aggregations, num_fewshot overrides) and the datasets progress bars
  # would drown our own lines; errors still show.
  logging.getLogger("lm_eval").setLevel(logging.ERROR)
  try:
    importlib.import_module("datasets").disable_progress_bars()
  except (ImportError, AttributeError):
    pass
  return importlib.metadata.version("lm_eval")


# -- local data: the harness's file for a task, in the fields the lm-eval task reads --------------


def _letters(n: int) -> list[str]:
  return [chr(ord("A") + i) for i in range(n)]


def _strip_question(query: str) -> str:
  return query[len("Question: "):] if query.startswith("Question: ") else query


def _arc(ex: dict, i: int) -> dict:
  labels = _letters(len(ex["choices"]))
  return {"id": str(i), "question": _strip_question(ex["query"]),
          "choices": {"text": list(ex["choices"]), "label": labels},
          "answerKey": labels[ex["label"]]}


def _openbookqa(ex: dict, i: int) -> dict:
  labels = _letters(len(ex["choices"]))
  return {"id": str(i), "question_stem": ex["query"],
          "choices": {"text": list(ex["choices"]), "label": labels},
          "answerKey": labels[ex["label"]]}


def _lambada(ex: dict, i: int) -> dict:
  context, word = ex["context"], ex["continuation"].strip()
  return {"text": f"{context.rstrip(' ')} {word}"}


def _fields(*names: str) -> Callable[[dict, int], dict]:
  return lambda ex, i: {k: ex[k] for k in names}


@dataclasses.dataclass(frozen=True)
class LocalSource:
  """The harness data set (eval/loaders) that can stand in for an lm-eval task's split."""

  dataset: str
  convert: Callable[[dict, int], dict]


# lm-eval task -> the harness's data set of the same documents and split (LOCAL_DATA_DIR first,
# then TFDS). The split replaced is the one lm-eval evaluates (its test split if it has one, else
# validation), which is the split of each of these files.
LOCAL_SOURCES: dict[str, LocalSource] = {
    "rte": LocalSource("rte", lambda ex, i: {"sentence1": ex["premise"],
                                             "sentence2": ex["hypothesis"],
                                             "label": ex["label"], "idx": i}),
    "cb": LocalSource("cb", lambda ex, i: {"premise": ex["premise"],
                                           "hypothesis": ex["hypothesis"], "label": ex["label"],
                                           "idx": i}),
    "copa": LocalSource("copa", _fields("premise", "question", "choice1", "choice2", "label")),
    "winogrande": LocalSource("winogrande", _fields("sentence", "option1", "option2", "answer")),
    "boolq": LocalSource("boolq", _fields("question", "passage", "label")),
    "arc_easy": LocalSource("arc_easy", _arc),
    "arc_challenge": LocalSource("arc_challenge", _arc),
    "openbookqa": LocalSource("openbookqa", _openbookqa),
    "piqa": LocalSource("piqa", lambda ex, i: {"goal": _strip_question(ex["query"]),
                                               "sol1": ex["choices"][0], "sol2": ex["choices"][1],
                                               "label": ex["label"]}),
    "lambada_openai": LocalSource("lambada", _lambada),
}


@dataclasses.dataclass
class Plan:
  """The lm-eval tasks built for a suite (data loaded), where their data came from, and the rest."""

  suite: str
  version: str
  tasks: dict[str, Any]  # name -> lm_eval Task
  output_types: dict[str, str]
  sources: dict[str, dict]
  missing: dict[str, str]
  num_fewshot: int
  fewshot_seed: int
  local_data_dir: str | None = None
  tfds_data_dir: str | None = None


@functools.lru_cache(maxsize=1)
def _task_manager():
  """lm-eval's index of its tasks (building it reads every task YAML: seconds)."""
  from lm_eval.tasks import TaskManager  # pylint: disable=g-import-not-at-top
  return TaskManager()


def task_configs(names: Sequence[str], suite: str) -> dict[str, dict]:
  """Each task's YAML config (functions resolved); unknown names and unserved types are errors."""
  from lm_eval.tasks import _yaml_loader  # pylint: disable=g-import-not-at-top
  tm = _task_manager()
  problems, configs = [], {}
  for name in names:
    entry = tm.task_index.get(name)
    if entry is None:
      close = difflib.get_close_matches(name, tm.all_tasks, n=6, cutoff=0.6)
      problems.append(f"{name!r} is not an lm-eval {version_or_pin()} task" +
                      (f" (close: {', '.join(close)})" if close else ""))
      continue
    if name not in tm.all_subtasks or entry.yaml_path is None:
      problems.append(f"{name!r} is an lm-eval group or tag, not one task: name its tasks")
      continue
    cfg = _yaml_loader.load_yaml(entry.yaml_path, resolve_func=True)
    kind = cfg.get("output_type", "generate_until")
    if kind not in SERVED_OUTPUT_TYPES:
      problems.append(f"{name!r} has output_type {kind!r}, which the adaptor cannot serve "
                      f"(it serves {', '.join(SERVED_OUTPUT_TYPES)})")
      continue
    if kind == "generate_until":
      from eval import lm_eval_adaptor  # pylint: disable=g-import-not-at-top
      try:
        lm_eval_adaptor.generation_function()
      except lm_eval_adaptor.GenerationUnavailable as e:
        problems.append(f"{name!r} is a generate_until task: {e}")
        continue
    configs[name] = cfg
  if problems:
    raise LmEvalConfigError(f"EVAL_SUITE = {suite!r}: " + "; ".join(problems) + ".")
  return configs


def version_or_pin() -> str:
  try:
    return importlib.metadata.version("lm_eval")
  except importlib.metadata.PackageNotFoundError:
    return PINNED_VERSION


def _eval_split(cfg: Mapping[str, Any]) -> str | None:
  return cfg.get("test_split") or cfg.get("validation_split")


def _local_config(name: str, cfg: dict, local_data_dir, tfds_data_dir, data_dir: pathlib.Path
                  ) -> tuple[dict, dict]:
  """(config reading the converted local file, source record); DatasetUnavailable if none."""
  source = LOCAL_SOURCES.get(name)
  if source is None:
    raise loaders.DatasetUnavailable("the harness knows no local file for this task")
  examples = loaders.load_dataset(source.dataset, local_data_dir=local_data_dir,
                                  tfds_data_dir=tfds_data_dir, download=False)
  split = _eval_split(cfg)
  data_dir.mkdir(parents=True, exist_ok=True)
  path = data_dir / f"{name}.{split}.jsonl"
  with path.open("w", encoding="utf-8") as f:
    for i, ex in enumerate(examples):
      f.write(json.dumps(source.convert(ex, i), ensure_ascii=False) + "\n")
  local = {**cfg, "dataset_path": "json", "dataset_name": None,
           "dataset_kwargs": {"data_files": {split: str(path)},
                              "cache_dir": str(data_dir / "hf_cache")},
           "training_split": None, "validation_split": None, "test_split": None,
           "fewshot_split": None, split_key(cfg): split}
  return local, {"source": "local", "dataset": source.dataset, "split": split,
                 "file": path.name, "n": len(examples)}


def split_key(cfg: Mapping[str, Any]) -> str:
  return "test_split" if cfg.get("test_split") else "validation_split"


def _short(e: BaseException) -> str:
  text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
  return f"{type(e).__name__}: {text[:200]}"


def prepare(suite: str, local_data_dir=None, *, tfds_data_dir: str | None = None,
            num_fewshot: int = 0, fewshot_seed: int = DEFAULT_FEWSHOT_SEED,
            data_dir: str | pathlib.Path | None = None) -> Plan:
  """Checks and builds the suite's lm-eval tasks with their data; nothing is scored."""
  version = require_lm_eval(suite)
  if num_fewshot < 0:
    raise LmEvalConfigError(f"NUM_FEWSHOT = {num_fewshot}: expected 0 or more.")
  configs = task_configs(task_names(suite), suite)
  tm = _task_manager()
  data_dir = pathlib.Path(data_dir) if data_dir is not None else pathlib.Path(
      tempfile.mkdtemp(prefix="lm_eval_data_"))
  tasks, sources, missing = {}, {}, {}
  for name, cfg in configs.items():
    hf = f"{cfg.get('dataset_path')}/{cfg.get('dataset_name')}"
    try:
      tasks[name] = tm.load([name])["tasks"][name]
      sources[name] = {"source": "huggingface", "dataset": hf, "split": _eval_split(cfg)}
      continue
    except ConfigError:
      raise
    except Exception as e:  # pylint: disable=broad-except  # datasets' offline errors vary
      hf_reason = f"Hugging Face dataset {hf} not in the local cache (offline; {_short(e)})"
    try:
      local, record = _local_config(name, cfg, local_data_dir, tfds_data_dir, data_dir)
    except loaders.DatasetUnavailable as e:
      missing[name] = f"{hf_reason}; {e}"
      logging.warning("lm_eval: %s is missing: %s", name, missing[name])
      continue
    tasks[name] = tm.load([local])["tasks"][name]
    sources[name] = record
  for name, task in tasks.items():
    _check_fewshot(name, task, num_fewshot)
  return Plan(suite=suite, version=version, tasks=tasks,
              output_types={n: configs[n].get("output_type", "generate_until") for n in configs},
              sources=sources, missing=missing, num_fewshot=num_fewshot,
              fewshot_seed=fewshot_seed,
              local_data_dir=None if local_data_dir is None else str(local_data_dir),
              tfds_data_dir=tfds_data_dir)


def _check_fewshot(name: str, task: Any, k: int) -> None:
  """NUM_FEWSHOT within the task's pool of demonstrations (lm-eval's fewshot_docs)."""
  if k == 0 or task.get_config("num_fewshot") == 0:  # pinned to 0 by the task: lm-eval keeps it
    return
  pool = task.fewshot_docs()
  n = len(pool) if pool is not None else 0
  # Without a training or few-shot split lm-eval draws from the evaluated split, never the document
  # itself: one fewer to choose from.
  eval_docs = task.test_docs() if task.has_test_docs() else task.validation_docs()
  same = (task.config.fewshot_split is None and not task.has_training_docs()
          and pool is not None and eval_docs is not None and len(pool) == len(eval_docs))
  usable = n - 1 if same else n
  if k > usable:
    raise LmEvalConfigError(f"NUM_FEWSHOT = {k} but lm-eval task {name!r} has {usable} "
                            "demonstrations to draw from" + (" (its evaluated split minus the "
                                                             "example itself)" if same else "") +
                            "; lower NUM_FEWSHOT.")


# -- scoring and results -----------------------------------------------------------------------


def _headline(task: Any, metrics: Mapping[str, Any]) -> str:
  names = [m["metric"] for m in (task.config.metric_list or []) if isinstance(m.get("metric"), str)]
  for candidate in ("acc", *names):
    if f"{candidate},none" in metrics:
      return candidate
  keys = [k.split(",")[0] for k in metrics if "," in k and "_stderr" not in k]
  return keys[0] if keys else "acc"


def _interval(metric: str, value: float | None, stderr: float | None) -> list | None:
  """value +- 1.96 stderr; a proportion (acc, acc_norm, ...) is kept within [0, 1]."""
  if value is None or stderr is None:
    return None
  lo, hi = value - 1.96 * stderr, value + 1.96 * stderr
  return [max(0.0, lo), min(1.0, hi)] if metric.startswith("acc") else [lo, hi]


def _as_number(x: Any) -> float | None:
  try:
    return float(x)
  except (TypeError, ValueError):
    return None


def _gold_index(target: Any, choices: Sequence[str]) -> int:
  """lm-eval's target: an index, or the gold choice's text (COPA) without its delimiter."""
  if isinstance(target, (int, float)) or str(target).strip().isdigit():
    return int(target)
  stripped = [c.strip() for c in choices]
  return stripped.index(str(target).strip())


def _records(book: records_lib.Recorder, name: str, kind: str, samples: Sequence[dict]) -> float:
  """Adds each sample's outcome to `book`; returns the random baseline (None: none applies)."""
  exs, got = [], []
  for s in samples:
    args = [a if isinstance(a, (list, tuple)) else (a,) for a in s.get("arguments", [])]
    lls = [float(r[0][0]) if isinstance(r[0], (list, tuple)) else float(r[0])
           for r in s.get("resps", [])]
    if kind == "multiple_choice":
      choices = tuple(str(a[1]) for a in args)
      exs.append(aggregation.RankedExample(tuple(str(a[0]) for a in args), choices,
                                           _gold_index(s["target"], choices),
                                           example_id=int(s["doc_id"])))
      got.append(lls)
    elif kind == "loglikelihood":
      greedy = [bool(r[0][1]) for r in s.get("resps", []) if isinstance(r[0], (list, tuple))]
      exs.append(aggregation.RankedExample((str(args[0][0]),), (str(args[0][1]),), 0,
                                           example_id=int(s["doc_id"])))
      got.append([1.0 if greedy and greedy[0] else 0.0])
  if exs:
    book.add(name, "lm_eval", exs, got, greedy=kind == "loglikelihood")
  if kind == "multiple_choice" and exs:
    return sum(1.0 / len(ex.choices) for ex in exs) / len(exs)
  return 0.0 if kind == "loglikelihood" else None


def evaluate(model: Any, params: Any, vocabulary: Any, plan: Plan,
             output_dir: str | pathlib.Path | None = None, *,
             scorer: rc.ModelScorer | None = None,
             scoring_config: rc.ScoringConfig | None = None, max_examples: int | None = None,
             bootstrap_iters: int = 100_000, checkpoint: Mapping[str, Any] | None = None,
             harness: Mapping[str, Any] | None = None) -> dict:
  """Runs lm-eval on `plan`'s tasks through HarnessLM; returns (and writes) results.json's dict."""
  from lm_eval import evaluator  # pylint: disable=g-import-not-at-top
  from lm_eval import utils as lm_utils  # pylint: disable=g-import-not-at-top
  from eval import lm_eval_adaptor  # pylint: disable=g-import-not-at-top
  scorer = scorer or rc.ModelScorer(model, params, vocabulary, scoring_config or rc.ScoringConfig())
  greedy_tasks = [n for n, k in plan.output_types.items() if k == "loglikelihood"]
  lm = lm_eval_adaptor.HarnessLM(scorer, greedy_tasks=greedy_tasks)
  start = time.time()
  out = None
  if plan.tasks:
    out = evaluator.simple_evaluate(
        model=lm, tasks=list(plan.tasks.values()), num_fewshot=plan.num_fewshot,
        limit=max_examples, log_samples=True, bootstrap_iters=bootstrap_iters,
        fewshot_random_seed=plan.fewshot_seed)
  tasks, book = {}, records_lib.Recorder()
  for name, task in plan.tasks.items():
    metrics = out["results"][name]
    head = _headline(task, metrics)
    value = _as_number(metrics.get(f"{head},none"))
    stderr = _as_number(metrics.get(f"{head}_stderr,none"))
    n = int(out["n-samples"][name]["effective"])
    rb = _records(book, name, plan.output_types[name], out["samples"].get(name, []))
    lm_metrics = {k.split(",")[0]: _as_number(v) for k, v in metrics.items()
                  if "," in k and _as_number(v) is not None}
    prompt = {"accuracy": value if head in ("acc", "acc_all") else lm_metrics.get("acc"),
              "acc_norm": lm_metrics.get("acc_norm"), "n": n, "random_baseline": rb,
              head: value, "stderr": stderr, "lm_eval_metrics": lm_metrics}
    tasks[name] = {
        "prompts": {"lm_eval": prompt}, "metric": head, "median": value,
        "spread": {"min": value, "max": value}, "n": n, "random_baseline": rb,
        "stderr": stderr,
        "interval": _interval(head, value, stderr),
    }
  ranked = {k: v for k, v in tasks.items() if v["random_baseline"] is not None
            and v["median"] is not None}
  scoring = getattr(scorer, "config", None)
  results = {
      "suite": plan.suite,
      "tasks": tasks,
      "missing": dict(plan.missing),
      "aggregate": aggregation.suite_aggregate(ranked),
      "protocol": {
          "description": "lm-evaluation-harness's own task definitions (prompts, few-shot "
                         "formatting, metrics), scored through eval/lm_eval_adaptor.py",
          "reference": f"EleutherAI lm-evaluation-harness {plan.version}",
          "lm_eval_version": plan.version,
          "num_fewshot": plan.num_fewshot, "fewshot_seed": plan.fewshot_seed,
          "prompt_eos": False, "option_eos": False,
          "eos_rule": "lm-evaluation-harness: no EOS after the context or the continuation",
          "output_types": dict(plan.output_types), "data": dict(plan.sources),
          "metrics": {n: t["metric"] for n, t in tasks.items()},
          "interval": "headline +- 1.96 x lm-eval's stderr",
          "max_examples": max_examples, "bootstrap_iters": bootstrap_iters,
          "requests": dict(lm.requests_seen),
          "scoring": dataclasses.asdict(scoring) if dataclasses.is_dataclass(scoring) else None,
          "lm_eval_output": f"{OUTPUT_DIR}/results.json" if output_dir is not None else None,
          "seconds": round(time.time() - start, 3)},
      "checkpoint": dict(checkpoint) if checkpoint is not None else None,
      "harness": dict(harness) if harness is not None else None,
  }
  if output_dir is not None and out is not None:
    _write_lm_eval_output(out, storage.as_path(output_dir) / OUTPUT_DIR, lm_utils)
  results["_records"] = book
  return results


def _write_lm_eval_output(out: Mapping[str, Any], folder: storage.Path, lm_utils: Any) -> None:
  """lm-eval's own results (as its CLI writes them) and one samples file per task.

  Each file is written whole (storage.write_text), so EVAL_OUTPUT_DIR may be a URI.
  """
  storage.makedirs(folder)
  summary = {k: v for k, v in out.items() if k != "samples"}
  storage.write_text(folder / "results.json", json.dumps(
      summary, indent=2, default=lm_utils.handle_non_serializable, ensure_ascii=False) + "\n")
  for name, samples in out.get("samples", {}).items():
    storage.write_text(folder / f"samples_{name}.jsonl", "".join(
        json.dumps(s, default=lm_utils.handle_non_serializable, ensure_ascii=False) + "\n"
        for s in samples))
