r"""Scaling laws per cell of a scaling grid (experiments/grid_scale.py): who wins at a budget.

  python -m experiments.scaling --grid_dir=runs/embedded_scaling [--json] [--budget=1e15]
      [--max_extrapolation=10] [--n_boot=1000] [--seed_sd=0] [--flops=train|paper] [--out_dir=DIR]

Reads GRID_DIR/scale_points.csv (parameters, tokens, FLOPs per run), continuation.csv (held-out
continuation loss per run) and results.csv (zero-shot accuracy), all written by experiments.grid,
plus the results.json of every finished evaluation the CSVs do not hold yet (a sweep in progress).
Per cell (the grid file's cell, over its sizes and budgets), after pretraining:

- L(C) = E + A (C/C0)^-alpha of the continuation loss against training FLOPs (C0: the smallest
  compute in the sweep, the same for every cell); L(N, D) = E + A (N/N0)^-a + B (D/D0)^-b where
  the sweep varies parameters and tokens separately, and then the compute-optimal N and D per
  budget. N: non-embedding parameters (Kaplan et al. 2020); D: training tokens; C: arch.accounting's
  training FLOPs of the run (what the hardware does, per architecture).
- Zero-shot accuracy per suite against compute, in the logit of the chance-normalised accuracy
  (scaling_fit.TRANSFORM): accuracy is bounded, a power law in raw accuracy is not.
- A held-out check: L(C) fitted without the largest size predicts it; the error and whether the
  observation falls in the prediction interval.
- Across cells: where the fitted curves cross and the budget at which the ranking changes (with
  the share of bootstrap resamples that agree), the ranking at the largest budget of the sweep
  (or --budget) with each cell's probability of being best. Nothing is searched beyond
  --max_extrapolation x the largest compute run; a --budget beyond it is reported with a warning.

Every parameter carries a 95% bootstrap interval (experiments/scaling_fit.py says how). Writes
scaling.json, scaling.md, one plot per cell and scaling_overlay.png to --out_dir (default
GRID_DIR/scaling).
"""

from __future__ import annotations

if __name__ == "__main__":
  from experiments.runtime import cli
  cli.start()

import argparse
import glob
import json
import math
import os
import re
import sys
from typing import Any, Sequence

import numpy as np
import pandas as pd

from experiments import grid_scale
from experiments import grid_spec
from experiments import results as results_lib
from experiments import scaling_fit as sf
from experiments.scaling_fit import ScalingError

MAX_EXTRAPOLATION = 10.0
OUT = "scaling"
JSON_NAME, MD_NAME, OVERLAY = "scaling.json", "scaling.md", "scaling_overlay.png"
ZERO_SHOT_STAGES = ("pretrain", "adapt")


# ---------------------------------------------------------------------------------------------
# Points.


def _finished_evals(grid_dir: str, pts: pd.DataFrame) -> tuple[list[dict], list[dict]]:
  """(continuation rows, results.csv rows) read from the finished evaluations of the points'
  folders, so that a sweep still running (whose CSVs the grid writes at its end) can be fitted."""
  cont, rows = [], []
  for _, p in pts.drop_duplicates(["cell", "stage"]).iterrows():
    slug = grid_spec.Cell(name=p["cell"], arch=p["arch"], objective=p["objective"], stages=(),
                          steps=1).slug
    base = os.path.join(grid_dir, "cells", slug)
    found = glob.glob(os.path.join(base, f"eval_{p['stage']}", "*", "results.json"))
    found += glob.glob(os.path.join(base, "seed_*", f"eval_{p['stage']}", "*", "results.json"))
    taken = set()
    for path in sorted(found):
      if not os.path.isfile(os.path.join(os.path.dirname(path), "DONE")):
        continue
      m = re.search(r"seed_(\d+)", os.path.relpath(path, base))
      labels = dict(cell=p["cell"], arch=p["arch"], objective=p["objective"], stage=p["stage"],
                    phase="zero_shot", step=int(p["end_step"]),
                    **({"seed": int(m.group(1))} if m else {}))
      res = results_lib.load_results_json(path)
      suite = os.path.basename(os.path.dirname(path))
      rows += results_lib.rows_from_results(res, suite=suite, **labels)
      row = results_lib.continuation_row(res, suite=suite, **labels)
      if row is not None and labels.get("seed") not in taken:  # one suite per run suffices
        taken.add(labels.get("seed"))
        cont.append(row)
  return cont, rows


