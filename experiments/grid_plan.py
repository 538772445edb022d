"""The stages of a grid: for every cell, which entry point runs with which gin files and bindings.

Each stage owns one folder under GRID_DIR/cells/<cell>/ and is finished when its DONE file (written
last) exists. Training stages chain by absolute step counts, t5x style: pretrain ends at
pretrain_steps, an adaptation at the source's pretraining end + its steps, MTF at the previous end +
mtf_steps, each starting from the previous stage's checkpoints (INITIAL_CHECKPOINT_PATH).

With `seeds`, every cell runs once per seed under GRID_DIR/cells/<cell>/seed_<k>/, its training
stages binding RANDOM_SEED = k (init, dropout and data order); an adaptation starts from its
source's pretraining of the same seed. Without seeds the layout has no seed level.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
from typing import Mapping, Sequence

from arch import registry as arch_registry
from experiments.grid_spec import PHASE, Cell, Grid, GridError

ARCH_GIN = "gin_configs/arch/{}.gin"
OBJECTIVE_GIN = "gin_configs/objectives/{}.gin"
RUN_GIN = {"pretrain": "gin_configs/runs/pretrain.gin", "adapt": "gin_configs/runs/adapt.gin",
           "mtf": "gin_configs/runs/finetune.gin"}
ENTRY = {"train": "experiments.train", "eval": "eval.zero_shot"}
DONE = "DONE"
ERROR = "ERROR"


@dataclasses.dataclass(frozen=True)
class Stage:
  """One launch: a training run or one suite's evaluation of a training stage's checkpoints."""

  cell: Cell
  id: str  # 'pretrain', 'adapt', 'mtf', or 'eval_<trained stage>.<suite>'
  kind: str  # 'train' | 'eval'
  dir: str
  gin_files: tuple[str, ...]
  bindings: tuple[str, ...]
  trained: str  # the training stage this stage is or evaluates
  end_step: int
  steps: int = 0  # optimizer steps of this stage (0 for evaluation)
  examples: int = 0  # sequences trained on in this stage (steps x batch)
  tokens: int = 0  # token positions trained on in this stage (examples x row)
  batch_size: int = 0  # rows per step (BATCH_SIZE)
  row: int = 0  # token positions of one converted row (row_tokens)
  suite: str | None = None
  task: str | None = None  # MIXTURE_OR_TASK_NAME of a training stage
  depends_on: tuple[str, ...] = ()  # keys of the stages that must be done first
  seed: int | None = None  # RANDOM_SEED of this run of the cell; None: the grid has no seeds

  @property
  def key(self) -> str:
    """'<cell>/<stage id>', or '<cell>/seed_<k>/<stage id>' in a grid with seeds."""
    return _key(self.cell.name, self.seed, self.id)

  @property
  def phase(self) -> str:
    return PHASE[self.trained]

  def command(self) -> str:
    """The shell command that runs this stage as its own job (t5x flag conventions)."""
    args = ["python", "-m", ENTRY[self.kind]]
    args += [shlex.quote(f"--gin_file={f}") for f in self.gin_files]
    for b in self.bindings:
      key, _, value = b.partition(" = ")
      args.append(f"--gin.{key}={_shell_value(value)}")
    return " ".join(args)


def _shell_value(value: str) -> str:
  """A gin value for the shell the way t5x users write it: --gin.MODEL_DIR="'runs/x'"."""
  if re.fullmatch(r"[\w.+-]+", value):
    return value
  if not re.search(r'["$`\\!]', value):
    return f'"{value}"'
  return shlex.quote(value)


def _q(value: str) -> str:
  return repr(str(value))


def _lengths(d: Mapping[str, int]) -> str:
  return "{" + ", ".join(f"{k!r}: {int(v)}" for k, v in sorted(d.items())) + "}"


def _key(cell_name: str, seed: int | None, stage_id: str) -> str:
  return "/".join([cell_name] + ([seed_folder(seed)] if seed is not None else []) + [stage_id])


def seed_folder(seed: int) -> str:
  return f"seed_{seed}"


def cell_dir(grid_dir: str, cell: Cell, seed: int | None = None) -> str:
  """GRID_DIR/cells/<slug>, or GRID_DIR/cells/<slug>/seed_<k> for one seed of a grid with seeds."""
  base = os.path.join(grid_dir, "cells", cell.slug)
  return base if seed is None else os.path.join(base, seed_folder(seed))


def _common(grid: Grid, cell: Cell) -> tuple[list[str], list[str]]:
  return [ARCH_GIN.format(cell.arch), *grid.gin_files], list(grid.bindings)


def _eval_bindings(grid: Grid) -> list[str]:
  # First, so that the grid's eval_bindings can turn it off: the one loss comparable across cells.
  out = ["CONTINUATION_LOSS = True"] + list(grid.eval_bindings)
  if grid.local_data_dir is not None:
    out.append(f"LOCAL_DATA_DIR = {_q(grid.local_data_dir)}")
  return out


def _mtf_bindings(grid: Grid) -> list[str]:
  # In-loop validation of MTF only where the grid asks (mtf_eval_period): a P3 folder commonly has
  # no validation split for every template, and the trainer stops at start-up without one. Before
  # mtf_bindings, which may still rebind it.
  out = [f"EVAL_PERIOD = {grid.mtf_eval_period}"] + list(grid.mtf_bindings)
  if grid.local_data_dir is not None:
    out.append(f"objectives.multitask.mtf_options.local_data_dir = {_q(grid.local_data_dir)}")
  return out


def _pretrain_shape(grid: Grid, cell: Cell) -> tuple[Mapping[str, int], int]:
  """(TASK_FEATURE_LENGTHS, BATCH_SIZE) of a pretrain / adapt stage: the cell's, else the grid's."""
  lengths = cell.feature_lengths or grid.feature_lengths[cell.objective]
  batch = cell.batch_size or grid.batch_size[cell.objective]
  return lengths, batch


def row_tokens(arch: str, lengths: Mapping[str, int]) -> int:
  """Token positions of one converted row: the architecture's converter decides (a decoder row is
  inputs + targets, or TASK_FEATURE_LENGTHS['decoder_length']; ED's is inputs + targets)."""
  converter = arch_registry.get(arch).feature_converter_cls(pack=True)
  try:
    model_lengths = converter.get_model_feature_lengths(dict(lengths))
  except (ValueError, KeyError) as e:
    raise GridError(f"TASK_FEATURE_LENGTHS = {dict(lengths)} on {arch!r}: {e}") from None
  return sum(int(model_lengths.get(k, 0)) for k in ("encoder_input_tokens",
                                                     "decoder_target_tokens"))


