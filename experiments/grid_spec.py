"""The definition of an ablation grid: cells x stages, bound by a gin file of gin_configs/grids/.

A grid file binds `experiments.grid_spec.grid_definition` (see gin_configs/grids/wang2022.gin):
the gin files every stage shares, the steps of each kind of stage, the suites, and the cells.
A cell is a dict:

  {'name': 'ND:MLM', 'arch': 'non_causal_decoder', 'objective': 'span_corruption'}
  {'name': 'CD:FLM->ND:MLM', 'arch': 'non_causal_decoder', 'objective': 'span_corruption',
   'source': 'CD:FLM', 'steps': 39936}              # adaptation from CD:FLM's pretrained weights

with optional keys 'stages' (default pretrain, eval, mtf, eval; adapt, eval, mtf, eval for a cell
with a source), 'steps' (pretrain / adapt steps of this cell), 'batch_size' and 'feature_lengths'
(of this cell's pretrain / adapt stage, instead of the grid's entry for its objective: the paper's
ND:PLM reads 2048 rows of 626 where ED:PLM reads 1024 pairs), 'gin_files' and 'bindings' (extra
gin for every stage of the cell). Everything is checked here, before any training: an unknown
arch, objective or stage, an adaptation whose source cell is missing, a malformed stage chain.

`seeds = [0, 1, 2]` runs every cell once per seed (model init, dropout and data order: RANDOM_SEED),
each in its own folders; unset, each cell runs once with the stack's RANDOM_SEED, as before seeds
existed. `mtf_eval_period` is the in-loop validation period of the MTF stages (default None: off,
since a P3 folder commonly lacks a validation split for some templates).

`sizes` (names of gin_configs/sizes/ or dicts, parse_size) and `tokens_per_param` (or each size's
'steps') make a scaling grid: `load` expands every cell over them (experiments/grid_scale.py),
and a pretraining cell's 'steps' is then set by the point's budget.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pathlib
import re
from typing import Any, Mapping, Sequence

import gin

from arch import registry as arch_registry
from objectives import registry as objective_registry
from experiments.runtime import errors
from experiments.runtime import gin_utils

TRAIN_STAGES = ("pretrain", "adapt", "mtf")
STAGES = TRAIN_STAGES + ("eval",)
CELL_KEYS = ("name", "arch", "objective", "source", "stages", "steps", "batch_size",
             "feature_lengths", "gin_files", "bindings")
# Cell keys left out of the grid's definition when unset, so that grids written without them keep
# their fingerprint (base, size and budget are set only by a scaling grid's expansion).
_OPTIONAL_CELL_KEYS = ("batch_size", "feature_lengths", "base", "size", "budget")
# What a post-training evaluation is called in results: after pretrain or adapt it is zero-shot.
PHASE = {"pretrain": "zero_shot", "adapt": "zero_shot", "mtf": "post_mtf"}


# Settings added after grids were run, with the default that leaves a grid as it was: at that
# default they are left out of the definition, so an existing GRID_DIR keeps its fingerprint.
_ADDED_SETTINGS = {"seeds": None, "mtf_eval_period": None, "sizes": None,
                   "tokens_per_param": None}


class GridError(errors.ConfigError):
  """A grid definition or GRID_DIR that cannot be run; raised before any training."""


@dataclasses.dataclass(frozen=True)
class Size:
  """A model size of a scaling grid: gin files (gin_configs/sizes/) and/or inline bindings."""

  name: str
  gin_files: tuple[str, ...] = ()
  bindings: tuple[str, ...] = ()
  steps: int | None = None  # pretraining steps at this size when the grid has no tokens_per_param


SIZE_GIN = "gin_configs/sizes/{}.gin"
SIZE_KEYS = ("name", "gin_files", "bindings", "steps")


def parse_size(i: int, raw: Any) -> Size:
  """One entry of `sizes`: 'small' (gin_configs/sizes/small.gin) or a dict with SIZE_KEYS."""
  where = f"experiments.grid_spec.grid_definition.sizes[{i}]"
  if isinstance(raw, str):
    raw = {"name": raw, "gin_files": [SIZE_GIN.format(raw)]}
  if not isinstance(raw, Mapping):
    raise GridError(f"{where}: expected a size name of gin_configs/sizes/ ('small') or a dict with "
                    f"keys {', '.join(SIZE_KEYS)}, got {raw!r}.")
  unknown = sorted(set(raw) - set(SIZE_KEYS))
  if unknown:
    raise GridError(f"{where}: unknown key(s) {unknown}; valid keys: {', '.join(SIZE_KEYS)}.")
  name = raw.get("name")
  if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
    raise GridError(f"{where}: 'name' must be a short name of letters, digits, '_', '.', '-' (it "
                    f"names the cells' folders), got {name!r}.")
  files, bindings = raw.get("gin_files", ()), raw.get("bindings", ())
  for key, value in (("gin_files", files), ("bindings", bindings)):
    if isinstance(value, str) or not all(isinstance(x, str) for x in value):
      raise GridError(f"{where}: {key!r} must be a list of strings, got {value!r}.")
  for f in files:
    if not (gin_utils.REPO_ROOT / f).is_file() and not pathlib.Path(f).is_file():
      known = sorted(p.stem for p in (gin_utils.REPO_ROOT / "gin_configs" / "sizes").glob("*.gin"))
      raise GridError(f"{where}: gin file {f!r} not found (sizes in gin_configs/sizes/: "
                      f"{', '.join(known)}).")
  if not files and not bindings:
    raise GridError(f"{where}: a size needs 'gin_files' or 'bindings' (emb_dim, layers, ...).")
  steps = raw.get("steps")
  if steps is not None:
    steps = _int(steps, f"{where}: 'steps'")
  return Size(name=name, gin_files=tuple(files), bindings=tuple(bindings), steps=steps)


def _sizes(sizes: Any, tokens_per_param: Any) -> tuple[tuple[Size, ...] | None,
                                                       tuple[float, ...] | None]:
  prefix = "experiments.grid_spec.grid_definition"
  if sizes is None:
    if tokens_per_param is not None:
      raise GridError(f"{prefix}.tokens_per_param needs {prefix}.sizes (the model sizes it "
                      "multiplies).")
    return None, None
  if isinstance(sizes, str) or not isinstance(sizes, Sequence) or not sizes:
    raise GridError(f"{prefix}.sizes must be a non-empty list of sizes, got {sizes!r}.")
  parsed = tuple(parse_size(i, s) for i, s in enumerate(sizes))
  names = [s.name for s in parsed]
  if len(set(names)) != len(names):
    raise GridError(f"{prefix}.sizes: size names must be unique, got {names}.")
  if tokens_per_param is None:
    return parsed, None
  ok = (isinstance(tokens_per_param, Sequence) and not isinstance(tokens_per_param, str)
        and tokens_per_param and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                     and x > 0 for x in tokens_per_param))
  if not ok or len(set(tokens_per_param)) != len(tokens_per_param):
    raise GridError(f"{prefix}.tokens_per_param must be a non-empty list of distinct positive "
                    f"numbers (training tokens per non-embedding parameter, e.g. [20]), got "
                    f"{tokens_per_param!r}.")
  with_steps = [s.name for s in parsed if s.steps is not None]
  if with_steps:
    raise GridError(f"{prefix}.sizes {with_steps} set 'steps' and the grid sets tokens_per_param: "
                    "give the budget one way.")
  return parsed, tuple(float(x) for x in tokens_per_param)


@dataclasses.dataclass(frozen=True)
class Cell:
  """One (architecture, objective) configuration and the stages it runs."""

  name: str
  arch: str
  objective: str
  stages: tuple[str, ...]
  steps: int
  source: str | None = None
  gin_files: tuple[str, ...] = ()
  bindings: tuple[str, ...] = ()
  batch_size: int | None = None  # pretrain / adapt batch; None: the grid's, by objective
  feature_lengths: Mapping[str, int] | None = None  # likewise TASK_FEATURE_LENGTHS
  # A scaling grid's point (experiments/grid_scale.py): the cell of the grid file this one expands,
  # the model size and the token budget ('20tpp' or '400steps').
  base: str | None = None
  size: str | None = None
  budget: str | None = None

  @property
  def slug(self) -> str:
    """A folder name: 'CD:FLM->ND:MLM' -> 'cd_flm-nd_mlm'."""
    return "-".join(re.sub(r"[^a-z0-9]+", "_", part.lower()).strip("_")
                    for part in self.name.split("->"))


@dataclasses.dataclass(frozen=True)
class Grid:
  """A validated grid: shared settings plus cells in an order where sources come first."""

  name: str
  cells: tuple[Cell, ...]
  gin_files: tuple[str, ...]
  bindings: tuple[str, ...]
  corpus: str
  batch_size: Mapping[str, int]  # by objective
  pretrain_steps: int
  mtf_steps: int
  mtf_mixture: str
  feature_lengths: Mapping[str, Mapping[str, int]]
  mtf_feature_lengths: Mapping[str, int]
  mtf_batch_size: int
  suites: tuple[str, ...]
  eval_gin_files: tuple[str, ...] = ()
  local_data_dir: str | None = None
  mtf_bindings: tuple[str, ...] = ()
  eval_bindings: tuple[str, ...] = ()
  seeds: tuple[int, ...] | None = None
  mtf_eval_period: int | None = None
  sizes: tuple[Size, ...] | None = None  # a scaling grid's model sizes (grid_scale.expand)
  tokens_per_param: tuple[float, ...] | None = None  # its token budgets, else per-size steps

  @property
  def unexpanded(self) -> bool:
    """A scaling grid whose cells are not yet expanded over sizes and budgets."""
    return bool(self.sizes) and any(c.size is None for c in self.cells)

  def cell(self, name: str) -> Cell:
    return {c.name: c for c in self.cells}[name]

  def definition(self) -> dict[str, Any]:
    """A JSON-able description of everything that decides the grid's results."""
    d = dataclasses.asdict(self)
    d["cells"] = [{k: v for k, v in dataclasses.asdict(c).items()
                   if not (k in _OPTIONAL_CELL_KEYS and v is None)} for c in self.cells]
    for key, default in _ADDED_SETTINGS.items():
      if d.get(key) == default:  # unset: the fingerprint of a grid made before the setting existed
        del d[key]
    return json.loads(json.dumps(d, sort_keys=True))

  def fingerprint(self) -> str:
    """The hash of the definition, seeds left out: each seed's runs are independent, so a GRID_DIR
    takes more seeds (or fewer) and keeps the runs of the seeds it has."""
    d = {k: v for k, v in self.definition().items() if k != "seeds"}
    text = json.dumps(d, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _where(i: int, cell: Any) -> str:
  name = cell.get("name") if isinstance(cell, Mapping) else None
  return f"experiments.grid_spec.grid_definition.cells[{i}]" + (f" ({name!r})" if name else "")


def _int(value: Any, what: str) -> int:
  if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
    raise GridError(f"{what} must be a positive integer, got {value!r}.")
  return value


def _seeds(seeds: Any, what: str) -> tuple[int, ...] | None:
  """None, or a non-empty list of distinct non-negative integers."""
  if seeds is None:
    return None
  ok = (isinstance(seeds, Sequence) and not isinstance(seeds, str) and len(seeds) > 0
        and all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in seeds))
  if not ok or len(set(seeds)) != len(seeds):
    raise GridError(f"{what} must be a non-empty list of distinct non-negative integers (the "
                    f"RANDOM_SEED of each run of every cell, e.g. [0, 1, 2]), got {seeds!r}.")
  return tuple(seeds)


