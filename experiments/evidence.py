"""What a grid's scores can be trusted to say: intervals, baselines, degenerate tasks, findings.

Read from the per-example records every evaluation writes (eval/records.py) beside its
results.json; experiments/stats.py does the arithmetic.

- Intervals: 95% percentile bootstrap over examples keeping the prompt structure (per-prompt
  accuracy, median over prompts, mean over tasks recomputed in each of N_BOOT resamples). With a
  `seed` column in results.csv: also the mean over seeds and its Student t interval.
- Baselines: random (mean of 1 / options) and majority class: the accuracy of always answering
  the most frequent gold option position of the prompt (read off the gold labels, so it is the
  best constant answerer in hindsight), median over prompts, mean over tasks.
- Degenerate tasks, flagged rather than averaged in silently:
  * constant answer: on at least half of a task's prompts the model chose the same option position
    or the same option text for >= DEGENERATE_SHARE of the examples;
  * within noise: the task's scores across the cells of a phase span less than the critical
    difference of two independent scores, 1.96 * sqrt(2) * the median bootstrap standard error.
- Findings: the paper's comparisons (PAPER_DIRECTIONS, ADAPTATION_DIRECTIONS: directions only, with
  where the paper says so) as paired tests on the same examples (stats.paired: paired bootstrap
  interval, permutation p-value), Holm-adjusted over every comparison made in the grid; the text is
  worded from the measured difference and says whether its sign agrees with the paper's.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from eval import records as records_lib
from experiments import stats
from experiments.runtime import storage

DEGENERATE_SHARE = 0.9
ALPHA = 0.05
N_BOOT = 1000
N_PERM = 2000
UNIT = ["cell", "arch", "objective", "phase", "suite"]  # + "seed" when results.csv has one
PAPER = "Wang et al., ICML 2022 (arXiv:2204.05832)"
_ZERO_SHOT = "abstract and Sec. 4: after pretraining alone, CD:FLM generalizes best zero-shot"
_POST_MTF = ("abstract and Sec. 4: after MTF, non-causal visibility + MLM (ED:MLM, ND:MLM) "
             "performs best")
# (phase, the cell the paper finds higher, the cell it finds lower, where it says so).
PAPER_DIRECTIONS = (
    ("zero_shot", "CD:FLM", "ND:PLM", _ZERO_SHOT),
    ("zero_shot", "CD:FLM", "ED:PLM", _ZERO_SHOT),
    ("zero_shot", "CD:FLM", "ED:MLM", _ZERO_SHOT),
    ("post_mtf", "ED:MLM", "CD:FLM", _POST_MTF),
    ("post_mtf", "ND:MLM", "CD:FLM", _POST_MTF),
)
# Adaptation vs its source, by (source objective, adapted objective): the phase where the paper
# finds the adapted model higher, and where it says so.
ADAPTATION_DIRECTIONS = {
    ("full_lm", "span_corruption"): (
        "post_mtf", "abstract and Sec. 5: CD:FLM adapted to non-causal MLM is competitive after "
        "MTF (above its CD:FLM source)"),
    ("span_corruption", "full_lm"): (
        "zero_shot", "abstract and Sec. 5: LM adaptation turns an MLM model into a performant "
        "generative (zero-shot) model"),
    ("span_corruption", "prefix_lm"): (
        "zero_shot", "abstract and Sec. 5: LM adaptation turns an MLM model into a performant "
        "generative (zero-shot) model"),
}


def units(df: pd.DataFrame) -> list[str]:
  return UNIT + (["seed"] if "seed" in df.columns else [])


def eval_dir(grid_dir: str, row: Mapping[str, Any]) -> str:
  """Where a results.csv row's evaluation wrote results.json (and its records)."""
  given = row.get("eval_dir")
  if isinstance(given, str) and given:
    return given if storage.is_abs(given) else os.path.join(grid_dir, given)
  # The grid's layout (experiments/grid_plan.py): cells/<slug>/eval_<trained stage>/<suite>.
  # Imported here: grid_spec loads the registries (JAX, seqio), which a reader of a results.csv
  # that names its eval_dir never needs.
  from experiments import grid_spec  # pylint: disable=g-import-not-at-top
  slug = grid_spec.Cell(name=row["cell"], arch="", objective="", stages=(), steps=1).slug
  return os.path.join(grid_dir, "cells", slug, f"eval_{row['stage']}", row["suite"])


