# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Zero-shot vs multitask-finetuned: which architecture and objective generalize best?
#
# Reads the output folder of a grid run (`python -m experiments.grid --gin_file=gin_configs/grids/<grid>.gin
# --gin.GRID_DIR=...`) and shows the comparison of Wang et al. (ICML 2022): each cell's score right
# after pretraining (zero-shot) and after multitask finetuning (post-MTF).
#
# Scores follow T0's protocol: per task, the median accuracy over its prompts; per suite, the mean of
# those medians. Every number comes from `results.csv` and the per-example records each evaluation
# keeps beside its results.json (`examples.jsonl.gz`): error bars are 95% bootstrap intervals over
# examples that recompute the median over prompts in each resample (over seeds, a t interval, when
# the grid ran several), and the paper's comparisons are paired tests on the same examples
# (`experiments/evidence.py`, `experiments/stats.py`).
#
# Set the environment variable `GRID_DIR` (default `runs/embedded_smoke`, the output of `make demo`).
# On the embedded smoke grid the models are tiny and briefly trained: read it as a check of the
# plumbing, not as a replication of the paper's numbers.

# %%
import json
import os
import pathlib
import sys

import matplotlib.pyplot as plt
import pandas as pd

REPO_ROOT = next(p for p in [pathlib.Path.cwd(), *pathlib.Path.cwd().parents]
                 if (p / "experiments").is_dir())
sys.path.insert(0, str(REPO_ROOT))
from arch import registry as arch_registry  # noqa: E402
from experiments import evidence  # noqa: E402
from experiments import results  # noqa: E402
from experiments.runtime import storage  # noqa: E402

GRID_DIR = os.environ.get("GRID_DIR", "runs/embedded_smoke")
if not storage.is_abs(GRID_DIR):  # relative to the repository; a URI (gs://...) as it is
  GRID_DIR = REPO_ROOT / GRID_DIR
GRID_DIR = storage.as_path(GRID_DIR)
definition = json.loads((GRID_DIR / "grid.json").read_text())["definition"]
cells = [c["name"] for c in definition["cells"]]
df = results.read_csv(str(GRID_DIR))
print(f"grid {definition['name']!r}: {len(cells)} cells, {len(df)} rows "
      f"(cell x stage x suite x task x prompt)")

# %% [markdown]
# ## Stage status
# Finished, failed and blocked stages as the grid recorded them (`status.json`).

# %%
status_path = GRID_DIR / "status.json"
status = json.loads(status_path.read_text()) if status_path.exists() else {}
status_table = pd.DataFrame(
    [{"cell": k.split("/")[0], "stage": k.split("/", 1)[1], "status": v["status"],
      "error": (v.get("error") or "")[:120]} for k, v in status.items()])
status_table

# %% [markdown]
# ## The paper's table
# Rows: cells; columns: each suite zero-shot and post-MTF (mean over tasks of the median over
# prompts, in %). The last row is the mean random baseline of the suite's tasks.

# %%
table = results.summary_table(df, cells)
table

# %% [markdown]
# ## Scores with 95% intervals and baselines
# One row per cell, phase and suite: the score, its bootstrap interval over examples, the number of
# examples, the random baseline (mean of 1 / options) and the majority-class baseline (always the
# most frequent gold option position), and the tasks flagged as degenerate for that cell (a constant
# answer, or a spread over the cells inside the noise) instead of being averaged in silently.

# %%
ev = evidence.evidence(df, str(GRID_DIR))
intervals = ev["suites"].copy()
for col in ("score", "lo", "hi", "random_baseline", "majority_baseline"):
  intervals[col] = (intervals[col] * 100).round(1)
shown_cols = [c for c in evidence.units(df) if c not in ("arch", "objective")]
intervals[shown_cols + ["score", "lo", "hi", "n", "random_baseline", "majority_baseline",
                        "flagged"]]

# %%
if len(ev["seeds"]):
  print("Over seeds: mean and Student t 95% interval")
  display(ev["seeds"].round(4))  # noqa: F821 (IPython)

# %% [markdown]
# ## Findings: the paper's comparisons
# Each row is a paired comparison on the same examples: the difference in points, its paired
# bootstrap interval, a permutation-test p-value and its Holm adjustment over all comparisons made
# here, the paper's direction (data, with where the paper says so) and whether the measured sign
# agrees. The reading is worded from the measured numbers.

# %%
found = evidence.findings(ev, evidence.grid_cells(str(GRID_DIR), df))
findings_table = found.copy()
if len(findings_table):
  for col in ("diff", "lo", "hi"):
    findings_table[col] = (findings_table[col] * 100).round(1)
  findings_table = findings_table[["comparison", "suite", "phase", "diff", "lo", "hi", "p_value",
                                   "p_holm", "paper", "agrees", "flags", "reading"]]
findings_table

# %% [markdown]
# ## Zero-shot vs post-MTF, per architecture and objective
# Left: one point per cell (above the diagonal: MTF helped). Right: the same scores as bars, cells
# grouped by architecture (an adapted cell sits with the architecture it was adapted to).

