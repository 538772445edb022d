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
# # Scaling laws per architecture and objective
#
# Reads the output folder of a scaling grid (a grid file with `sizes`, e.g.
# `gin_configs/grids/embedded_scaling.gin`, run by `python -m experiments.grid`) and fits, per cell,
# the held-out continuation loss against training compute, L(C) = E + A (C/C0)^-alpha, with 95%
# bootstrap intervals (`experiments/scaling.py`, `experiments/scaling_fit.py`). Compute is
# `arch.accounting`'s training FLOPs of each run; every cell of a point trains the same steps on
# the same tokens per step, the paper's compute matching.
#
# Set the environment variable `GRID_DIR` (default `runs/embedded_scaling`); `SCALING_N_BOOT` sets
# the bootstrap resamples (default 1000).

# %%
import os
import pathlib
import sys

import matplotlib.pyplot as plt
import pandas as pd

REPO_ROOT = next(p for p in [pathlib.Path.cwd(), *pathlib.Path.cwd().parents]
                 if (p / "experiments").is_dir())
sys.path.insert(0, str(REPO_ROOT))
from experiments import scaling  # noqa: E402

GRID_DIR = pathlib.Path(os.environ.get("GRID_DIR", "runs/embedded_scaling"))
if not GRID_DIR.is_absolute():
  GRID_DIR = REPO_ROOT / GRID_DIR
N_BOOT = int(os.environ.get("SCALING_N_BOOT", "1000"))
points = scaling.load_points(str(GRID_DIR))
report, fits = scaling.analyze(points, scaling.load_accuracy(str(GRID_DIR)), n_boot=N_BOOT)
print(f"{len(points)} runs, {points['base'].nunique()} cells, compute "
      f"{points['C'].min():.3g} .. {points['C'].max():.3g} FLOPs")
points[["cell", "N", "D", "C", "loss", "loss_se"]]

# %% [markdown]
# ## The overlay
# Each cell's runs (95% intervals of the measured loss), its fitted law and the 95% band of the
# law over bootstrap resamples. Right of the dotted line is extrapolation.

# %%
fig, ax = plt.subplots(figsize=(8, 5.5))
scaling.overlay(ax, report, fits["all"], points)
plt.show()

# %% [markdown]
# ## The table
# Per cell: the exponent, the irreducible loss E and the amplitude A at C0 with 95% intervals; the
# held-out check (the law fitted without the largest size, its prediction of that size, the
# error and whether the measurement falls in the 95% prediction interval); the slope of zero-shot
# accuracy per decade of compute in the logit of the chance-normalised accuracy.

# %%
table = scaling.table(report)
table

# %% [markdown]
# ## Ranking, crossings and warnings
# The ranking at the largest budget of the sweep (each cell's share of resamples in which it is
# best), where the fitted curves cross (with the interval over resamples that cross) and the
# budgets at which the ranking changes. Searches stop at `max_extrapolation` x the largest run.

# %%
print(scaling.markdown(report).split("\n\n", 2)[-1])
