"""Grid results: results.csv (one row per cell x stage x suite x task x prompt [x seed]), the paper
table and continuation.csv (the held-out continuation loss per cell x trained stage [x seed]).

Aggregation follows the paper (T0's protocol): per task, the median accuracy over its prompts; per
suite, the mean over tasks of those medians; in a grid with seeds (a `seed` column), the mean of
that over seeds. Every score keeps its number of examples `n`. Where the evaluations kept their
per-example records (eval/records.py), experiments/evidence.py adds 95% intervals (over examples,
and over seeds when there are several), the majority-class baseline, degenerate-task flags and the
paper's comparisons as paired tests; `write_summary` writes them into summary.md beside the table,
with the continuation-loss table.
"""

from __future__ import annotations

import io
import json
import math
import os
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from experiments import evidence
from experiments import stats
from experiments.runtime import storage

# "seed" only in a grid with seeds: its presence switches on the statistics over seeds.
COLUMNS = ("grid", "cell", "arch", "objective", "stage", "phase", "step", "seed", "suite", "task",
           "prompt", "accuracy", "acc_norm", "n", "random_baseline", "eval_dir")
CONTINUATION_COLUMNS = ("grid", "cell", "arch", "objective", "stage", "phase", "step", "seed",
                        "suite", "nats_per_token", "stderr", "ci95_lo", "ci95_hi", "tokens",
                        "windows", "ids_sha256", "eval_dir")
CONTINUATION_CSV = "continuation.csv"
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


def continuation_row(results: Mapping[str, Any], **labels: Any) -> dict[str, Any] | None:
  """The continuation_loss block of one results.json (eval/continuation.py) as a row, or None."""
  c = results.get("continuation_loss")
  if not c:
    return None
  lo, hi = c.get("ci95") or (math.nan, math.nan)
  stderr = c.get("stderr")
  return dict(labels, nats_per_token=float(c["nats_per_token"]),
              stderr=math.nan if stderr is None else float(stderr), ci95_lo=float(lo),
              ci95_hi=float(hi), tokens=int(c["tokens"]), windows=int(c["windows"]),
              ids_sha256=c.get("ids_sha256", ""))


def _write(rows: Iterable[Mapping[str, Any]], columns: Iterable[str], path: str) -> pd.DataFrame:
  """Writes rows in `columns` order atomically; no seed column when no row has a seed."""
  rows = list(rows)
  cols = [c for c in columns if c != "seed" or any(r.get("seed") is not None for r in rows)]
  df = pd.DataFrame(rows, columns=cols)
  storage.write_csv(df, path, index=False)
  return df


def write_csv(rows: Iterable[Mapping[str, Any]], path: str) -> pd.DataFrame:
  """Writes results.csv rows (COLUMNS order) atomically; returns them as a DataFrame."""
  return _write(rows, COLUMNS, path)


def write_continuation_csv(rows: Iterable[Mapping[str, Any]], path: str) -> pd.DataFrame:
  return _write(rows, CONTINUATION_COLUMNS, path)


def read_continuation_csv(grid_dir: str) -> pd.DataFrame | None:
  path = os.path.join(grid_dir, CONTINUATION_CSV)
  return storage.read_csv(path) if storage.is_file(path) else None


def read_csv(grid_dir: str) -> pd.DataFrame:
  path = os.path.join(grid_dir, RESULTS_CSV)
  if not storage.is_file(path):
    raise FileNotFoundError(f"No {RESULTS_CSV} in {grid_dir}: run the grid first "
                            f"(python -m experiments.grid --gin_file=... --gin.GRID_DIR=...).")
  return storage.read_csv(path)


def _seed(df: pd.DataFrame) -> list[str]:
  return ["seed"] if "seed" in df.columns else []


def task_scores(df: pd.DataFrame) -> pd.DataFrame:
  """Per cell x phase x suite [x seed] x task: median over prompts, spread, n, baseline, standard
  error."""
  keys = ["cell", "arch", "objective", "phase", "suite"] + _seed(df) + ["task"]
  g = df.groupby(keys, sort=False)
  out = g.agg(median=("accuracy", "median"), min=("accuracy", "min"), max=("accuracy", "max"),
              n=("n", "max"), prompts=("prompt", "count"),
              random_baseline=("random_baseline", "mean")).reset_index()
  p = out["median"].clip(0, 1)
  out["stderr"] = (p * (1 - p) / out["n"].clip(lower=1)) ** 0.5
  return out


def suite_scores(df: pd.DataFrame) -> pd.DataFrame:
  """Per cell x phase x suite: the mean over tasks of the median over prompts (and n tasks); with
  seeds, the mean over seeds of that (and n_seeds)."""
  t = task_scores(df)
  unit = ["cell", "arch", "objective", "phase", "suite"]
  s = (t.groupby(unit + _seed(df), sort=False)
       .agg(score=("median", "mean"), n_tasks=("task", "count"),
            random=("random_baseline", "mean")).reset_index())
  if not _seed(df):
    return s
  return (s.groupby(unit, sort=False)
          .agg(score=("score", "mean"), n_tasks=("n_tasks", "max"), random=("random", "mean"),
               n_seeds=("seed", "nunique")).reset_index())


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
  buffer = io.BytesIO()
  fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
  plt.close(fig)
  storage.write_bytes(path, buffer.getvalue())


