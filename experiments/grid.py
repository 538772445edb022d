r"""Runs an ablation grid: every cell's stages, then results.csv, continuation.csv, the summary
table and a figure.

  python -m experiments.grid --gin_file=gin_configs/grids/embedded_smoke.gin \
      --gin.GRID_DIR="'runs/embedded_smoke'" [--dry_run] [--print_commands]

Stages run in this process (gin cleared between them: one import of JAX/TF/seqio for the whole
grid). A stage is finished when its DONE file exists and is skipped on the next run; an interrupted
training stage resumes from its MODEL_DIR; a failing stage records ERROR, blocks the stages that
need it and the grid goes on with the other cells. Ctrl-C or SIGTERM stops the grid: a training
stage first saves its current step; the exit status is 130 or 143 and a rerun resumes.
GRID_DIR/grid.json holds the fingerprint of the grid definition; a GRID_DIR holding another
definition is refused. --dry_run checks every stage's gin and each pretraining task as the trainer
would (objectives.validate against the vocabulary) and prints params, activation dtype (on GPU/TPU), tokens and
FLOPs per stage, without building parameters or reading a corpus. With `seeds`, every cell runs
once per seed (experiments/grid_plan.py); --dry_run and --print_commands name the seeds.
--shard=K/N runs every N-th cell from the K-th, so N processes share one GRID_DIR (status in
status.shardKofN.json). A grid with `sizes` expands each cell over model sizes and token budgets
and writes scale_points.csv (experiments/grid_scale.py) for `python -m experiments.scaling`.
"""

from __future__ import annotations

if __name__ == "__main__":
  from experiments.runtime import cli
  cli.start()  # before JAX and TensorFlow load: see experiments/runtime/cli.py

import argparse
import datetime
import json
import os
import sys
import time
import traceback
from typing import Any, Callable, Sequence

import gin
import seqio

from experiments.runtime import gin_utils
from experiments.runtime import storage
from experiments import grid_plan
from experiments import grid_scale
from experiments import grid_spec
from experiments import results as results_lib
from experiments.grid_plan import DONE, ERROR, Stage
from experiments.grid_spec import Grid, GridError

GRID_JSON = "grid.json"
STATUS_JSON = "status.json"


# ---------------------------------------------------------------------------------------------
# GRID_DIR bookkeeping.


def check_grid_dir(grid: Grid, grid_dir: str) -> None:
  """Writes GRID_DIR/grid.json, or refuses a GRID_DIR made by another grid definition."""
  path = os.path.join(grid_dir, GRID_JSON)
  definition, fp = grid.definition(), grid.fingerprint()
  if storage.is_file(path):
    old = json.loads(storage.read_text(path))
    if old.get("fingerprint") != fp:
      old_def = old.get("definition", {})
      diff = sorted(k for k in set(definition) | set(old_def)
                    if definition.get(k) != old_def.get(k))
      raise GridError(
          f"GRID_DIR {grid_dir} holds results of a different grid definition (grid "
          f"{old.get('name')!r}, fingerprint {old.get('fingerprint')}; this one: {grid.name!r}, "
          f"{fp}; differing fields: {', '.join(diff) or 'unknown'}). Results are never mixed: "
          f"choose another --gin.GRID_DIR or remove that folder.")
    if old.get("definition") == definition:
      return
    # Only the seeds differ (not in the fingerprint): record the seeds of this run.
  storage.makedirs(grid_dir)
  storage.write_text(path, json.dumps({"name": grid.name, "fingerprint": fp,
                                       "definition": definition}, indent=2))


def is_done(stage: Stage) -> bool:
  return storage.is_file(os.path.join(stage.dir, DONE))


def _write_json(path: str, obj: Any) -> None:
  storage.makedirs(os.path.dirname(path))
  storage.write_text(path, json.dumps(obj, indent=2, default=str))


# ---------------------------------------------------------------------------------------------
# Running stages.


def _train(gin_files: Sequence[str], bindings: Sequence[str]) -> dict:
  from experiments import train  # pylint: disable=g-import-not-at-top
  return train.run(list(gin_files), list(bindings), log_config=False)


def _evaluate(gin_files: Sequence[str], bindings: Sequence[str]) -> dict:
  from eval import zero_shot  # pylint: disable=g-import-not-at-top
  return zero_shot.run(list(gin_files), list(bindings))