def load_records(df: pd.DataFrame, grid_dir: str) -> dict[tuple, pd.DataFrame]:
  """{unit key: records DataFrame} for every evaluation of results.csv that kept its records."""
  keys = units(df)
  out = {}
  for key, rows in df.groupby(keys, sort=False):
    path = os.path.join(eval_dir(grid_dir, rows.iloc[0].to_dict()), records_lib.RECORDS_FILE)
    if storage.is_file(path):
      out[key] = records_lib.by_group(records_lib.read(path))  # acc_all: one row per question
  return out


def _outcomes(rec: pd.DataFrame) -> stats.Outcomes:
  return stats.outcomes(rec["task"], rec["prompt"], rec["id"], rec["credit"], rec["key"])


def task_flags(rec: pd.DataFrame, share: float = DEGENERATE_SHARE) -> pd.DataFrame:
  """Per task: majority-class baseline, answer concentration and the constant-answer flag."""
  rows = []
  for (task, prompt), g in rec.groupby(["task", "prompt"], sort=True):
    rank = g[g["kind"] == "rank"]
    pos = stats.mode_share(rank["chosen"]) if len(rank) else math.nan
    text = stats.mode_share(rank["chosen_text"]) if len(rank) else math.nan
    rows.append({"task": task, "prompt": prompt, "position_share": pos, "text_share": text,
                 "majority": stats.mode_share(rank["gold"]) if len(rank) else 0.0,
                 "constant": bool(max(pos, text) >= share) if len(rank) else False})
  p = pd.DataFrame(rows)
  out = p.groupby("task", sort=True).agg(
      majority_baseline=("majority", "median"), position_share=("position_share", "median"),
      text_share=("text_share", "median"), constant_prompts=("constant", "sum"),
      prompts=("constant", "count")).reset_index()
  out["constant_answer"] = 2 * out["constant_prompts"] >= out["prompts"]
  return out


def _cell_records(recs: Mapping[tuple, pd.DataFrame], keys: list[str], cell: str, phase: str,
                  suite: str) -> pd.DataFrame | None:
  """A cell's records in one phase and suite; several seeds: each example's mean credit."""
  got = [r for k, r in recs.items() if dict(zip(keys, k))["cell"] == cell
         and dict(zip(keys, k))["phase"] == phase and dict(zip(keys, k))["suite"] == suite]
  if not got:
    return None
  if len(got) == 1:
    return got[0]
  return (pd.concat(got).groupby(["task", "prompt", "id"], as_index=False)
          .agg(credit=("credit", "mean"), key=("key", "first")))