def _with_finished(csv_df: pd.DataFrame | None, scanned: list[dict]) -> pd.DataFrame:
  """The CSV's rows plus scanned rows of runs the CSV does not hold yet."""
  scanned_df = pd.DataFrame(scanned)
  if csv_df is None or csv_df.empty:
    return scanned_df
  if scanned_df.empty:
    return csv_df
  return pd.concat([csv_df, scanned_df[~scanned_df["cell"].isin(set(csv_df["cell"]))]],
                   ignore_index=True)


FLOPS = {"train": "flops", "paper": "paper_flops"}


def load_points(grid_dir: str, flops: str = "train") -> pd.DataFrame:
  """One row per run after pretraining (or adaptation): base cell, size, budget, N, D, C, the
  continuation loss and its standard error (mean over seeds, the spread over seeds added).

  flops: 'train' (what the hardware does, arch.accounting's train_flops) or 'paper' (the paper's
  6 x parameters of each stack x its tokens, under which it matched ED and decoders).
  """
  if flops not in FLOPS:
    raise ScalingError(f"--flops must be one of {', '.join(FLOPS)}, got {flops!r}.")
  path = os.path.join(grid_dir, grid_scale.POINTS_CSV)
  if not os.path.isfile(path):
    raise ScalingError(f"No {grid_scale.POINTS_CSV} in {grid_dir}: it is written by "
                       "`python -m experiments.grid` for a grid with `sizes` (a scaling grid, "
                       "e.g. gin_configs/grids/embedded_scaling.gin).")
  pts = pd.read_csv(path)
  pts = pts[pts["stage"].isin(ZERO_SHOT_STAGES)]
  cont = _with_finished(results_lib.read_continuation_csv(grid_dir),
                        _finished_evals(grid_dir, pts)[0])
  if cont.empty:
    raise ScalingError(f"No {results_lib.CONTINUATION_CSV} rows in {grid_dir}: no evaluation "
                       "with the continuation loss has finished yet (CONTINUATION_LOSS = True, "
                       "the grid's default).")
  cont = cont[cont["stage"].isin(ZERO_SHOT_STAGES)]
  agg = []
  for (cell, stage), g in cont.groupby(["cell", "stage"], sort=False):
    k = len(g)
    se_eval = float(np.sqrt(np.nanmean(g["stderr"] ** 2) / k)) if g["stderr"].notna().any() else 0.0
    se_seed = float(g["nats_per_token"].std(ddof=1) / math.sqrt(k)) if k > 1 else 0.0
    agg.append(dict(cell=cell, stage=stage, loss=float(g["nats_per_token"].mean()),
                    loss_se=math.sqrt(se_eval ** 2 + se_seed ** 2), seeds=k))
  df = pts.merge(pd.DataFrame(agg), on=["cell", "stage"], how="inner")
  df = df.rename(columns={"non_embedding_params": "N", "tokens": "D", FLOPS[flops]: "C"})
  order = {b: i for i, b in enumerate(dict.fromkeys(pts["base"]))}  # the grid file's cell order
  df["_order"] = df["base"].map(order)
  return df.sort_values(["_order", "C"]).drop(columns="_order").reset_index(drop=True)