RUNNERS: dict[str, Callable[[Sequence[str], Sequence[str]], dict]] = {
    "train": _train, "eval": _evaluate}


def import_entry_modules() -> None:
  """Registers the configurables that stage gin bindings may name (trainer, eval, tasks)."""
  # pylint: disable=g-import-not-at-top,unused-import
  from experiments import train
  from eval import zero_shot  # noqa: F401
  train.import_configurables()


def _parse_stage(stage: Stage) -> None:
  """Parses and checks a stage's gin as its runner will (finalized: %gin.REQUIRED checked)."""
  # pylint: disable=g-import-not-at-top
  if stage.kind == "eval":
    from eval import zero_shot
    zero_shot.parse(stage.gin_files, stage.bindings)
    zero_shot.check_prompts(stage.suite)  # e.g. T0's promptsource templates installed
  else:
    from experiments import loop
    loop.parse_and_check(stage.gin_files, stage.bindings)


def preflight(stages: Sequence[Stage]) -> dict[str, str]:
  """Parses every stage's gin before anything trains: {cell name: error} for broken cells.

  When every cell fails, the grid itself is wrong (a shared file or binding): GridError.
  """
  import_entry_modules()
  errors: dict[str, str] = {}
  for s in stages:
    if s.cell.name in errors:
      continue
    try:
      _parse_stage(s)
      if s.task is not None:
        seqio.get_mixture_or_task(s.task)
    except Exception as e:  # pylint: disable=broad-except
      errors[s.cell.name] = _relative(f"{s.id}: {e}")
  gin.clear_config()
  cells = {s.cell.name for s in stages}
  if errors and set(errors) == cells and len(set(errors.values())) == 1:
    raise GridError(f"Every cell's gin fails the same way, so the grid definition is wrong: "
                    f"{next(iter(errors.values()))}")
  return errors


_PATH_MACROS = ("MODEL_DIR", "INITIAL_CHECKPOINT_PATH", "CHECKPOINT_PATH", "EVAL_OUTPUT_DIR")


def absolute_paths(bindings: Sequence[str]) -> list[str]:
  """Run-folder macros made absolute (orbax needs absolute paths); URLs like gs:// are kept."""
  out = []
  for b in bindings:
    key, sep, value = b.partition(" = ")
    if sep and key in _PATH_MACROS and value[:1] in "'\"" and "://" not in value:
      path = value[1:-1]
      if not os.path.isabs(path):
        b = f"{key} = {os.path.abspath(path)!r}"
    out.append(b)
  return out


def _interruptions() -> tuple[type[BaseException], ...]:
  """Ctrl-C in any stage, and the trainer's Preempted (SIGTERM or Ctrl-C, its step saved)."""
  from experiments import loop  # pylint: disable=g-import-not-at-top
  return (KeyboardInterrupt, loop.Preempted)


def run_stage(stage: Stage) -> dict:
  """Runs one stage and writes its DONE file last; on failure writes ERROR and re-raises."""
  storage.makedirs(stage.dir)
  err_path = os.path.join(stage.dir, ERROR)
  start = time.time()
  try:
    out = RUNNERS[stage.kind](stage.gin_files, absolute_paths(stage.bindings)) or {}
  except _interruptions():
    raise  # not a failure: the stage is unfinished and resumes on the next run
  except BaseException:
    storage.write_text(err_path, traceback.format_exc())
    raise
  if stage.kind == "eval" and not storage.is_file(os.path.join(stage.dir, "results.json")):
    _write_json(os.path.join(stage.dir, "results.json"), out)
  if storage.exists(err_path):
    storage.as_path(err_path).unlink()
  summary = {"stage": stage.id, "cell": stage.cell.name, "seconds": round(time.time() - start, 1),
             "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(),
             "end_step": stage.end_step, **({"seed": stage.seed} if stage.seed is not None else {})}
  if stage.kind == "train":
    summary["metrics"] = out.get("metrics")
  else:
    summary["aggregate"] = out.get("aggregate")
  _write_json(os.path.join(stage.dir, DONE), summary)
  return summary


def _progress(total: int):
  try:
    from tqdm import tqdm  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None
  return tqdm(total=total, desc="grid", unit="stage", disable=not sys.stderr.isatty(),
              file=sys.stderr)


