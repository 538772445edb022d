"""Grid results: results.csv (one row per cell x stage x suite x task x prompt) and the paper table.

Aggregation follows the paper (T0's protocol): per task, the median accuracy over its prompts; per
suite, the mean over tasks of those medians. Every score keeps its number of examples `n`. Where
the evaluations kept their per-example records (eval/records.py), experiments/evidence.py adds
95% intervals, the majority-class baseline, degenerate-task flags and the paper's comparisons as
paired tests; `write_summary` writes them into summary.md beside the table.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from experiments import evidence

COLUMNS = ("grid", "cell", "arch", "objective", "stage", "phase", "step", "suite", "task",
           "prompt", "accuracy", "acc_norm", "n", "random_baseline", "eval_dir")
PHASE_LABELS = {"zero_shot": "zero-shot", "post_mtf": "post-MTF"}
RESULTS_CSV = "results.csv"
SUMMARY_CSV = "summary.csv"
SUMMARY_MD = "summary.md"
SUMMARY_PNG = "summary.png"
INTERVALS_CSV = "intervals.csv"
TASKS_CSV = "tasks.csv"
FINDINGS_CSV = "findings.csv"


def rows_from_results(results: Mapping[str, Any], **labels: Any) -> list[dict[str, Any]]:
  """The per-prompt rows of one results.json (eval's schema), tagged with the cell/stage labels."""
  rows = []
  for task, entry in sorted(results.get("tasks", {}).items()):
    for prompt, score in sorted(entry.get("prompts", {}).items()):
      rows.append(dict(labels, suite=results.get("suite", labels.get("suite")), task=task,
                       prompt=prompt, accuracy=float(score["accuracy"]),
                       acc_norm=float(score.get("acc_norm", math.nan)), n=int(score["n"]),
                       random_baseline=float(score.get("random_baseline", math.nan))))
  return rows


def write_csv(rows: Iterable[Mapping[str, Any]], path: str) -> pd.DataFrame:
  """Writes rows (COLUMNS order) atomically; returns them as a DataFrame."""
  df = pd.DataFrame(list(rows), columns=list(COLUMNS))
  tmp = path + ".tmp"
  df.to_csv(tmp, index=False)
  os.replace(tmp, path)
  return df


def read_csv(grid_dir: str) -> pd.DataFrame:
  path = os.path.join(grid_dir, RESULTS_CSV)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"No {RESULTS_CSV} in {grid_dir}: run the grid first "
                            f"(python -m experiments.grid --gin_file=... --gin.GRID_DIR=...).")
  return pd.read_csv(path)


def task_scores(df: pd.DataFrame) -> pd.DataFrame:
  """Per cell x phase x suite x task: median over prompts, spread, n, baseline, standard error."""
  keys = ["cell", "arch", "objective", "phase", "suite", "task"]
  g = df.groupby(keys, sort=False)
  out = g.agg(median=("accuracy", "median"), min=("accuracy", "min"), max=("accuracy", "max"),
              n=("n", "max"), prompts=("prompt", "count"),
              random_baseline=("random_baseline", "mean")).reset_index()
  p = out["median"].clip(0, 1)
  out["stderr"] = (p * (1 - p) / out["n"].clip(lower=1)) ** 0.5
  return out


def suite_scores(df: pd.DataFrame) -> pd.DataFrame:
  """Per cell x phase x suite: the mean over tasks of the median over prompts (and n tasks)."""
  t = task_scores(df)
  return (t.groupby(["cell", "arch", "objective", "phase", "suite"], sort=False)
          .agg(score=("median", "mean"), n_tasks=("task", "count"),
               random=("random_baseline", "mean")).reset_index())


def summary_table(df: pd.DataFrame, cells_order: Iterable[str] | None = None) -> pd.DataFrame:
  """The paper-style table: rows cells, columns '<suite> zero-shot' / '<suite> post-MTF' (in %)."""
  s = suite_scores(df)
  s["column"] = s["suite"] + " " + s["phase"].map(PHASE_LABELS).fillna(s["phase"])
  table = s.pivot_table(index="cell", columns="column", values="score", aggfunc="first") * 100
  suites = list(dict.fromkeys(s["suite"]))
  cols = [f"{su} {PHASE_LABELS[p]}" for su in suites for p in PHASE_LABELS
          if f"{su} {PHASE_LABELS[p]}" in table.columns]
  order = [c for c in (cells_order or dict.fromkeys(s["cell"])) if c in table.index]
  table = table.reindex(index=order, columns=cols)
  rb = s.groupby("suite")["random"].mean() * 100
  table.loc["random baseline"] = [rb.get(c.rsplit(" ", 1)[0], math.nan) for c in cols]
  table.index.name = "cell"
  return table.round(2)