def load_accuracy(grid_dir: str) -> pd.DataFrame:
  """Per run and suite after pretraining: the suite score (mean over tasks of the median over
  prompts, mean over seeds), its standard error and chance."""
  path = os.path.join(grid_dir, results_lib.RESULTS_CSV)
  csv_df = pd.read_csv(path) if os.path.isfile(path) else None
  points_csv = os.path.join(grid_dir, grid_scale.POINTS_CSV)
  scanned = (_finished_evals(grid_dir, pd.read_csv(points_csv))[1]
             if os.path.isfile(points_csv) else [])
  df = _with_finished(csv_df, scanned)
  if df.empty:
    return pd.DataFrame(columns=["cell", "suite", "acc", "acc_se", "chance"])
  df = df[df["phase"] == "zero_shot"]
  if df.empty:
    return pd.DataFrame(columns=["cell", "suite", "acc", "acc_se", "chance"])
  t = results_lib.task_scores(df)
  seed = ["seed"] if "seed" in t.columns else []
  per = (t.groupby(["cell", "suite"] + seed, sort=False)
         .agg(acc=("median", "mean"), se2=("stderr", lambda s: float(np.sum(s ** 2))),
              tasks=("task", "count"), chance=("random_baseline", "mean")).reset_index())
  per["acc_se"] = np.sqrt(per["se2"]) / per["tasks"]
  out = (per.groupby(["cell", "suite"], sort=False)
         .agg(acc=("acc", "mean"), acc_se=("acc_se", lambda s: float(np.sqrt(np.mean(s ** 2)))),
              spread=("acc", lambda s: float(s.std(ddof=1)) if len(s) > 1 else 0.0),
              k=("acc", "count"), chance=("chance", "mean")).reset_index())
  out["acc_se"] = np.sqrt(out["acc_se"] ** 2 / out["k"] + out["spread"] ** 2 / out["k"])
  return out[["cell", "suite", "acc", "acc_se", "chance"]]


# ---------------------------------------------------------------------------------------------
# Analysis.


def _err(e: Exception) -> dict:
  return {"error": str(e)}


def heldout(g: pd.DataFrame, c0: float, max_factor: float, n_boot: int, seed: int,
            fits: dict | None = None) -> dict:
  """L(C) fitted without the largest size (by N) predicts that size's points (the fit goes into
  `fits` under the cell's name, for the plot)."""
  sizes = g.groupby("size")["N"].first().sort_values()
  if len(sizes) < 2:
    return {"error": "one size only: nothing to hold out."}
  top = sizes.index[-1]
  fit_g, held = g[g["size"] != top], g[g["size"] == top]
  try:
    fit = sf.fit_compute(fit_g["C"], fit_g["loss"], fit_g["loss_se"], c0=c0, n_boot=n_boot,
                         seed=seed, what=f"held-out fit without size {top!r}")
  except ScalingError as e:
    return {"held_out_size": top, **_err(e)}
  if fits is not None:
    fits[g["base"].iloc[0]] = fit
  rows, warnings = [], list(fit.warnings)
  for _, r in held.iterrows():
    p = fit.prediction(float(r["C"]), float(r["loss_se"]), seed=seed)
    factor = float(r["C"]) / fit.c_max
    inside = bool(p["pred_lo"] <= r["loss"] <= p["pred_hi"])
    rows.append({"cell": r["cell"], "compute": float(r["C"]), "observed": float(r["loss"]),
                 "predicted": p, "error": p["value"] - float(r["loss"]),
                 "relative_error": (p["value"] - float(r["loss"])) / float(r["loss"]),
                 "inside_interval": inside, "extrapolation_factor": factor})
    if factor > max_factor:
      warnings.append(f"held-out point {r['cell']}: extrapolates {factor:.1f}x beyond the "
                      f"largest fitted compute (stated limit {max_factor:g}x).")
  return {"held_out_size": top, "fit_sizes": list(sizes.index[:-1]), "n_fit": fit.n,
          "alpha": fit.params()["alpha"], "points": rows, "warnings": warnings}