def parse_shard(text: str | None) -> tuple[int, int] | None:
  """'K/N' (0 <= K < N) -> (K, N); None -> None."""
  if text is None:
    return None
  k, sep, n = text.partition("/")
  if not (sep and k.isdigit() and n.isdigit() and 0 <= int(k) < int(n)):
    raise GridError(f"--shard must be K/N with 0 <= K < N (e.g. 0/2 and 1/2 for two processes), "
                    f"got {text!r}.")
  return int(k), int(n)


def shard_stages(grid: Grid, stages: Sequence[Stage], shard: tuple[int, int] | None) -> list[Stage]:
  """The stages of every N-th cell from the K-th (grid order); an adaptation goes with the shard
  of its source, so no shard waits on another."""
  if shard is None:
    return list(stages)
  k, n = shard
  roots = [c for c in grid.cells if c.source is None]
  index = {c.name: i for i, c in enumerate(roots)}
  for c in grid.cells:
    if c.source is not None:
      index[c.name] = index[c.source]
  return [s for s in stages if index[s.cell.name] % n == k]


def run_grid(grid: Grid, grid_dir: str, log: Callable[[str], None] = print,
             shard: tuple[int, int] | None = None) -> dict[str, Any]:
  """Runs every unfinished stage (of one shard: shard_stages); returns {'status': {stage key:
  ...}, 'failed': [...], 'stages': [...]}."""
  check_grid_dir(grid, grid_dir)
  stages = shard_stages(grid, grid_plan.plan(grid, grid_dir), shard)
  broken = preflight(stages)
  if grid.sizes:
    # A scaling grid: each run's parameters and FLOPs, for experiments.scaling (of every cell,
    # whichever shard runs: shards write the same file).
    grid_scale.write_points(grid, grid_dir, grid_plan.plan(grid, grid_dir), skip=list(broken))
  status_json = STATUS_JSON if shard is None else f"status.shard{shard[0]}of{shard[1]}.json"
  status: dict[str, dict[str, Any]] = {}
  bar = _progress(len(stages))
  if bar is not None and not bar.disable and log is print:
    log = bar.write  # keeps the bar on its own line
  for s in stages:
    entry: dict[str, Any]
    blocked = [d for d in s.depends_on if status.get(d, {}).get("status") != "done"]
    if is_done(s):
      entry = {"status": "done", "skipped": True}
    elif s.cell.name in broken:
      entry = {"status": "failed", "error": broken[s.cell.name]}
      _write_error(s, broken[s.cell.name])
    elif blocked:
      entry = {"status": "blocked", "error": f"needs {', '.join(blocked)}"}
    else:
      if bar is not None:
        bar.set_postfix_str(s.key)
      log(f"[grid] {s.key}: running ({s.kind})")
      try:
        summary = run_stage(s)
        entry = {"status": "done", "seconds": summary["seconds"]}
      except _interruptions():
        status[s.key] = {"status": "interrupted"}
        _write_json(os.path.join(grid_dir, status_json), status)
        log(f"[grid] {s.key}: interrupted; the same command resumes the grid")
        raise
      except Exception as e:  # pylint: disable=broad-except
        entry = {"status": "failed", "error": _relative(f"{type(e).__name__}: {e}")}
        log(f"[grid] {s.key}: FAILED: {entry['error']} (traceback in {s.dir}/{ERROR})")
    status[s.key] = entry
    _write_json(os.path.join(grid_dir, status_json), status)
    if bar is not None:
      bar.update(1)
  if bar is not None:
    bar.close()
  failed = [k for k, v in status.items() if v["status"] != "done"]
  return {"status": status, "failed": failed, "stages": stages}


def _relative(text: str) -> str:
  """Messages name run folders as the user gave them (relative), not this machine's paths."""
  return text.replace(os.getcwd() + os.sep, "")


def _write_error(stage: Stage, message: str) -> None:
  storage.makedirs(stage.dir)
  storage.write_text(os.path.join(stage.dir, ERROR), message + "\n")


# ---------------------------------------------------------------------------------------------
# Results.