def examples_note(df: pd.DataFrame) -> str:
  """'n' of every task (examples per prompt), for the reader to judge noise."""
  n = df.groupby(["suite", "task"], sort=False)["n"].agg(["min", "max"])
  parts = [f"{task} {lo}" if lo == hi else f"{task} {lo}-{hi}" for (_, task), (lo, hi)
           in zip(n.index, n.itertuples(index=False))]
  return "Examples per prompt (n): " + ", ".join(parts) + "."


def continuation_markdown(c: pd.DataFrame, cells_order: Iterable[str] | None = None) -> str:
  """The held-out continuation loss per cell x trained stage, with its interval, as markdown."""
  lines = ["## Held-out continuation loss (nats per token; lower is better)", ""]
  if c is None or not len(c):
    return "\n".join(lines + ["No evaluation measured it (CONTINUATION_LOSS = False)."])
  order = {name: i for i, name in enumerate(cells_order or dict.fromkeys(c["cell"]))}
  c = c.assign(_order=c["cell"].map(order).fillna(len(order)), _mtf=c["stage"] == "mtf")
  c = c.sort_values(["_order", "_mtf"], kind="stable")
  seeded = "seed" in c.columns and c["seed"].notna().any()
  lines += ["| cell | stage | phase | step | nats/token | 95% CI | " + (
      "seeds | per seed |" if seeded else "windows | tokens |"),
            "|---|---|---|---|---|---|---|---|"]
  for (cell, stage), g in c.groupby(["cell", "stage"], sort=False):
    r = g.iloc[0]
    if seeded and len(g) > 1:
      s = stats.seed_interval(g["nats_per_token"].tolist())
      per_seed = ", ".join(f"{int(k)}: {v:.3f}" for k, v in zip(g["seed"], g["nats_per_token"]))
      lines.append(f"| {cell} | {stage} | {r.phase} | {int(r.step)} | {s['mean']:.3f} | "
                   f"{_interval(s['lo'], s['hi'])} | {s['n_seeds']} | {per_seed} |")
    else:
      tail = (f"1 | {int(r.seed)}: {r.nats_per_token:.3f} |" if seeded
              else f"{int(r.windows)} | {int(r.tokens)} |")
      lines.append(f"| {cell} | {stage} | {r.phase} | {int(r.step)} | {r.nats_per_token:.3f} | "
                   f"{_interval(r.ci95_lo, r.ci95_hi)} | {tail}")
  hashes = sorted(set(c["ids_sha256"].dropna().astype(str)))
  if len(hashes) > 1:
    lines += ["", f"**WARNING: the evaluations scored different held-out windows** ({len(hashes)} "
              f"distinct ids_sha256 in {CONTINUATION_CSV}): a corpus, vocabulary or "
              "eval.continuation.ContinuationConfig differs between them, and their losses are "
              "not comparable."]
  else:
    lines += ["", f"Every evaluation scored the same {int(c['windows'].iloc[0])} held-out windows "
              f"of {int(c['tokens'].iloc[0] // c['windows'].iloc[0])} continuation tokens "
              f"(ids_sha256 {hashes[0][:12] if hashes else '-'}...)."]
  lines += ["", "Method: -log p(continuation | prefix) per continuation token on fixed windows of "
            "the corpus's held-out split (eval/continuation.py); comparable across architectures "
            "and objectives that share the vocabulary. 95% CI: " + (
                "Student t interval over seeds (one seed: over windows, normal, +-1.96 standard "
                "errors)." if seeded else "over windows (normal, +-1.96 standard errors of the "
                "per-window losses).")]
  return "\n".join(lines)


def _interval(lo: float, hi: float) -> str:
  return "-" if lo is None or pd.isna(lo) else f"[{lo:.3f}, {hi:.3f}]"


def write_summary(df: pd.DataFrame, grid_dir: str, cells_order=None, notes: str = "",
                  continuation: pd.DataFrame | None = None) -> str:
  """Writes summary.csv / summary.md / summary.png and, from the per-example records, intervals.csv,
  tasks.csv and findings.csv (experiments/evidence.py); `continuation` (continuation.csv) adds the
  held-out loss table. Returns the markdown."""
  table = summary_table(df, cells_order)
  storage.write_csv(table, os.path.join(grid_dir, SUMMARY_CSV))
  ev = evidence.evidence(df, grid_dir)
  found = evidence.findings(ev, evidence.grid_cells(grid_dir, df))
  storage.write_csv(ev["suites"], os.path.join(grid_dir, INTERVALS_CSV), index=False)
  storage.write_csv(ev["tasks"], os.path.join(grid_dir, TASKS_CSV), index=False)
  storage.write_csv(found, os.path.join(grid_dir, FINDINGS_CSV), index=False)
  seeds = (f"Scores: the mean over seeds {', '.join(map(str, sorted(df['seed'].unique())))} (per "
           "seed, and the interval over seeds, below).\n\n" if _seed(df) else "")
  md = (seeds + to_markdown(table) + "\n\n" + examples_note(df) + "\n\n"
        + evidence.markdown(ev, found))
  if continuation is not None:
    md += "\n\n" + continuation_markdown(continuation, cells_order)
  storage.write_text(os.path.join(grid_dir, SUMMARY_MD),
                     md + "\n" + (f"\n{notes}\n" if notes else ""))
  plot_summary(df, os.path.join(grid_dir, SUMMARY_PNG), cells_order, evidence.error_bars(ev))
  return md


def load_results_json(path: str) -> dict[str, Any]:
  return json.loads(storage.read_text(path))