def analyze(points: pd.DataFrame, accuracy: pd.DataFrame | None = None,
            max_factor: float = MAX_EXTRAPOLATION, budget: float | None = None,
            n_boot: int = sf.N_BOOT, seed: int = 0,
            seed_sd: float = 0.0) -> tuple[dict, dict]:
  """(report dict, {'all': {cell: ComputeFit}, 'heldout': {cell: fit without its largest size}}).

  seed_sd: a stated seed-to-seed standard deviation of the loss (nats), added to the standard
  error of every point measured with one seed only (a sweep of one seed cannot see it).
  """
  if points.empty:
    raise ScalingError("no finished runs with a continuation loss to fit.")
  if seed_sd:
    points = points.copy()
    one = points["seeds"] == 1
    points.loc[one, "loss_se"] = np.sqrt(points.loc[one, "loss_se"] ** 2 + seed_sd ** 2)
  c0 = float(points["C"].min())
  cells, fits, heldout_fits, warnings = {}, {}, {}, []
  acc = accuracy if accuracy is not None else pd.DataFrame(columns=["cell", "suite"])
  for base, g in points.groupby("base", sort=False):
    entry: dict[str, Any] = {
        "n": int(len(g)), "sizes": sorted(g["size"].unique().tolist()),
        "budgets": sorted(g["budget"].unique().tolist()),
        "points": g[["cell", "size", "budget", "N", "D", "C", "loss",
                     "loss_se"]].to_dict("records")}
    try:
      fit = sf.fit_compute(g["C"], g["loss"], g["loss_se"], c0=c0, n_boot=n_boot, seed=seed,
                           what=f"{base}: L(C)")
      fits[base] = fit
      entry["loss_vs_compute"] = {"law": "L(C) = E + A (C/C0)^-alpha", "C0": c0,
                                  **fit.params(), "residual_sd": math.sqrt(fit.extra_var),
                                  "warnings": fit.warnings}
    except ScalingError as e:
      entry["loss_vs_compute"] = _err(e)
    if sf.covers_n_and_d(g["N"], g["D"]):
      try:
        nd = sf.fit_nd(g["N"], g["D"], g["loss"], g["loss_se"], n_boot=n_boot,
                       seed=seed, what=f"{base}: L(N, D)")
        k = float(np.median(g["C"] / (g["N"] * g["D"])))
        budgets = sorted({float(c) for c in np.geomspace(g["C"].min(), g["C"].max(), 3)})
        entry["loss_vs_nd"] = {"law": "L(N, D) = E + A (N/N0)^-a + B (D/D0)^-b", "N0": nd.n0,
                               "D0": nd.d0, **nd.params(), "warnings": nd.warnings}
        entry["compute_optimal"] = {"flops_per_param_token": k,
                                    "budgets": sf.compute_optimal(nd, budgets, k)}
      except ScalingError as e:
        entry["loss_vs_nd"] = _err(e)
    else:
      entry["loss_vs_nd"] = {"skipped": "the sweep does not vary parameters and tokens "
                                        "separately (one tokens-per-parameter ratio): L(N, D) and "
                                        "the compute-optimal N, D are not identified."}
    entry["accuracy"] = {}
    sub = acc[acc["cell"].isin(g["cell"])].merge(g[["cell", "C"]], on="cell")
    for suite, a in sub.groupby("suite", sort=False):
      try:
        af = sf.fit_accuracy(a["C"], a["acc"], a["acc_se"], float(a["chance"].mean()), c0=c0,
                             n_boot=n_boot, seed=seed, what=f"{base}: {suite} accuracy")
        entry["accuracy"][suite] = {"transform": sf.TRANSFORM, "C0": c0, "chance": af.chance,
                                    **af.params(), "at_largest_compute":
                                        af.prediction(float(g["C"].max())),
                                    "points": a[["cell", "C", "acc", "acc_se"]].to_dict("records"),
                                    "warnings": af.warnings}
      except ScalingError as e:
        entry["accuracy"][suite] = _err(e)
    entry["heldout"] = heldout(g, c0, max_factor, n_boot, seed, heldout_fits)
    cells[base] = entry
  report: dict[str, Any] = {"confidence": sf.CONFIDENCE, "n_boot": n_boot, "C0": c0,
                            "max_extrapolation": max_factor, "seed_sd_assumed": seed_sd,
                            "cells": cells}
  if len(fits) >= 2:
    observed_max = float(points["C"].max())
    report["ranking_at_largest_budget"] = sf.ranking(fits, observed_max)
    hi = observed_max * max_factor
    report["crossings"] = {"range": [c0, hi], "observed_max": observed_max,
                           "pairs": sf.crossings(fits, c0, hi, observed_max)}
    report["ranking_changes"] = sf.ranking_changes(fits, c0, hi)
    for ch in report["ranking_changes"]:
      ch["extrapolated"] = ch["compute"] > observed_max
      # Its uncertainty: the interval of the crossing of the pair that swapped.
      pair = next((p for p in report["crossings"]["pairs"]
                   if set(p["cells"]) == set(ch["swapped"][:2]) and p["crossings"]), None)
      if pair is not None and len(ch["swapped"]) == 2:
        ch["crossing_log10_flops"] = pair["first_crossing_log10_flops"]
        ch["share_resamples_crossing"] = pair["share_resamples_crossing"]
    if budget is not None:
      factor = budget / observed_max
      if factor > max_factor:
        warnings.append(f"--budget {budget:.3g} extrapolates {factor:.1f}x beyond the largest "
                        f"compute run ({observed_max:.3g}), beyond the stated limit of "
                        f"{max_factor:g}x: read its ranking as a guess.")
      report["ranking_at_budget"] = {**sf.ranking(fits, budget), "extrapolation_factor": factor}
  for base, e in cells.items():
    for part in ("loss_vs_compute", "loss_vs_nd", "heldout"):
      warnings += e[part].get("warnings", []) if isinstance(e[part], dict) else []
  report["warnings"] = warnings
  fits_all = {"all": fits, "heldout": heldout_fits}
  return report, fits_all