def collect(grid: Grid, grid_dir: str, stages: Sequence[Stage] | None = None) -> Any:
  """results.csv from every finished evaluation stage, and continuation.csv: per cell, seed and
  trained stage, the held-out continuation loss of its first suite's results.json that has one
  (every suite of a stage scores the same windows of the same checkpoint). Returns results.csv's
  DataFrame."""
  stages = stages or grid_plan.plan(grid, grid_dir)
  rows, continuation = [], {}
  for s in stages:
    path = os.path.join(s.dir, "results.json")
    if s.kind != "eval" or not is_done(s) or not storage.is_file(path):
      continue
    labels = dict(grid=grid.name, cell=s.cell.name, arch=s.cell.arch,
                  objective=s.cell.objective, stage=s.trained, phase=s.phase, step=s.end_step,
                  **({"seed": s.seed} if s.seed is not None else {}))
    results = results_lib.load_results_json(path)
    # eval_dir: where the records are; with seed folders the layout alone cannot say.
    rows += results_lib.rows_from_results(results, suite=s.suite,
                                          eval_dir=storage.relative(s.dir, grid_dir), **labels)
    unit = (s.cell.name, s.seed, s.trained)
    if unit not in continuation:
      row = results_lib.continuation_row(results, suite=s.suite,
                                         eval_dir=storage.relative(s.dir, grid_dir), **labels)
      if row is not None:
        continuation[unit] = row
  results_lib.write_continuation_csv(
      list(continuation.values()), os.path.join(grid_dir, results_lib.CONTINUATION_CSV))
  return results_lib.write_csv(rows, os.path.join(grid_dir, results_lib.RESULTS_CSV))


def report(grid: Grid, grid_dir: str, outcome: dict[str, Any] | None = None,
           every_stage: bool = False) -> str:
  """Writes results.csv, continuation.csv, summary.{csv,md,png}; returns the printable summary.
  every_stage: collect every finished stage of the grid, not only the outcome's (a shard)."""
  df = collect(grid, grid_dir, outcome["stages"] if outcome and not every_stage else None)
  lines = [f"Grid {grid.name} ({grid_dir}): {len(df)} result rows in "
           f"{os.path.join(grid_dir, results_lib.RESULTS_CSV)}"]
  notes = ""
  if outcome and outcome["failed"]:
    bad = [f"- {k}: {outcome['status'][k]['status']}: {outcome['status'][k].get('error', '')}"
           for k in outcome["failed"]]
    notes = "Stages not finished:\n" + "\n".join(bad)
  if len(df):
    md = results_lib.write_summary(df, grid_dir, [c.name for c in grid.cells], notes,
                                   results_lib.read_continuation_csv(grid_dir))
    over_seeds = (f"; mean over seeds {', '.join(map(str, sorted(df['seed'].unique())))}"
                  if "seed" in df.columns else "")
    lines += ["", f"Mean over tasks of the median accuracy over prompts (%){over_seeds}; n per "
              "prompt in results.csv:", md, "",
              f"Saved {results_lib.SUMMARY_CSV}, {results_lib.SUMMARY_MD}, "
              f"{results_lib.SUMMARY_PNG} in {grid_dir}."]
  if notes:
    lines += ["", notes]
  return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Dry run: validation and accounting without training.


def account(stage: Stage, with_task_check: bool = True) -> dict[str, Any]:
  """A training stage's model and task, checked without building parameters or reading data.

  Returns arch.accounting's params and training FLOPs per example, the activation dtype, and the
  check of the stage's task (check_task). The model is built without its vocabulary check
  (VOCAB_SIZE gives the embedding rows), so the accounting works where the vocabulary file is not
  reachable (a laptop planning a pod run); the task check then says it could not run.
  """
  return grid_scale.account(stage, check_task if with_task_check else None)


TASK_OK, TASK_MIXTURE, TASK_UNCHECKED = "ok", "registered", "unchecked"


def check_task(model, task_name: str, lengths: dict[str, int]) -> tuple[str, str]:
  """(status, note): a '{corpus}_{objective}' task validated as the trainer does at start-up.

  objectives.validate on the stage's gin: the objective is defined on the architecture, the
  feature lengths fit the objective, the run's vocabulary (VOCABULARY of the data file) holds what
  the objective needs (sentinels, UL2's paradigm tokens) and VOCAB_SIZE fits it. The corpus is
  not opened (no TFDS access). A mixture (MTF) is only looked up (preflight). When the vocabulary
  file cannot be read the check cannot run: status 'unchecked' and the reason; a failed check
  raises (objectives.ConfigError), which makes the cell invalid.
  """
  import objectives  # pylint: disable=g-import-not-at-top
  from experiments import run_config  # pylint: disable=g-import-not-at-top
  from experiments.runtime import errors  # pylint: disable=g-import-not-at-top
  try:
    corpus, _ = objectives.parse_task_name(task_name)
  except ValueError:
    return TASK_MIXTURE, ""
  from experiments import data as data_lib  # pylint: disable=g-import-not-at-top
  run_config.check_converter_lengths(model, data_lib.get_task(task_name), lengths)
  try:
    objectives.corpus_vocabulary(corpus)
  except (ValueError, OSError) as e:
    first = str(errors.as_raised(e)).strip().splitlines()[0]
    return TASK_UNCHECKED, f"the vocabulary of corpus {corpus!r} cannot be read: {first}"
  raw = run_config.objectives_validation(model, task_name, lengths, check_corpus=False)
  return TASK_OK, f"{raw} raw tokens per example"