# %%
scores = results.suite_scores(df)
scores["score"] *= 100
for suite in scores["suite"].unique():
  s = scores[scores["suite"] == suite].pivot_table(index=["cell", "arch", "objective"],
                                                    columns="phase", values="score").reset_index()
  fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
  if {"zero_shot", "post_mtf"} <= set(s.columns):
    ax1.scatter(s["zero_shot"], s["post_mtf"])
    for _, r in s.iterrows():
      ax1.annotate(r["cell"], (r["zero_shot"], r["post_mtf"]), fontsize=8)
    lo = min(s["zero_shot"].min(), s["post_mtf"].min()) - 1
    hi = max(s["zero_shot"].max(), s["post_mtf"].max()) + 1
    ax1.plot([lo, hi], [lo, hi], "k--", lw=1)
  ax1.set_xlabel("zero-shot (%)")
  ax1.set_ylabel("post-MTF (%)")
  ax1.set_title(f"{suite}: each cell")
  arch_order = {name: i for i, name in enumerate(arch_registry.names())}
  s = s.assign(order=s["arch"].map(arch_order)).sort_values(["order", "objective", "cell"])
  phases = [p for p in ("zero_shot", "post_mtf") if p in s.columns]
  bars = evidence.error_bars(ev)
  bars = bars[bars["suite"] == suite]
  width = 0.8 / max(1, len(phases))
  for k, phase in enumerate(phases):
    iv = bars[bars["phase"] == phase].set_index("cell").reindex(s["cell"])
    lo = (s[phase].to_numpy() - iv["lo"].to_numpy() * 100).clip(min=0)
    hi = (iv["hi"].to_numpy() * 100 - s[phase].to_numpy()).clip(min=0)
    ax2.bar([i + (k - (len(phases) - 1) / 2) * width for i in range(len(s))], s[phase], width,
            yerr=[pd.Series(lo).fillna(0), pd.Series(hi).fillna(0)], capsize=3,
            label=results.PHASE_LABELS.get(phase, phase))
  ax2.set_xticks(range(len(s)))
  ax2.set_xticklabels(s["cell"], rotation=30, ha="right")
  for i in range(1, len(s)):  # a line between architectures
    if s["arch"].iloc[i] != s["arch"].iloc[i - 1]:
      ax2.axvline(i - 0.5, color="grey", lw=0.8)
  ax2.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)  # never over a bar
  ax2.set_ylabel("score (%), 95% interval")
  ax2.set_title(f"{suite}: cells grouped by architecture (CD | ND | ED)")
  fig.tight_layout()
  plt.show()

# %% [markdown]
# ## Per-task breakdown
# The median prompt's accuracy per task, zero-shot and post-MTF, with its 95% bootstrap interval
# (the median over prompts recomputed in each resample); dashed: the task's random baseline,
# dotted: its majority-class baseline. A hatched bar is a flagged task (constant answer).

# %%
tasks = ev["tasks"]
for suite in tasks["suite"].unique():
  t = tasks[tasks["suite"] == suite]
  names = list(dict.fromkeys(t["task"]))
  fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 4), squeeze=False)
  for ax, name in zip(axes[0], names):
    sub = t[t["task"] == name]
    labels = [f"{c}\n{results.PHASE_LABELS.get(p, p)}" for c, p in zip(sub["cell"], sub["phase"])]
    err = [((sub["score"] - sub["lo"]) * 100).clip(lower=0).fillna(0),
           ((sub["hi"] - sub["score"]) * 100).clip(lower=0).fillna(0)]
    ax.bar(range(len(sub)), sub["score"] * 100, yerr=err, capsize=3,
           color=["C0" if p == "zero_shot" else "C1" for p in sub["phase"]],
           edgecolor="k", linewidth=0.3)
    for i, flagged in enumerate(sub["constant_answer"]):
      if flagged:
        ax.bar(i, sub["score"].iloc[i] * 100, fill=False, hatch="//", edgecolor="k", lw=0)
    ax.axhline(sub["random_baseline"].mean() * 100, color="k", ls="--", lw=1)
    if sub["majority_baseline"].notna().any():
      ax.axhline(sub["majority_baseline"].mean() * 100, color="k", ls=":", lw=1)
    ax.set_xticks(range(len(sub)))
    ax.set_xticklabels(labels, rotation=60, ha="right", fontsize=7)
    ax.set_title(f"{name} (n={int(sub['n'].max())})" +
                 (" within noise" if sub["within_noise"].all() else ""))
  axes[0][0].set_ylabel("median-prompt accuracy (%), 95% interval")
  fig.suptitle(suite)
  fig.tight_layout()
  plt.show()
task_cols = [c for c in evidence.units(df) if c not in ("arch", "objective")]
tasks[task_cols + ["task", "score", "lo", "hi", "n", "random_baseline", "majority_baseline",
                   "position_share", "text_share", "constant_answer", "within_noise"]].round(4)