# ---------------------------------------------------------------------------------------------
# Output.


def _ci(p: dict, fmt: str = "{:.3g}") -> str:
  if not p or "value" not in p:
    return "-"
  lo = p.get("lo")
  if lo is None or math.isnan(lo):
    return fmt.format(p["value"])
  return f"{fmt.format(p['value'])} [{fmt.format(p['lo'])}, {fmt.format(p['hi'])}]"


def table(report: dict) -> pd.DataFrame:
  """One row per cell: points, the L(C) parameters, the held-out check, the accuracy slope."""
  rows = []
  for base, e in report["cells"].items():
    lc = e["loss_vs_compute"]
    h = e["heldout"]
    hp = h.get("points", [])
    acc = next(iter(e["accuracy"].values()), {})
    rows.append({
        "cell": base, "points": e["n"],
        "alpha": _ci(lc.get("alpha")) if "error" not in lc else "no fit",
        "E (nats)": _ci(lc.get("E")) if "error" not in lc else "-",
        "A (nats at C0)": _ci(lc.get("A")) if "error" not in lc else "-",
        "held-out size": h.get("held_out_size", "-"),
        "held-out pred / obs": "; ".join(f"{p['predicted']['value']:.3f} / {p['observed']:.3f}"
                                         for p in hp) or h.get("error", "-"),
        "held-out error": "; ".join(f"{p['error']:+.3f} ({100 * p['relative_error']:+.1f}%)"
                                    for p in hp) or "-",
        "inside interval": "; ".join("yes" if p["inside_interval"] else "no" for p in hp) or "-",
        "acc logit slope / decade": _ci(acc.get("b1_per_decade"), "{:.2f}") if acc else "-",
    })
  return pd.DataFrame(rows)