def evidence(df: pd.DataFrame, grid_dir: str, n_boot: int = N_BOOT,
             seed: int = 0) -> dict[str, pd.DataFrame]:
  """{'suites': per unit score + interval + baselines, 'tasks': per task + flags, 'seeds': ...}."""
  keys = units(df)
  recs = load_records(df, grid_dir)
  suite_rows, task_rows = [], []
  base = df.groupby(keys + ["task"], sort=False).agg(
      median=("accuracy", "median"), n=("n", "max"),
      random_baseline=("random_baseline", "mean")).reset_index()
  for key, b in base.groupby(keys, sort=False):
    labels = dict(zip(keys, key))
    rec = recs.get(key)
    row = dict(labels, score=b["median"].mean(), lo=math.nan, hi=math.nan, n=int(b["n"].sum()),
               random_baseline=b["random_baseline"].mean(), majority_baseline=math.nan,
               records=rec is not None)
    per_task = b.set_index("task")
    if rec is not None:
      boot = stats.bootstrap(_outcomes(rec), n_boot=n_boot, seed=seed)
      flags = task_flags(rec).set_index("task")
      row.update(score=boot["score"], lo=boot["lo"], hi=boot["hi"], n=boot["n"],
                 majority_baseline=flags["majority_baseline"].reindex(per_task.index).mean())
      for task, t in per_task.iterrows():
        tb, fl = boot["tasks"].get(task, {}), flags.loc[task] if task in flags.index else None
        task_rows.append(dict(labels, task=task, score=t["median"], lo=tb.get("lo", math.nan),
                              hi=tb.get("hi", math.nan), se=tb.get("se", math.nan), n=t["n"],
                              random_baseline=t["random_baseline"],
                              majority_baseline=fl["majority_baseline"] if fl is not None
                              else math.nan,
                              position_share=fl["position_share"] if fl is not None else math.nan,
                              text_share=fl["text_share"] if fl is not None else math.nan,
                              constant_answer=bool(fl["constant_answer"]) if fl is not None
                              else False))
    else:
      for task, t in per_task.iterrows():
        task_rows.append(dict(labels, task=task, score=t["median"], lo=math.nan, hi=math.nan,
                              se=math.nan, n=t["n"], random_baseline=t["random_baseline"],
                              majority_baseline=math.nan, position_share=math.nan,
                              text_share=math.nan, constant_answer=False))
    suite_rows.append(row)
  tasks = pd.DataFrame(task_rows)
  tasks["within_noise"] = False
  if len(tasks):
    for _, g in tasks.groupby(["phase", "suite", "task"] + (["seed"] if "seed" in keys else [])):
      se = g["se"].median()
      if len(g) > 1 and not math.isnan(se):
        tasks.loc[g.index, "within_noise"] = bool(
            g["score"].max() - g["score"].min() < 1.96 * math.sqrt(2) * se)
  suites = pd.DataFrame(suite_rows)
  if len(suites):
    flagged = {k: _flag_text(g) for k, g in tasks.groupby(keys, sort=False)}
    suites["flagged"] = [flagged.get(k, "") for k in suites[keys].itertuples(index=False,
                                                                              name=None)]
  return {"suites": suites, "tasks": tasks, "seeds": seed_table(suites),
          "records": recs, "keys": keys}


def _flag_text(g: pd.DataFrame) -> str:
  parts = [f"{t} (constant answer)" for t in g.loc[g["constant_answer"], "task"]]
  parts += [f"{t} (within noise)" for t in g.loc[g["within_noise"] & ~g["constant_answer"],
                                                 "task"]]
  return ", ".join(parts)


def seed_table(suites: pd.DataFrame) -> pd.DataFrame:
  """With a `seed` column: per cell x phase x suite, the mean over seeds and its t interval."""
  if "seed" not in suites.columns or not len(suites):
    return pd.DataFrame()
  rows = []
  for key, g in suites.groupby(UNIT, sort=False):
    s = stats.seed_interval(g["score"].tolist())
    rows.append(dict(zip(UNIT, key), mean=s["mean"], lo=s["lo"], hi=s["hi"],
                     n_seeds=s["n_seeds"]))
  return pd.DataFrame(rows)


def error_bars(ev: Mapping[str, Any]) -> pd.DataFrame:
  """cell, phase, suite, score, lo, hi for plots: over seeds when there are several, else over
  examples."""
  seeds = ev["seeds"]
  if len(seeds) and (seeds["n_seeds"] > 1).any():
    return seeds.rename(columns={"mean": "score"})[["cell", "phase", "suite", "score", "lo", "hi"]]
  s = ev["suites"]
  return s[["cell", "phase", "suite", "score", "lo", "hi"]] if len(s) else pd.DataFrame(
      columns=["cell", "phase", "suite", "score", "lo", "hi"])