def _check_stages(stages: Sequence[str], has_source: bool, where: str) -> tuple[str, ...]:
  stages = tuple(stages)
  unknown = [s for s in stages if s not in STAGES]
  if unknown:
    raise GridError(f"{where}: unknown stage(s) {unknown}; valid stages: {', '.join(STAGES)}.")
  first = "adapt" if has_source else "pretrain"
  if not stages or stages[0] != first:
    raise GridError(f"{where}: stages must start with {first!r} (a cell "
                    f"{'with' if has_source else 'without'} a 'source'), got {list(stages)}.")
  for i, s in enumerate(stages[1:], start=1):
    if s in ("pretrain", "adapt"):
      raise GridError(f"{where}: {s!r} may only be the first stage, found at position {i}.")
    if s == "eval" and stages[i - 1] == "eval":
      raise GridError(f"{where}: two 'eval' stages in a row; an eval follows a training stage.")
  return stages


def parse_cell(i: int, raw: Any, default_steps: int) -> Cell:
  """One cell dict of the grid file -> Cell, or a GridError naming the cell and the key."""
  where = _where(i, raw)
  if not isinstance(raw, Mapping):
    raise GridError(f"{where}: expected a dict with keys name, arch, objective, got {raw!r}.")
  unknown = sorted(set(raw) - set(CELL_KEYS))
  if unknown:
    raise GridError(f"{where}: unknown key(s) {unknown}; valid keys: {', '.join(CELL_KEYS)}.")
  for key in ("name", "arch", "objective"):
    if not isinstance(raw.get(key), str) or not raw.get(key):
      raise GridError(f"{where}: missing or empty {key!r} (a string).")
  try:
    arch = arch_registry.get(raw["arch"])
    objective = objective_registry.get(raw["objective"])
  except ValueError as e:
    raise GridError(f"{where}: {e}") from None
  if not objective.defined_on(arch):
    fits = [o for o in objective_registry.names() if objective_registry.get(o).defined_on(arch)]
    raise GridError(f"{where}: objective {objective.name} is undefined on architecture "
                    f"{arch.name}; objectives defined on it: {', '.join(fits)}.")
  source = raw.get("source")
  if source is not None and not isinstance(source, str):
    raise GridError(f"{where}: 'source' must be the name of another cell, got {source!r}.")
  default_stages = ("adapt" if source else "pretrain", "eval", "mtf", "eval")
  stages = _check_stages(raw.get("stages", default_stages), bool(source), where)
  if source and "steps" not in raw:
    raise GridError(f"{where}: an adaptation cell needs 'steps' (its adaptation steps, added to "
                    f"the source's pretraining steps).")
  steps = _int(raw.get("steps", default_steps), f"{where}: 'steps'")
  batch = raw.get("batch_size")
  if batch is not None:
    batch = _int(batch, f"{where}: 'batch_size'")
  lengths = raw.get("feature_lengths")
  if lengths is not None:
    lengths = _feature_lengths(lengths, f"{where}: 'feature_lengths'")
  files, bindings = raw.get("gin_files", ()), raw.get("bindings", ())
  for key, value in (("gin_files", files), ("bindings", bindings)):
    if isinstance(value, str) or not all(isinstance(x, str) for x in value):
      raise GridError(f"{where}: {key!r} must be a list of strings, got {value!r}.")
  return Cell(name=raw["name"], arch=raw["arch"], objective=raw["objective"], stages=stages,
              steps=steps, source=source, gin_files=tuple(files), bindings=tuple(bindings),
              batch_size=batch, feature_lengths=lengths)


