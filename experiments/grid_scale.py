"""A scaling grid: every cell of a grid file expanded over model sizes and token budgets.

A grid file that binds `sizes` (names of gin_configs/sizes/ or inline dicts, see
grid_spec.parse_size) runs each cell once per size and budget, as its own cell named
'<cell>@<size>/<budget>' (folders cells/<cell>_<size>_<budget>/). The budget is either
`tokens_per_param` (a list: training tokens per non-embedding parameter, Chinchilla's axis) or,
without it, each size's 'steps' (else the grid's pretrain_steps).

Compute matching follows the paper (Wang et al. 2022, Sec. 3): every cell at a point trains the
same number of steps on the same tokens per step, so a decoder and an encoder-decoder of the same
width and depth per stack see the same tokens and cost about the same paper FLOPs. The steps of a
point come from its reference model, the grid's first pretraining cell (CD:FLM in the paper's
order): steps = tokens_per_param x its non-embedding parameters / its tokens per step. Each run's
FLOPs (arch.accounting, per architecture) place it on the compute axis: `points` writes them to
GRID_DIR/scale_points.csv, which experiments.scaling reads.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any, Callable, Sequence

import gin
import pandas as pd

from experiments import grid_plan
from experiments import grid_spec
from experiments.grid_spec import Cell, Grid, GridError, Size
from experiments.runtime import gin_utils
from experiments.runtime import storage

POINTS_CSV = "scale_points.csv"
POINT_COLUMNS = ("cell", "base", "size", "budget", "arch", "objective", "stage", "steps",
                 "end_step", "tokens", "params", "non_embedding_params", "stage_flops", "flops",
                 "paper_flops")


def point_name(cell: str, size: str, budget: str) -> str:
  return f"{cell}@{size}/{budget}"


@gin.configurable(module="experiments.grid_scale")
def model_of(model=gin.REQUIRED):
  """Evaluates the MODEL macro of a stage's gin (bound by the accounting below)."""
  return model


def account(stage: grid_plan.Stage,
            check: Callable[[Any, str, dict[str, int]], Any] | None = None) -> dict[str, Any]:
  """arch.accounting of a training stage's model at its feature lengths, and its activation dtype;
  with `check`, also out['task_check'] = check(model, task, lengths) (grid.check_task)."""
  from arch import accounting  # pylint: disable=g-import-not-at-top
  gin_utils.parse_gin(stage.gin_files, list(stage.bindings) + [
      "experiments.grid_scale.model_of.model = %MODEL", "arch.models.get_model.vocabulary = None"],
                      finalize=False, defaults=["VOCABULARY = None"])
  try:
    lengths = dict(gin_utils.require_macro("TASK_FEATURE_LENGTHS"))
    model = model_of()
    out = dict(accounting.account(model, lengths))
    # A grid plans accelerator runs: 'auto' is shown as what it becomes on a GPU or TPU.
    from arch import config as config_lib  # pylint: disable=g-import-not-at-top
    out["dtype"] = str(config_lib.resolve_for_platform(model.config, "gpu").dtype)
    # Per-device peak of the stage's train step on this machine's devices (arch/memory.py).
    import jax  # pylint: disable=g-import-not-at-top
    from arch import memory  # pylint: disable=g-import-not-at-top
    layout = accounting.memory_layout_from_gin(jax.device_count())
    out["memory_gib"] = memory.estimate(model, lengths, layout)["peak_bytes"] / memory.GiB
    if check is not None:
      out["task_check"] = check(model, stage.task, lengths)
    return out
  finally:
    gin.clear_config()


def _reference(grid: Grid) -> Cell:
  return next(c for c in grid.cells if c.source is None)


def reference_steps(grid: Grid, size: Size, tokens_per_param: Sequence[float]) -> dict[str, int]:
  """{budget label: steps} of one size: tokens_per_param x the reference model's non-embedding
  parameters / its tokens per step, rounded (at least 1)."""
  ref = _reference(grid)
  probe = dataclasses.replace(ref, steps=1, gin_files=size.gin_files + ref.gin_files,
                              bindings=size.bindings + ref.bindings, stages=("pretrain",))
  stage = grid_plan.cell_stages(grid, probe, ".")[0]
  try:
    acc = account(stage)
  except Exception as e:  # pylint: disable=broad-except
    raise GridError(f"experiments.grid_spec.grid_definition.sizes: size {size.name!r} does not "
                    f"build {ref.name!r} (the reference model of tokens_per_param): "
                    f"{type(e).__name__}: {e}") from None
  n = int(acc["non_embedding_params"])
  per_step = stage.batch_size * stage.row
  return {f"{t:g}tpp": max(1, round(t * n / per_step)) for t in tokens_per_param}