def comparisons(cells: Iterable[Mapping[str, Any]], suites: Iterable[str]) -> list[dict]:
  """The paper's comparisons that this grid's cells allow: (suite, phase, a, b, source)."""
  cells = list(cells)
  names = {c["name"] for c in cells}
  out = []
  for suite in suites:
    for phase, a, b, where in PAPER_DIRECTIONS:
      if {a, b} <= names:
        out.append({"suite": suite, "phase": phase, "a": a, "b": b, "source": where,
                    "kind": "architecture/objective"})
    by_name = {c["name"]: c for c in cells}
    for c in cells:
      src = by_name.get(c.get("source") or "")
      rule = src and ADAPTATION_DIRECTIONS.get((src["objective"], c["objective"]))
      if rule:
        out.append({"suite": suite, "phase": rule[0], "a": c["name"], "b": src["name"],
                    "source": rule[1], "kind": "adaptation vs its source"})
  return out


def _reading(a: str, b: str, d: float, lo: float, hi: float, p: float, p_holm: float) -> str:
  if d == 0:
    where = f"{a} and {b} score the same"
  else:
    where = f"{a} is {abs(d) * 100:.1f} points {'above' if d > 0 else 'below'} {b}"
  sig = "significant" if p_holm <= ALPHA else "not significant"
  return (f"{where} (95% CI {lo * 100:+.1f} to {hi * 100:+.1f}); p = {p:.3g}, Holm {p_holm:.3g}: "
          f"{sig} at {ALPHA:g}")


def findings(ev: Mapping[str, Any], cells: Iterable[Mapping[str, Any]], n_boot: int = N_BOOT,
             n_perm: int = N_PERM, seed: int = 0) -> pd.DataFrame:
  """The paper's comparisons as paired tests, Holm-adjusted together, each worded from the data."""
  recs, keys, tasks = ev["records"], ev["keys"], ev["tasks"]
  suites = sorted(ev["suites"]["suite"].unique()) if len(ev["suites"]) else []
  rows = []
  for c in comparisons(cells, suites):
    ra = _cell_records(recs, keys, c["a"], c["phase"], c["suite"])
    rb = _cell_records(recs, keys, c["b"], c["phase"], c["suite"])
    row = dict(c, comparison=f"{c['a']} vs {c['b']}", paper=f"{c['a']} > {c['b']}", diff=math.nan,
               lo=math.nan, hi=math.nan, p_value=math.nan, n=0, agrees="", flags="")
    if ra is None or rb is None:
      missing = [x for x, r in ((c["a"], ra), (c["b"], rb)) if r is None]
      row["reading"] = f"not compared: no per-example records of {', '.join(missing)}"
      rows.append(row)
      continue
    r = stats.paired(_outcomes(ra), _outcomes(rb), n_boot=n_boot, n_perm=n_perm, seed=seed)
    row.update(diff=r["diff"], lo=r["lo"], hi=r["hi"], p_value=r["p_value"], n=r["n"],
               agrees="tie" if r["diff"] == 0 else ("yes" if r["diff"] > 0 else "no"))
    t = tasks[(tasks["phase"] == c["phase"]) & (tasks["suite"] == c["suite"])
              & tasks["cell"].isin([c["a"], c["b"]])]
    bad = t[t["constant_answer"]]
    flags = [f"{x.task}: constant answer in {x.cell}" for x in bad.itertuples()]
    flags += [f"{task}: within noise" for task in
              dict.fromkeys(t.loc[t["within_noise"], "task"])]
    row["flags"] = "; ".join(flags)
    rows.append(row)
  out = pd.DataFrame(rows)
  if not len(out):
    return out
  out["p_holm"] = stats.holm(out["p_value"].to_numpy())
  for i, r in out.iterrows():
    if not math.isnan(r["diff"]):
      agree = {"yes": "agrees with", "no": "disagrees with", "tie": "has no sign to compare with"}
      out.loc[i, "reading"] = (_reading(r["a"], r["b"], r["diff"], r["lo"], r["hi"],
                                        r["p_value"], r["p_holm"])
                               + f"; its sign {agree[r['agrees']]} the paper's ({r['paper']})")
  return out