def _feature_lengths(value: Any, what: str) -> dict[str, int]:
  """A TASK_FEATURE_LENGTHS dict: 'targets' and any other keys, each a positive integer."""
  if not isinstance(value, Mapping) or "targets" not in value:
    raise GridError(f"{what} must be a dict with 'targets', like {{'inputs': 512, 'targets': "
                    f"114}}, got {value!r}.")
  return {k: _int(v, f"{what}[{k!r}]") for k, v in value.items()}


def order_cells(cells: list[Cell]) -> tuple[Cell, ...]:
  """Cells with every source before the cells adapted from it; sources must exist and be acyclic."""
  by_name = {}
  for c in cells:
    if c.name in by_name:
      raise GridError(f"Two cells are named {c.name!r}; cell names must be unique.")
    by_name[c.name] = c
  slugs = {}
  for c in cells:
    if c.slug in slugs:
      raise GridError(f"Cells {slugs[c.slug]!r} and {c.name!r} map to the same folder {c.slug!r}.")
    slugs[c.slug] = c.name
  for c in cells:
    if c.source is None:
      continue
    if c.source not in by_name:
      raise GridError(f"Adaptation cell {c.name!r} names source cell {c.source!r}, which is not in "
                      f"the grid; cells: {', '.join(by_name)}.")
    if by_name[c.source].stages[0] != "pretrain":
      raise GridError(f"Adaptation cell {c.name!r}: its source {c.source!r} must be a pretraining "
                      "cell (adapting an adapted model is not supported).")
  out = [c for c in cells if c.source is None] + [c for c in cells if c.source is not None]
  return tuple(out)