def to_markdown(table: pd.DataFrame) -> str:
  """A GitHub markdown table (no extra dependency)."""
  head = [table.index.name or ""] + [str(c) for c in table.columns]
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for idx, row in table.iterrows():
    vals = ["-" if pd.isna(v) else f"{v:.2f}" for v in row.tolist()]
    lines.append("| " + " | ".join([str(idx)] + vals) + " |")
  return "\n".join(lines)


def plot_summary(df: pd.DataFrame, path: str, cells_order: Iterable[str] | None = None,
                 intervals: pd.DataFrame | None = None) -> None:
  """Grouped bars per suite: zero-shot vs post-MTF score of every cell with its 95% interval
  (`intervals`: cell, phase, suite, lo, hi as evidence.error_bars gives), random baseline dashed;
  the legend sits outside the axes so it never covers a bar."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  table = summary_table(df, cells_order)
  rb = table.loc["random baseline"]
  table = table.drop(index="random baseline")
  suites = list(dict.fromkeys(c.rsplit(" ", 1)[0] for c in table.columns))
  fig, axes = plt.subplots(1, len(suites), figsize=(max(6, 1.2 * len(table)) * len(suites), 4),
                           squeeze=False)
  width = 0.4
  phase_of = {label: phase for phase, label in PHASE_LABELS.items()}
  for ax, suite in zip(axes[0], suites):
    xs = range(len(table))
    for k, phase in enumerate(PHASE_LABELS.values()):
      col = f"{suite} {phase}"
      if col in table.columns:
        yerr = None
        if intervals is not None and len(intervals):
          iv = intervals[(intervals["suite"] == suite) & (intervals["phase"] == phase_of[phase])]
          iv = iv.set_index("cell").reindex(table.index)
          yerr = np.vstack([(table[col] - iv["lo"] * 100).clip(lower=0).fillna(0),
                            (iv["hi"] * 100 - table[col]).clip(lower=0).fillna(0)])
        ax.bar([x + (k - 0.5) * width for x in xs], table[col].fillna(0), width, label=phase,
               yerr=yerr, capsize=3 if yerr is not None else 0)
    base = rb.get(f"{suite} zero-shot", rb.get(f"{suite} post-MTF"))
    if base is not None and not pd.isna(base):
      ax.axhline(base, color="k", ls="--", lw=1, label="random")
    ax.set_xticks(list(xs))
    ax.set_xticklabels(table.index, rotation=30, ha="right")
    ax.set_ylabel("mean of per-task median accuracy (%)")
    ax.set_title(suite + (" (95% intervals)" if intervals is not None else ""))
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
  fig.tight_layout()
  fig.savefig(path, dpi=100, bbox_inches="tight")
  plt.close(fig)


def examples_note(df: pd.DataFrame) -> str:
  """'n' of every task (examples per prompt), for the reader to judge noise."""
  n = df.groupby(["suite", "task"], sort=False)["n"].agg(["min", "max"])
  parts = [f"{task} {lo}" if lo == hi else f"{task} {lo}-{hi}" for (_, task), (lo, hi)
           in zip(n.index, n.itertuples(index=False))]
  return "Examples per prompt (n): " + ", ".join(parts) + "."


def write_summary(df: pd.DataFrame, grid_dir: str, cells_order=None, notes: str = "") -> str:
  """Writes summary.csv / summary.md / summary.png and, from the per-example records, intervals.csv,
  tasks.csv and findings.csv (experiments/evidence.py); returns the markdown."""
  table = summary_table(df, cells_order)
  table.to_csv(os.path.join(grid_dir, SUMMARY_CSV))
  ev = evidence.evidence(df, grid_dir)
  found = evidence.findings(ev, evidence.grid_cells(grid_dir, df))
  ev["suites"].to_csv(os.path.join(grid_dir, INTERVALS_CSV), index=False)
  ev["tasks"].to_csv(os.path.join(grid_dir, TASKS_CSV), index=False)
  found.to_csv(os.path.join(grid_dir, FINDINGS_CSV), index=False)
  md = to_markdown(table) + "\n\n" + examples_note(df) + "\n\n" + evidence.markdown(ev, found)
  with open(os.path.join(grid_dir, SUMMARY_MD), "w", encoding="utf-8") as f:
    f.write(md + "\n" + (f"\n{notes}\n" if notes else ""))
  plot_summary(df, os.path.join(grid_dir, SUMMARY_PNG), cells_order, evidence.error_bars(ev))
  return md


def load_results_json(path: str) -> dict[str, Any]:
  with open(path, encoding="utf-8") as f:
    return json.load(f)