def grid_cells(grid_dir: str, df: pd.DataFrame) -> list[dict]:
  """The grid's cell dicts (grid.json), else the cells of results.csv without sources."""
  path = os.path.join(grid_dir, "grid.json")
  if storage.is_file(path):
    return list(json.loads(storage.read_text(path)).get("definition", {}).get("cells", []))
  cells = df[["cell", "objective"]].drop_duplicates()
  return [{"name": c, "objective": o} for c, o in cells.itertuples(index=False)]


def _pct(x: float) -> str:
  return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x * 100:.1f}"


def _ci(lo: float, hi: float, signed: bool = False) -> str:
  if math.isnan(lo):
    return "-"
  f = "{:+.1f}" if signed else "{:.1f}"
  return f"[{f.format(lo * 100)}, {f.format(hi * 100)}]"


def markdown(ev: Mapping[str, Any], found: pd.DataFrame) -> str:
  """The intervals table, the findings table and the method, as GitHub markdown."""
  s = ev["suites"]
  lines = ["## Scores with 95% intervals", "",
           "| cell | phase | suite | score | 95% CI | n | random | majority | flagged tasks |",
           "|---|---|---|---|---|---|---|---|---|"]
  for r in s.itertuples():
    phase = r.phase + (f" (seed {r.seed})" if "seed" in s.columns else "")
    lines.append(f"| {r.cell} | {phase} | {r.suite} | {_pct(r.score)} | {_ci(r.lo, r.hi)} | "
                 f"{r.n} | {_pct(r.random_baseline)} | {_pct(r.majority_baseline)} | "
                 f"{r.flagged or ''} |")
  if not s["records"].all():
    lines += ["", "No interval (-): that evaluation has no per-example records "
              f"({records_lib.RECORDS_FILE})."]
  seeds = ev["seeds"]
  if len(seeds):
    lines += ["", "### Over seeds (mean, Student t 95% interval)", "",
              "| cell | phase | suite | mean | 95% CI | seeds |", "|---|---|---|---|---|---|"]
    lines += [f"| {r.cell} | {r.phase} | {r.suite} | {_pct(r.mean)} | {_ci(r.lo, r.hi)} | "
              f"{r.n_seeds} |" for r in seeds.itertuples()]
  lines += ["", f"## Findings: the paper's comparisons ({PAPER})", ""]
  if len(found):
    lines += ["| comparison | suite | phase | difference | 95% CI | p | p (Holm) | paper | agrees "
              "| flags | reading |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in found.itertuples():
      p = "-" if math.isnan(r.p_value) else f"{r.p_value:.3g}"
      ph = "-" if math.isnan(r.p_holm) else f"{r.p_holm:.3g}"
      diff = "-" if math.isnan(r.diff) else f"{r.diff * 100:+.1f}"
      lines.append(f"| {r.comparison} | {r.suite} | {r.phase} | {diff} | "
                   f"{_ci(r.lo, r.hi, True)} | {p} | {ph} | {r.paper} | {r.agrees or '-'} | "
                   f"{r.flags or ''} | {r.reading} |")
    lines += ["", "Where the paper says so:"]
    lines += [f"- {a}: {src}" for a, src in dict.fromkeys(zip(found["paper"], found["source"]))]
  else:
    lines.append("None of the paper's comparisons is possible with this grid's cells.")
  lines += ["", "Method: scores in points (%). Intervals: 95% percentile bootstrap over examples "
            f"({N_BOOT} resamples; each task's examples resampled, per-prompt accuracy, median "
            "over prompts and mean over tasks recomputed in each). Differences: paired on the "
            "same (task, prompt, example); interval by paired bootstrap, p-value by a two-sided "
            f"paired permutation test ({N_PERM} swaps of the two cells' outcomes per example), "
            f"Holm-adjusted over the {int(found['p_value'].notna().sum()) if len(found) else 0} "
            "comparisons made. Majority: always the most frequent gold option position of the "
            "prompt (the best constant answer, known from the labels). Flags: constant answer = "
            f"the same option position or text for >= {DEGENERATE_SHARE:.0%} of examples on at "
            "least half the prompts; within noise = the task's spread over the cells of a phase "
            "is below 1.96 * sqrt(2) * its median bootstrap standard error."]
  return "\n".join(lines)