def dry_run(grid: Grid, grid_dir: str, log: Callable[[str], None] = print) -> list[dict]:
  """Validates every stage's gin and task; per cell: params, dtype, tokens, FLOPs and the
  per-device memory estimate (arch/memory.py, on this machine's device count) per stage."""
  stages = grid_plan.plan(grid, grid_dir)
  broken = preflight(stages)
  first_seed = grid.seeds[0] if grid.seeds else None  # the seeds of a cell cost the same
  rows = []
  for cell in grid.cells:
    row: dict[str, Any] = {"cell": cell.name, "arch": cell.arch, "objective": cell.objective}
    if cell.name in broken:
      row["error"] = broken[cell.name]
      rows.append(row)
      continue
    total_flops = 0.0
    for s in (s for s in stages if s.cell.name == cell.name and s.kind == "train"
              and s.seed == first_seed):
      try:
        acc = account(s)
      except Exception as e:  # pylint: disable=broad-except
        row["error"] = _relative(f"{s.id}: {type(e).__name__}: {e}")
        break
      row["params"] = int(acc["params"])
      flops = float(acc["train_flops_per_example"]) * s.examples
      row[f"{s.id}_steps"] = s.steps
      row[f"{s.id}_end_step"] = s.end_step
      row[f"{s.id}_tokens"] = s.tokens
      row[f"{s.id}_step_shape"] = f"{s.batch_size} x {s.row}"  # rows x token positions per row
      row[f"{s.id}_flops"] = flops
      row[f"{s.id}_dtype"] = acc["dtype"]
      row[f"{s.id}_memory_gib"] = acc["memory_gib"]
      row[f"{s.id}_task"], row[f"{s.id}_task_note"] = acc["task_check"]
      total_flops += flops
    row["train_flops"] = total_flops
    rows.append(row)
  if grid.sizes:
    ok = [s for s in stages if s.cell.name not in broken]
    log(grid_scale.compute_note(grid_scale.points(grid, ok)))
  log(format_dry_run(rows) + (f"\n{seeds_note(grid.seeds)}; the steps, tokens and FLOPs above "
                              f"are per seed, x{len(grid.seeds)} for the grid." if grid.seeds
                              else ""))
  return rows


def seeds_note(seeds: Sequence[int]) -> str:
  return (f"SEEDS: {', '.join(map(str, seeds))}: every cell runs once per seed (RANDOM_SEED: "
          "init, dropout and data order; folders cells/<cell>/seed_<k>/)")


def format_dry_run(rows: Sequence[dict]) -> str:
  """The dry run's table: one line per training stage; notes for tasks that were not checked."""
  lines = [f"{'cell':<18} {'params':>16} {'stage':<9} {'steps':>8} {'end step':>9} "
           f"{'rows x len':>11} {'tokens':>18} {'train FLOPs':>12} {'dtype':<9} {'GiB/dev':>8} "
           f"task"]
  notes: dict[str, list[str]] = {}
  for r in rows:
    if "error" in r:
      lines.append(f"{r['cell']:<18} INVALID: {r['error']}")
      continue
    first = True
    for kind in grid_spec.TRAIN_STAGES:
      if f"{kind}_tokens" not in r:
        continue
      head = (f"{r['cell']:<18} {r['params']:>16,}" if first else f"{'':<18} {'':>16}")
      lines.append(f"{head} {kind:<9} {r[kind + '_steps']:>8,} {r[kind + '_end_step']:>9,} "
                   f"{r.get(kind + '_step_shape', ''):>11} {r[kind + '_tokens']:>18,} {r[kind + '_flops']:>12.3e} "
                   f"{r[kind + '_dtype']:<9} {r.get(kind + '_memory_gib', float('nan')):>8.1f} "
                   f"{r[kind + '_task']}")
      if r[kind + "_task"] == TASK_UNCHECKED:
        notes.setdefault(r[kind + "_task_note"], []).append(f"{r['cell']}/{kind}")
      first = False
  checkable = sum(r.get(f"{k}_task") in (TASK_OK, TASK_UNCHECKED)
                  for r in rows for k in grid_spec.TRAIN_STAGES)
  for note, where in notes.items():
    which = ("no cell's pretraining task was checked" if len(where) == checkable
             else f"tasks not checked ({', '.join(where)})")
    lines.append(f"NOTE: {which}: {note.rstrip('.')} (in a grid, such a "
                 f"binding goes in experiments.grid_spec.grid_definition.bindings).")
  return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Entry point.