def expand(grid: Grid) -> Grid:
  """The grid with one cell per (size, budget, cell of the file); sizes outermost, so the small
  models of every cell finish first. A grid without sizes is returned as it is."""
  if not grid.unexpanded:
    return grid
  cells = []
  for size in grid.sizes:
    if grid.tokens_per_param:
      budgets = reference_steps(grid, size, grid.tokens_per_param)
    else:
      steps = size.steps or grid.pretrain_steps
      budgets = {f"{steps}steps": steps}
    for label, steps in budgets.items():
      for c in grid.cells:
        cells.append(dataclasses.replace(
            c, name=point_name(c.name, size.name, label),
            source=point_name(c.source, size.name, label) if c.source else None,
            # A pretraining cell trains the point's steps; an adaptation keeps its own.
            steps=c.steps if c.source else steps,
            gin_files=size.gin_files + c.gin_files, bindings=size.bindings + c.bindings,
            base=c.name, size=size.name, budget=label))
  return dataclasses.replace(grid, cells=grid_spec.order_cells(cells))


def points(grid: Grid, stages: Sequence[grid_plan.Stage], skip: Sequence[str] = ()) -> pd.DataFrame:
  """One row per training stage (first seed: seeds cost the same) of a scaling grid: parameters,
  tokens and FLOPs, `flops` counting every training stage up to this one (an adaptation adds its
  source's pretraining). Cells named in `skip` (broken gin) are left out."""
  first_seed = grid.seeds[0] if grid.seeds else None
  rows, done = [], {}
  for s in stages:
    if s.kind != "train" or s.seed != first_seed or s.cell.name in skip:
      continue
    try:
      acc = account(s)  # pylint: disable=redefined-outer-name
    except Exception:  # pylint: disable=broad-except
      continue  # a cell whose gin is broken: the grid records its error; no point to place
    stage_flops = float(acc["train_flops_per_example"]) * s.examples
    paper = float(acc["paper_flops_per_example"]) * s.examples
    before = done.get(s.depends_on[0], (0.0, 0.0)) if s.depends_on else (0.0, 0.0)
    key = s.key
    done[key] = (before[0] + stage_flops, before[1] + paper)
    rows.append(dict(cell=s.cell.name, base=s.cell.base or s.cell.name, size=s.cell.size,
                     budget=s.cell.budget, arch=s.cell.arch, objective=s.cell.objective,
                     stage=s.id, steps=s.steps, end_step=s.end_step, tokens=s.tokens,
                     params=int(acc["params"]),
                     non_embedding_params=int(acc["non_embedding_params"]),
                     stage_flops=stage_flops, flops=done[key][0], paper_flops=done[key][1]))
  gin.clear_config()
  return pd.DataFrame(rows, columns=POINT_COLUMNS)


def write_points(grid: Grid, grid_dir: str, stages: Sequence[grid_plan.Stage],
                 skip: Sequence[str] = ()) -> pd.DataFrame:
  """GRID_DIR/scale_points.csv, written whole (a temporary file renamed locally, one object on a
  URI), so shards of one grid may write it at the same time."""
  df = points(grid, stages, skip)
  storage.makedirs(grid_dir)
  storage.write_csv(df, os.path.join(grid_dir, POINTS_CSV), index=False)
  return df


def compute_note(df: pd.DataFrame) -> str:
  """The dry run's summary of a scaling grid: sizes, budgets and the span of training compute."""
  pre = df[df["stage"] == "pretrain"]
  if pre.empty:
    return ""
  lo, hi = pre["flops"].min(), pre["flops"].max()
  lines = [f"SCALING: {pre['size'].nunique()} sizes x {pre['budget'].nunique()} budgets x "
           f"{pre['base'].nunique()} cells; pretraining compute {lo:.3e} .. {hi:.3e} FLOPs "
           f"({math.log10(hi / lo):.2f} decades)"]
  for base, g in pre.groupby("base", sort=False):
    lines.append(f"  {base:<16} " + "  ".join(
        f"{r['size']}/{r['budget']}: N {r['non_embedding_params']:,} C {r['flops']:.2e}"
        for _, r in g.iterrows()))
  return "\n".join(lines)