def markdown(report: dict) -> str:
  t = table(report)
  sd = report.get("seed_sd_assumed") or 0
  lines = [f"Continuation loss L(C) = E + A (C/C0)^-alpha per cell, C0 = {report['C0']:.3g} "
           f"FLOPs; {int(100 * report['confidence'])}% bootstrap intervals "
           f"({report['n_boot']} resamples)"
           + (f"; a stated seed-to-seed sd of {sd:g} nats added to one-seed points." if sd
              else "."), "",
           "| " + " | ".join(t.columns) + " |", "|" + "---|" * len(t.columns)]
  lines += ["| " + " | ".join(str(v) for v in r) + " |" for r in t.itertuples(index=False)]
  for base, e in report["cells"].items():
    if "error" in e["loss_vs_compute"]:
      lines.append(f"- {base}: not fitted: {e['loss_vs_compute']['error']}")
  rk = report.get("ranking_at_largest_budget")
  if rk:
    lines += ["", f"Ranking at the largest budget ({rk['compute']:.3g} FLOPs), lowest loss first: "
              + ", ".join(f"{c} (P(best) {rk['cells'][c]['p_best']:.2f}, rank "
                          f"{rk['cells'][c]['rank_lo']}-{rk['cells'][c]['rank_hi']})"
                          for c in rk["order"])]
  cr = report.get("crossings")
  if cr:
    found = [p for p in cr["pairs"] if p["crossings"]]
    lines += ["", f"Crossings of the fitted curves up to {cr['range'][1]:.3g} FLOPs, each pair from "
              f"the larger of its smallest runs (largest run {cr['observed_max']:.3g}; beyond it "
              "is extrapolation):"]
    for p in found:
      ci = p["first_crossing_log10_flops"]
      lines.append(f"- {p['cells'][0]} x {p['cells'][1]}: at {10 ** ci['value']:.3g} FLOPs "
                   f"(log10 {ci['value']:.2f} [{ci['lo']:.2f}, {ci['hi']:.2f}] over the "
                   f"{100 * p['share_resamples_crossing']:.0f}% of resamples that cross)"
                   + (" EXTRAPOLATED" if p.get("extrapolated") else ""))
    if not found:
      lines.append("- none: the order of the fitted curves is the same over the whole range.")
    changes = report.get("ranking_changes", [])
    if changes:
      lines.append("Ranking changes at: " + "; ".join(
          f"{c['compute']:.3g} ({' <-> '.join(c['swapped'])})"
          f"{' EXTRAPOLATED' if c['extrapolated'] else ''}" for c in changes))
  for w in report.get("warnings", []):
    lines.append(f"WARNING: {w}")
  return "\n".join(lines)