def cell_stages(grid: Grid, cell: Cell, grid_dir: str, seed: int | None = None) -> list[Stage]:
  """The stages of one cell (one seed of it in a grid with seeds) in the order they run."""
  base = cell_dir(grid_dir, cell, seed)
  out: list[Stage] = []
  prev: Stage | None = None
  for kind in cell.stages:
    files, bindings = _common(grid, cell)
    if kind == "eval":
      if prev is None:
        raise GridError(f"cell {cell.name!r}: 'eval' before any training stage.")
      for suite in grid.suites:
        out_dir = os.path.join(base, f"eval_{prev.id}", suite)
        b = bindings + _eval_bindings(grid) + list(cell.bindings) + [
            f"CHECKPOINT_PATH = {_q(prev.dir)}", f"EVAL_SUITE = {_q(suite)}",
            f"EVAL_OUTPUT_DIR = {_q(out_dir)}"]
        out.append(Stage(cell=cell, id=f"eval_{prev.id}.{suite}", kind="eval", dir=out_dir,
                         gin_files=tuple(files + list(grid.eval_gin_files) + list(cell.gin_files)),
                         bindings=tuple(b), trained=prev.id, end_step=prev.end_step, suite=suite,
                         depends_on=(prev.key,), seed=seed))
      continue
    depends: tuple[str, ...] = ()
    init = None
    if kind == "pretrain":
      steps, start = cell.steps, 0
      lengths, batch = _pretrain_shape(grid, cell)
      task = f"{grid.corpus}_{cell.objective}"
    elif kind == "adapt":
      source = grid.cell(cell.source)
      src_pretrain = os.path.join(cell_dir(grid_dir, source, seed), "pretrain")
      steps, start, init = cell.steps, source.steps, src_pretrain
      lengths, batch = _pretrain_shape(grid, cell)
      task = f"{grid.corpus}_{cell.objective}"
      depends = (_key(source.name, seed, "pretrain"),)
    else:  # mtf
      if prev is None:
        raise GridError(f"cell {cell.name!r}: 'mtf' needs a trained model before it.")
      steps, start, init = grid.mtf_steps, prev.end_step, prev.dir
      lengths, batch = grid.mtf_feature_lengths, grid.mtf_batch_size
      task = grid.mtf_mixture
      depends = (prev.key,)
    files = files + ([OBJECTIVE_GIN.format(cell.objective)] if kind != "mtf" else [])
    files += [RUN_GIN[kind], *cell.gin_files]
    model_dir = os.path.join(base, kind)
    row = row_tokens(cell.arch, lengths)
    b = bindings + (_mtf_bindings(grid) if kind == "mtf" else []) + list(cell.bindings) + [
        f"MODEL_DIR = {_q(model_dir)}", f"MIXTURE_OR_TASK_NAME = {_q(task)}",
        f"TASK_FEATURE_LENGTHS = {_lengths(lengths)}", f"TRAIN_STEPS = {start + steps}",
        f"BATCH_SIZE = {batch}"]
    if init is not None:
      b.append(f"INITIAL_CHECKPOINT_PATH = {_q(init)}")
    if seed is not None:
      b.append(f"RANDOM_SEED = {seed}")
    stage = Stage(cell=cell, id=kind, kind="train", dir=model_dir, gin_files=tuple(files),
                  bindings=tuple(b), trained=kind, end_step=start + steps, steps=steps,
                  examples=steps * batch, tokens=steps * batch * row, batch_size=batch, row=row,
                  task=task, depends_on=depends, seed=seed)
    out.append(stage)
    prev = stage
  return out


def plan(grid: Grid, grid_dir: str) -> list[Stage]:
  """Every stage of the grid, cells in order (adaptation sources first); with seeds, every cell of
  the first seed, then of the next (a first full table comes early)."""
  if grid.unexpanded:
    raise GridError("a scaling grid (sizes set) must be expanded first: grid_scale.expand(grid), "
                    "as grid_spec.load does.")
  return [s for seed in (grid.seeds or (None,)) for cell in grid.cells
          for s in cell_stages(grid, cell, grid_dir, seed)]


def print_commands(stages: Sequence[Stage]) -> str:
  """One launch command per stage, grouped by cell (and seed), as text."""
  lines, cell = [], None
  for s in stages:
    if (s.cell.name, s.seed) != cell:
      cell = (s.cell.name, s.seed)
      lines.append(f"# {s.cell.name}" + (f" (seed {s.seed})" if s.seed is not None else ""))
    after = f"  # after {', '.join(s.depends_on)}" if s.depends_on else ""
    lines.append(f"{s.command()}{after}")
  return "\n".join(lines)