def enable_compilation_cache(path: str | None) -> str | None:
  """Persists XLA executables: cells of one architecture and shape recompile the same steps."""
  import jax  # pylint: disable=g-import-not-at-top
  if not path or jax.config.jax_compilation_cache_dir:
    return jax.config.jax_compilation_cache_dir or None
  jax.config.update("jax_compilation_cache_dir", path)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
  return path


def _default_cache_dir() -> str:
  from objectives import vocab  # pylint: disable=g-import-not-at-top
  return str(vocab.cache_dir() / "jax_compilation_cache")


def main(argv: Sequence[str]) -> int:
  """The command line (under experiments.runtime.cli): 0 all cells done, 1 a cell failed, 130 or
  143 stopped by Ctrl-C or SIGTERM."""
  files, bindings, rest = gin_utils.parse_gin_flags(argv)
  parser = argparse.ArgumentParser(prog="python -m experiments.grid", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--dry_run", action="store_true",
                      help="validate every cell (gin, task against the vocabulary), print params / "
                      "dtype / tokens / FLOPs per stage; train nothing, read no corpus")
  parser.add_argument("--print_commands", action="store_true",
                      help="print one launch command per stage (for separate jobs) and exit")
  parser.add_argument("--shard", default=None, metavar="K/N",
                      help="run only every N-th cell from the K-th (0-based): N processes on one "
                      "GRID_DIR share the grid (each cell's stages stay in one process; an "
                      "adaptation goes with its source); each reports every finished stage")
  parser.add_argument("--compilation_cache_dir", default=None,
                      help="persistent XLA compilation cache (default: the harness cache folder, "
                      "$ZEROSHOT_HARNESS_CACHE or ~/.cache/zeroshot_harness; '' disables)")
  args = parser.parse_args(rest)
  shard = parse_shard(args.shard)
  if not files:
    raise GridError("give the grid with --gin_file=gin_configs/grids/<grid>.gin")
  grid, grid_dir = grid_spec.load(files, bindings)
  if not grid_dir:
    raise GridError("GRID_DIR is not set: add --gin.GRID_DIR=\"'runs/<name>'\".")
  try:  # its scheme always; its filesystem (created, writable) before a run trains anything
    if args.print_commands or args.dry_run:
      storage.check_scheme(grid_dir, "GRID_DIR", checkpoints=True)
    else:
      storage.check_dir(grid_dir, "GRID_DIR", create=True, writable=True, checkpoints=True)
  except storage.StorageError as e:
    raise GridError(str(e)) from e.__cause__
  if args.print_commands:
    if grid.seeds:
      print(f"# {seeds_note(grid.seeds)}")
    print(grid_plan.print_commands(grid_plan.plan(grid, grid_dir)))
    return 0
  if args.dry_run:
    rows = dry_run(grid, grid_dir)
    return 1 if any("error" in r for r in rows) else 0
  enable_compilation_cache(_default_cache_dir() if args.compilation_cache_dir is None
                           else args.compilation_cache_dir)
  try:
    outcome = run_grid(grid, grid_dir, shard=shard)
  except _interruptions() as e:
    print(f"[grid] stopped by {'Ctrl-C' if isinstance(e, KeyboardInterrupt) else e}; the same "
          f"command resumes the grid.", file=sys.stderr)
    return getattr(e, "exit_code", 130)
  print(report(grid, grid_dir, outcome, every_stage=shard is not None))
  return 1 if outcome["failed"] else 0


if __name__ == "__main__":
  cli.run(main, doc=__doc__)