def _slug(name: str) -> str:
  return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def plot(report: dict, fits_all: dict, points: pd.DataFrame, out_dir: str) -> list[str]:
  """One figure per cell (loss and, where fitted, accuracy against compute) and the overlay."""
  fits, held_fits = fits_all["all"], fits_all["heldout"]
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  os.makedirs(out_dir, exist_ok=True)
  written = []
  c_lo, c_hi = points["C"].min() / 1.5, points["C"].max() * 3
  grid = np.geomspace(c_lo, c_hi, 200)
  colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]

  def band(ax, fit, color, label):
    b = fit.predict_B(grid)
    lo, hi = np.nanpercentile(b, [2.5, 97.5], axis=0)
    ax.fill_between(grid, lo, hi, color=color, alpha=0.2, lw=0)
    ax.plot(grid, fit.predict(grid), color=color, label=label)

  for i, (base, e) in enumerate(report["cells"].items()):
    g = points[points["base"] == base]
    accs = {s: a for s, a in e["accuracy"].items() if "points" in a}
    fig, axes = plt.subplots(1, 1 + bool(accs), figsize=(5.5 * (1 + bool(accs)), 4), squeeze=False)
    ax = axes[0, 0]
    ax.errorbar(g["C"], g["loss"], yerr=1.96 * g["loss_se"], fmt="o", color="k", label="runs")
    if base in fits:
      p = e["loss_vs_compute"]["alpha"]
      band(ax, fits[base], colors[0], f"fit, alpha {_ci(p, '{:.3f}')}")
    if base in held_fits:
      ax.plot(grid, held_fits[base].predict(grid), color=colors[1], ls="--",
              label=f"fit without size {e['heldout']['held_out_size']}")
    for k, hp in enumerate(e["heldout"].get("points", [])):
      pr = hp["predicted"]
      ax.errorbar([hp["compute"]], [pr["value"]], yerr=[[pr["value"] - pr["pred_lo"]],
                                                        [pr["pred_hi"] - pr["value"]]],
                  fmt="s", color=colors[1], mfc="none",
                  label="its prediction (95% interval)" if k == 0 else None)
    ax.set_xscale("log")
    ax.set_xlabel("training FLOPs")
    ax.set_ylabel("held-out continuation loss (nats/token)")
    ax.set_title(base)
    ax.legend(fontsize=7)
    if accs:
      ax2 = axes[0, 1]
      for j, (suite, a) in enumerate(accs.items()):
        ap = pd.DataFrame(a["points"])
        ax2.errorbar(ap["C"], 100 * ap["acc"], yerr=196 * ap["acc_se"], fmt="o",
                     color=colors[j % len(colors)], label=suite)
        b0, b1 = a["b0"]["value"], a["b1_per_decade"]["value"]
        z = b0 + b1 * np.log10(grid / report["C0"])
        ax2.plot(grid, 100 * (a["chance"] + (1 - a["chance"]) / (1 + np.exp(-z))),
                 color=colors[j % len(colors)])
        ax2.axhline(100 * a["chance"], color="0.6", ls=":", lw=1)
      ax2.set_xscale("log")
      ax2.set_xlabel("training FLOPs")
      ax2.set_ylabel("zero-shot accuracy (%)")
      ax2.set_title("logit of chance-normalised accuracy, linear in log C", fontsize=8)
      ax2.legend(fontsize=7)
    fig.tight_layout()
    path = os.path.join(out_dir, f"scaling_{_slug(base)}.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)
  fig, ax = plt.subplots(figsize=(7, 5))
  overlay(ax, report, fits, points)
  fig.tight_layout()
  path = os.path.join(out_dir, OVERLAY)
  fig.savefig(path, dpi=110)
  plt.close(fig)
  written.append(path)
  return written


def overlay(ax, report: dict, fits: dict, points: pd.DataFrame) -> None:
  """Every cell's points, fitted L(C) and 95% band on one axis (fits: analyze's 'all')."""
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
  grid = np.geomspace(points["C"].min() / 1.5, points["C"].max() * 3, 200)
  for i, base in enumerate(report["cells"]):
    color = colors[i % len(colors)]
    g = points[points["base"] == base]
    ax.errorbar(g["C"], g["loss"], yerr=1.96 * g["loss_se"], fmt="o", color=color, ms=4)
    if base in fits:
      b = fits[base].predict_B(grid)
      lo, hi = np.nanpercentile(b, [2.5, 97.5], axis=0)
      ax.fill_between(grid, lo, hi, color=color, alpha=0.2, lw=0)
      alpha = report["cells"][base]["loss_vs_compute"]["alpha"]
      ax.plot(grid, fits[base].predict(grid), color=color,
              label=f"{base}: alpha {_ci(alpha, '{:.3f}')}")
  ax.axvline(points["C"].max(), color="0.5", ls=":", lw=1)
  ax.set_xscale("log")
  ax.set_xlabel("training FLOPs (arch.accounting)")
  ax.set_ylabel("held-out continuation loss (nats/token)")
  ax.set_title("L(C) = E + A (C/C0)^-alpha per cell, 95% bootstrap bands")
  ax.legend(fontsize=7)


def _jsonable(obj):
  if isinstance(obj, dict):
    return {str(k): _jsonable(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [_jsonable(v) for v in obj]
  if isinstance(obj, (np.floating, float)):
    return None if not math.isfinite(float(obj)) else float(obj)
  if isinstance(obj, np.integer):
    return int(obj)
  if isinstance(obj, np.bool_):
    return bool(obj)
  return obj


def run(grid_dir: str, out_dir: str | None = None, max_factor: float = MAX_EXTRAPOLATION,
        budget: float | None = None, n_boot: int = sf.N_BOOT, seed: int = 0,
        plots: bool = True, seed_sd: float = 0.0, flops: str = "train") -> dict:
  """Loads, fits, writes scaling.json / scaling.md / plots; returns the report."""
  points = load_points(grid_dir, flops)
  report, fits = analyze(points, load_accuracy(grid_dir), max_factor, budget, n_boot, seed,
                         seed_sd)
  report["flops"] = flops
  report = _jsonable(report)
  out_dir = out_dir or os.path.join(grid_dir, OUT)
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, JSON_NAME), "w", encoding="utf-8") as f:
    json.dump(report, f, indent=2)
  with open(os.path.join(out_dir, MD_NAME), "w", encoding="utf-8") as f:
    f.write(markdown(report) + "\n")
  if plots:
    report["plots"] = [os.path.relpath(p, out_dir) for p in plot(report, fits, points, out_dir)]
  return report


def main(argv: Sequence[str]) -> int:
  parser = argparse.ArgumentParser(prog="python -m experiments.scaling", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--grid_dir", required=True, help="GRID_DIR of a scaling grid run")
  parser.add_argument("--json", action="store_true", help="print the report as JSON")
  parser.add_argument("--out_dir", default=None, help="default GRID_DIR/scaling")
  parser.add_argument("--budget", type=float, default=None,
                      help="also rank the cells at this compute (FLOPs)")
  parser.add_argument("--max_extrapolation", type=float, default=MAX_EXTRAPOLATION,
                      help="search crossings up to this factor beyond the largest run; a budget "
                      "or held-out point beyond it is reported with a warning")
  parser.add_argument("--flops", choices=sorted(FLOPS), default="train",
                      help="compute axis: arch.accounting's training FLOPs (default) or the "
                      "paper's approximation, under which Wang et al. matched compute")
  parser.add_argument("--n_boot", type=int, default=sf.N_BOOT)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--seed_sd", type=float, default=0.0,
                      help="stated seed-to-seed sd of the loss (nats) added to points of one "
                      "seed (e.g. from a study with seeds); default 0: evaluation noise only")
  args = parser.parse_args(argv)
  if not os.path.isdir(args.grid_dir):
    raise ScalingError(f"--grid_dir {args.grid_dir}: no such folder.")
  if args.seed_sd < 0:
    raise ScalingError(f"--seed_sd must be >= 0, got {args.seed_sd}.")
  if args.max_extrapolation < 1:
    raise ScalingError(f"--max_extrapolation must be >= 1, got {args.max_extrapolation}.")
  report = run(args.grid_dir, args.out_dir, args.max_extrapolation, args.budget, args.n_boot,
               args.seed, seed_sd=args.seed_sd, flops=args.flops)
  if args.json:
    print(json.dumps(report, indent=2))
  else:
    print(markdown(report))
    print(f"\nSaved {JSON_NAME}, {MD_NAME} and plots in "
          f"{args.out_dir or os.path.join(args.grid_dir, OUT)}.", file=sys.stderr)
  return 0


if __name__ == "__main__":
  cli.run(main, doc=__doc__)