@gin.configurable(module="experiments.grid_spec")
def grid_definition(
    name: str = gin.REQUIRED,
    cells: Sequence[Mapping[str, Any]] = gin.REQUIRED,
    gin_files: Sequence[str] = (),
    bindings: Sequence[str] = (),
    corpus: str = "embedded",
    batch_size: int | Mapping[str, int] = gin.REQUIRED,
    pretrain_steps: int = gin.REQUIRED,
    mtf_steps: int = gin.REQUIRED,
    mtf_mixture: str = "embedded_mtf",
    feature_lengths: Mapping[str, Mapping[str, int]] = gin.REQUIRED,
    mtf_feature_lengths: Mapping[str, int] = gin.REQUIRED,
    mtf_batch_size: int | None = None,
    suites: Sequence[str] = ("embedded",),
    eval_gin_files: Sequence[str] = (),
    local_data_dir: str | None = None,
    mtf_bindings: Sequence[str] = (),
    eval_bindings: Sequence[str] = (),
    seeds: Sequence[int] | None = None,
    mtf_eval_period: int | None = None,
    sizes: Sequence[str | Mapping[str, Any]] | None = None,
    tokens_per_param: Sequence[float] | None = None,
) -> Grid:
  """Builds and validates a Grid from the bindings of a gin_configs/grids/ file."""
  prefix = "experiments.grid_spec.grid_definition"
  if not isinstance(cells, Sequence) or isinstance(cells, str) or not cells:
    raise GridError(f"{prefix}.cells must be a non-empty list of cell dicts.")
  pretrain_steps = _int(pretrain_steps, f"{prefix}.pretrain_steps")
  parsed = [parse_cell(i, c, pretrain_steps) for i, c in enumerate(cells)]
  parsed_sizes, tpp = _sizes(sizes, tokens_per_param)
  lengths = {}
  # Only objectives some cell reads from the grid's entries need them (a cell may set its own).
  needed = sorted({c.objective for c in parsed if c.feature_lengths is None})
  for objective in needed:
    fl = (feature_lengths or {}).get(objective)
    if not isinstance(fl, Mapping) or "targets" not in fl:
      raise GridError(f"{prefix}.feature_lengths has no entry for objective {objective!r} (a dict "
                      f"like {{'inputs': 512, 'targets': 114}}); it has {sorted(feature_lengths)}.")
    lengths[objective] = _feature_lengths(fl, f"{prefix}.feature_lengths[{objective!r}]")
  batches = {}
  for objective in sorted({c.objective for c in parsed if c.batch_size is None}):
    b = batch_size.get(objective) if isinstance(batch_size, Mapping) else batch_size
    batches[objective] = _int(b, f"{prefix}.batch_size[{objective!r}]" if isinstance(
        batch_size, Mapping) else f"{prefix}.batch_size")
  if mtf_batch_size is None:
    raise GridError(f"{prefix}.mtf_batch_size is required (the MTF batch; see "
                    "gin_configs/runs/finetune.gin for the paper's 1024 vs 2048).")
  if not isinstance(mtf_feature_lengths, Mapping) or set(mtf_feature_lengths) != {"inputs",
                                                                                    "targets"}:
    raise GridError(f"{prefix}.mtf_feature_lengths must be {{'inputs': N, 'targets': M}}, got "
                    f"{mtf_feature_lengths!r}.")
  if isinstance(suites, str) or not suites:
    raise GridError(f"{prefix}.suites must be a non-empty list of suite names, got {suites!r}.")
  return Grid(
      name=name, cells=order_cells(parsed), gin_files=tuple(gin_files), bindings=tuple(bindings),
      corpus=corpus, batch_size=batches,
      pretrain_steps=pretrain_steps, mtf_steps=_int(mtf_steps, f"{prefix}.mtf_steps"),
      mtf_mixture=mtf_mixture, feature_lengths=lengths,
      mtf_feature_lengths={k: _int(v, f"{prefix}.mtf_feature_lengths[{k!r}]")
                           for k, v in mtf_feature_lengths.items()},
      mtf_batch_size=_int(mtf_batch_size, f"{prefix}.mtf_batch_size"),
      suites=tuple(suites), eval_gin_files=tuple(eval_gin_files), local_data_dir=local_data_dir,
      mtf_bindings=tuple(mtf_bindings), eval_bindings=tuple(eval_bindings),
      seeds=_seeds(seeds, f"{prefix}.seeds"),
      mtf_eval_period=None if mtf_eval_period is None else _int(
          mtf_eval_period, f"{prefix}.mtf_eval_period"),
      sizes=parsed_sizes, tokens_per_param=tpp)


def load(grid_files: Sequence[str], bindings: Sequence[str] = ()) -> tuple[Grid, str | None]:
  """Parses grid gin files (+ overrides) -> (Grid, GRID_DIR macro or None)."""
  gin_utils.parse_gin(grid_files, bindings, finalize=False, read_macros=("GRID_DIR",))
  try:
    grid = grid_definition()
  except GridError:
    raise
  except (TypeError, ValueError, RuntimeError) as e:  # gin.REQUIRED left unbound and similar.
    raise GridError(f"{', '.join(grid_files)}: {e} (bind them as "
                    f"experiments.grid_spec.grid_definition.<name> = ...).") from e
  grid_dir = gin_utils.query_macro("GRID_DIR")
  if grid.sizes:
    from experiments import grid_scale  # pylint: disable=g-import-not-at-top
    grid = grid_scale.expand(grid)  # parses each size's gin for its parameter count
  return grid, grid_dir
