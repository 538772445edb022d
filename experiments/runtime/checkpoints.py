"""Checkpoints with orbax: MODEL_DIR/checkpoints/<step>/{params, train_state, meta}.

- `params`: the model parameters alone, so evaluation and finetuning read only what they need.
- `train_state`: step, RNG key and optimizer state.
- `meta`: JSON with the step, the data position (batches consumed in this MODEL_DIR), the model's
  description and the task, used for resume and for error messages.

MODEL_DIR is a local folder or a gs:// URI (experiments/runtime/storage.py: etils.epath, as
orbax). Saves are atomic (orbax writes a temporary directory and renames it once complete; on
gs:// the commit marker is written last), asynchronous where orbax allows, every N steps, at the
end and every T minutes, keeping the last K plus every keep_period-th. A step that already exists
is never overwritten. A step folder counts only when complete (`step_problem`: the commit marker,
each item's metadata, readable JSON); on resume a step that is incomplete or does not restore is
moved to MODEL_DIR/checkpoints.damaged/ (never deleted) and the newest one that restores is used.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import re
import sys
import time
from typing import Any, Callable

import jax
import numpy as np
import orbax.checkpoint as ocp

from experiments.runtime import errors
from experiments.runtime import storage

CHECKPOINTS_SUBDIR = "checkpoints"
DAMAGED_SUBDIR = "checkpoints.damaged"
ITEMS = ("params", "train_state", "meta")
# What orbax writes last into a step (before renaming it into place), and each item's metadata.
COMMIT_MARKER = "commit_success.txt"
_ITEM_FILES = {"params": "params/_METADATA", "train_state": "train_state/_METADATA",
               "meta": "meta/metadata"}


class CheckpointError(errors.ConfigError):
  """A checkpoint is missing, incomplete, damaged or incompatible with the requested model."""


def absolute(path: str | os.PathLike) -> storage.Path:
  """A local path made absolute (orbax refuses relative ones), so `runs/x` works as in t5x; a
  URI (gs://...) kept as it is (storage.as_path)."""
  return storage.as_path(path)


def checkpoints_dir(model_dir: str | os.PathLike) -> storage.Path:
  return absolute(model_dir) / CHECKPOINTS_SUBDIR


def _is_step_dir(path: storage.Path) -> bool:
  return path.is_dir() and (path / "params").is_dir() and path.name.isdigit()


def step_problem(step_dir: storage.Path, items: tuple[str, ...] = ITEMS) -> str | None:
  """Why `step_dir` is not a complete checkpoint of `items` (None when it is one)."""
  if not step_dir.is_dir():
    return "not a folder"
  if not any(step_dir.iterdir()):
    return "an empty folder"
  if not (step_dir / COMMIT_MARKER).is_file():
    return f"no {COMMIT_MARKER} (an interrupted save)"
  for item in items:
    if not (step_dir / _ITEM_FILES[item]).is_file():
      return f"{_ITEM_FILES[item]} is missing"
  if "meta" in items:
    try:
      json.loads((step_dir / _ITEM_FILES["meta"]).read_text())
    except (OSError, ValueError) as e:
      return f"{_ITEM_FILES['meta']} is not readable JSON ({e})"
  return None


def _step_dirs(directory: storage.Path) -> list[tuple[int, storage.Path]]:
  """(step, folder) of every numeric folder, oldest first; orbax's temporary folders are not."""
  if not directory.is_dir():
    return []
  return sorted((int(p.name), p) for p in directory.iterdir() if p.name.isdigit() and p.is_dir())


def latest_complete_step(directory: storage.Path, items: tuple[str, ...] = ITEMS,
                         log_skipped: bool = False) -> storage.Path | None:
  """The newest step folder under `directory` that `step_problem` accepts, or None."""
  for step, step_dir in reversed(_step_dirs(directory)):
    problem = step_problem(step_dir, items)
    if problem is None:
      return step_dir
    if log_skipped:
      logging.warning("Skipping checkpoint step %d in %s: %s.", step, directory, problem)
  return None


def resolve_step_dir(checkpoint_path: str | storage.Path) -> storage.Path:
  """One step's directory from a MODEL_DIR, its checkpoints dir, or a step dir itself.

  Evaluation needs only the parameters, and so does a step folder given explicitly to be
  complete; from a folder of steps the newest complete one is taken. INITIAL_CHECKPOINT_PATH
  also reads its train_state (restore_train_state).
  """
  path = absolute(checkpoint_path)
  if _is_step_dir(path):
    problem = step_problem(path, ("params",))
    if problem:
      raise CheckpointError(f"Checkpoint {path} is incomplete or damaged: {problem}.")
    return path
  for directory in (path / CHECKPOINTS_SUBDIR, path):
    step_dir = latest_complete_step(directory, ("params",), log_skipped=True)
    if step_dir is not None:
      return step_dir
  raise CheckpointError(
      f"No complete checkpoint under {checkpoint_path} (expected MODEL_DIR, MODEL_DIR/checkpoints "
      f"or MODEL_DIR/checkpoints/<step>).")


def damage(error: BaseException, step_dir: storage.Path) -> str:
  """One line saying what in `step_dir` cannot be read: the item and array when the error (or
  its cause, where tensorstore puts them) names them, with the innermost message."""
  if isinstance(error, DamagedCheckpointError):
    return str(error)
  chain = [error]
  while len(chain) < 8 and (chain[-1].__cause__ or chain[-1].__context__) is not None:
    chain.append(chain[-1].__cause__ or chain[-1].__context__)
  everything = " ".join(str(e) for e in chain)
  item = re.search(re.escape(str(step_dir)) + r"/(params|train_state|meta)\b", everything)
  array = re.search(r'reading "([^"/]+)', everything)
  what = "/".join(x.group(1) for x in (item, array) if x) or "its files"
  text = " ".join(str(chain[-1]).split()).replace(str(step_dir) + "/", "")
  return f"{what} cannot be read: {text[:200]}{'...' if len(text) > 200 else ''}"


def read_meta(step_dir: storage.Path) -> dict:
  """The JSON metadata of a step (empty when absent)."""
  for candidate in (step_dir / "meta" / "metadata", step_dir / "meta"):
    if candidate.is_file():
      return json.loads(candidate.read_text())
  return {}


def _path_str(path) -> str:
  return "/".join(str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k)))) for k in path)


def tree_differences(saved: Any, requested: Any, limit: int = 8,
                     what: str = "parameter") -> list[str]:
  """Human-readable differences of names and shapes between two trees of arrays."""
  flat_saved = {_path_str(p): x for p, x in jax.tree_util.tree_leaves_with_path(saved)}
  flat_req = {_path_str(p): x for p, x in jax.tree_util.tree_leaves_with_path(requested)}
  diffs = []
  missing = sorted(set(flat_req) - set(flat_saved))
  extra = sorted(set(flat_saved) - set(flat_req))
  if missing:
    diffs.append(f"{len(missing)} {what}(s) absent from the checkpoint, e.g. "
                 + ", ".join(missing[:limit]))
  if extra:
    diffs.append(f"{len(extra)} {what}(s) in the checkpoint the model does not have, e.g. "
                 + ", ".join(extra[:limit]))
  shape_diffs = [
      f"{k}: checkpoint {tuple(flat_saved[k].shape)} vs model {tuple(flat_req[k].shape)}"
      for k in sorted(set(flat_saved) & set(flat_req))
      if tuple(flat_saved[k].shape) != tuple(flat_req[k].shape)
  ]
  if shape_diffs:
    diffs.append(f"{len(shape_diffs)} shape mismatch(es): " + "; ".join(shape_diffs[:limit]))
  return diffs


class DamagedCheckpointError(RuntimeError):
  """Part of a step cannot be read (not a mismatch with the model); resume tries an older step."""


def _saved_tree(item_dir: storage.Path) -> Any:
  """Names, shapes and dtypes of an item's arrays, each of those its _METADATA declares.

  Orbax reads each array's metadata from the array store and leaves out, with only a log line,
  arrays whose metadata cannot be read; those would look like a different model.
  """
  absl_logger = logging.getLogger("absl")
  level = absl_logger.level
  absl_logger.setLevel(logging.ERROR)  # orbax warns that per-item step metadata is absent
  try:
    with _quiet_failed_reads():
      md = ocp.StandardCheckpointer().metadata(item_dir)
  finally:
    absl_logger.setLevel(level)
  md = getattr(md, "item_metadata", md)
  tree = getattr(md, "tree", md)
  declared = json.loads((item_dir / "_METADATA").read_text()).get("tree_metadata", {})
  found = {_path_str(p) for p, _ in jax.tree_util.tree_leaves_with_path(tree)}
  lost = sorted(name for name, value_type in (
      ("/".join(str(k["key"]) for k in v["key_metadata"]), v["value_metadata"]["value_type"])
      for v in declared.values()) if value_type != "None" and name not in found)
  if lost:
    raise DamagedCheckpointError(
        f"{item_dir.name}/: the metadata of {len(lost)} array(s) cannot be read, e.g. "
        f"{', '.join(lost[:3])}")
  return tree


def check_compatible(step_dir: storage.Path, abstract_params: Any,
                     description: str | None = None) -> None:
  """Raises CheckpointError naming what differs between a checkpoint's params and the model's."""
  diffs = tree_differences(_saved_tree(step_dir / "params"), abstract_params)
  if diffs:
    meta = read_meta(step_dir)
    written_by = meta.get("model")
    hint = f"\nThe checkpoint was written by: {written_by}" if written_by else ""
    if description:
      hint += f"\nThe configured model: {description}"
    raise CheckpointError(
        f"Checkpoint {step_dir} does not fit the configured model (a different architecture or "
        f"size?):\n  - " + "\n  - ".join(diffs) + hint)


def _with_sharding(abstract: Any) -> Any:
  """Gives abstract leaves without a sharding the default device's, so orbax can place them."""
  device = jax.local_devices()[0]

  def fill(x):
    sharding = getattr(x, "sharding", None)
    if sharding is None:
      sharding = jax.sharding.SingleDeviceSharding(device)
    return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding)

  return jax.tree_util.tree_map(fill, abstract)


def restore_params(checkpoint_path: str | storage.Path, abstract_params: Any,
                   description: str | None = None, convert: Callable | None = None) -> Any:
  """Parameters of the latest (or the given) step, shaped and sharded like `abstract_params`.

  `description` (e.g. the model's name and sizes) is added to the error when the shapes differ.
  `convert(saved tree, abstract_params)` (arch/layouts.py `plan`, which this package below arch
  cannot import) may map another layer layout: it returns None (no conversion), the tree to read
  in the checkpoint's layout with the function turning it into the model's, or raises
  CheckpointError saying what differs.
  """
  step_dir = resolve_step_dir(checkpoint_path)
  try:
    target, to_model = abstract_params, None
    if convert is not None:
      try:
        planned = convert(_saved_tree(step_dir / "params"), abstract_params)
      except CheckpointError as e:
        raise CheckpointError(f"Checkpoint {step_dir} has another layer layout: {e}") from None
      if planned is not None:
        target, to_model = planned
        logging.info("Converting the layer layout of %s while restoring.", step_dir)
    check_compatible(step_dir, target, description)
    restored = ocp.StandardCheckpointer().restore(step_dir / "params", _with_sharding(target))
  except CheckpointError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    raise CheckpointError(f"Checkpoint {step_dir} is damaged: {damage(e, step_dir)}.") from e
  restored = _restructure(restored, target)
  return restored if to_model is None else _restructure(to_model(restored), abstract_params)


FRESH_OPTIMIZER_BINDING = "experiments.train.train.restore_optimizer_state = False"


def restore_train_state(checkpoint_path: str | storage.Path, abstract_train_state: Any) -> Any:
  """The `train_state` item (step, rng, opt_state) of a step, shaped and sharded as requested.

  For INITIAL_CHECKPOINT_PATH (t5x's finetuning restores the whole train state). A checkpoint
  whose optimizer state does not fit the configured optimizer raises CheckpointError naming the
  differences and FRESH_OPTIMIZER_BINDING, before anything compiles.
  """
  step_dir = resolve_step_dir(checkpoint_path)
  problem = step_problem(step_dir, ("params", "train_state"))
  if problem:
    raise CheckpointError(f"Checkpoint {step_dir} has no complete optimizer state ({problem}); "
                          f"to start from its parameters with a fresh optimizer state, set "
                          f"{FRESH_OPTIMIZER_BINDING}.")
  try:
    diffs = tree_differences(_saved_tree(step_dir / "train_state"), abstract_train_state,
                             what="optimizer array")
    if diffs:
      raise CheckpointError(
          f"The optimizer state in {step_dir} does not fit the configured optimizer (another "
          f"optimizer, or Adafactor with another factoring: experiments.optimizers.adafactor."
          f"factoring / factor_rules?):\n  - " + "\n  - ".join(diffs)
          + f"\nTo start from its parameters with a fresh optimizer state, set "
          f"{FRESH_OPTIMIZER_BINDING}.")
    with _quiet_failed_reads():
      restored = ocp.StandardCheckpointer().restore(step_dir / "train_state",
                                                    _with_sharding(abstract_train_state))
  except CheckpointError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    raise CheckpointError(f"Checkpoint {step_dir} is damaged: {damage(e, step_dir)}.") from e
  return _restructure(restored, abstract_train_state)


def _restructure(restored: Any, abstract: Any) -> Any:
  """Orbax gives tuples for named tuples (optax states): put the requested structure back."""
  leaves = jax.tree_util.tree_leaves(restored)
  treedef = jax.tree_util.tree_structure(abstract)
  if len(leaves) != treedef.num_leaves:
    raise CheckpointError(
        f"Restored {len(leaves)} arrays where the model expects {treedef.num_leaves}.")
  return jax.tree_util.tree_unflatten(treedef, leaves)


def keep_policy(keep: int | None, keep_period: int | None):
  """Orbax's preservation policy: the last `keep` steps (None: all) plus every step divisible by
  `keep_period` (permanent; None: none)."""
  latest = ocp.checkpoint_managers.LatestN(n=keep)
  if keep is None or keep_period is None:
    return latest
  return ocp.checkpoint_managers.AnyPreservationPolicy(
      [latest, ocp.checkpoint_managers.EveryNSteps(interval_steps=keep_period)])


def checkpoint_bytes(abstract_params: Any, abstract_train_state: Any) -> int:
  """Bytes of one step's arrays before compression (parameters + step, RNG, optimizer state)."""
  leaves = jax.tree_util.tree_leaves((abstract_params, abstract_train_state))
  return int(sum(int(np.prod(x.shape)) * np.dtype(x.dtype).itemsize for x in leaves))


class Checkpointer:
  """Saves and restores the full train state under MODEL_DIR/checkpoints.

  Keeps the last `keep` steps (None: every step) and, beyond them, every step divisible by
  `keep_period` for good. `save_minutes` makes `time_due` true once that many minutes have
  passed since the last save began (or since start-up), for long runs whose step period is hours.
  """

  def __init__(self, model_dir: str | storage.Path, keep: int | None = None,
               async_save: bool = True, keep_period: int | None = None,
               save_minutes: float | None = None, time_check_period: int = 1):
    self.directory = checkpoints_dir(model_dir)
    self.save_minutes = save_minutes
    self.time_check_period = time_check_period
    self._last_save = time.monotonic()
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(
            preservation_policy=keep_policy(keep, keep_period),
            enable_async_checkpointing=async_save, create=True, cleanup_tmp_directories=True),
        item_names=ITEMS)

  def time_due(self, step: int) -> bool:
    """True when save_minutes have passed since the last save. On several hosts process 0
    decides for all (every process must join the same collective save), at steps divisible by
    time_check_period only: the broadcast waits for the step, as the loop's logging does."""
    if self.save_minutes is None:
      return False
    several = jax.process_count() > 1
    if several and step % self.time_check_period:
      return False
    due = time.monotonic() - self._last_save >= 60.0 * self.save_minutes
    if several:
      from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
      due = bool(multihost_utils.broadcast_one_to_all(np.asarray(due)))
    return due

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def save(self, step: int, params: Any, train_state: Any, meta: dict) -> bool:
    """Starts a save of `step` (returns at once when asynchronous); never overwrites a step."""
    if step in self._manager.all_steps():
      logging.info("Checkpoint for step %d already exists; not overwriting it.", step)
      return False
    self._last_save = time.monotonic()
    return self._manager.save(
        step,
        args=ocp.args.Composite(
            params=ocp.args.StandardSave(params),
            train_state=ocp.args.StandardSave(train_state),
            meta=ocp.args.JsonSave(meta)),
        force=True)

  def restore_latest(self, abstract_params: Any, abstract_train_state: Any,
                     description: str | None = None):
    """(step, params, train_state, meta) of the newest step that restores, or None if none.

    Newer steps that are incomplete or cannot be read are moved to DAMAGED_SUBDIR, one log line
    each, once an older step has restored. With no step left: incomplete ones are moved and the
    run starts afresh, but if some step was complete and unreadable, CheckpointError names each
    and nothing moves. A model that does not fit raises CheckpointError at once: that is the
    configuration's fault, not the checkpoint's.
    """
    unusable, unreadable = [], []
    for step, step_dir in reversed(_step_dirs(self.directory)):
      problem = step_problem(step_dir)
      if problem is not None:
        unusable.append((step, problem))
        continue
      try:
        with _quiet_failed_reads():
          restored = self._restore(step, step_dir, abstract_params, abstract_train_state,
                                   description)
      except CheckpointError:
        raise
      except Exception as e:  # pylint: disable=broad-except  # tensorstore and orbax raise many
        unreadable.append((step, damage(e, step_dir)))
        continue
      self._set_aside(unusable + unreadable, step)
      return (step, *restored)
    if unreadable:
      raise CheckpointError(
          f"No checkpoint in {self.directory} can be read; nothing was moved or deleted: "
          + "; ".join(f"step {s}: {why}" for s, why in unreadable) + ".")
    self._set_aside(unusable, None)
    return None

  def _restore(self, step, step_dir, abstract_params, abstract_train_state, description):
    check_compatible(step_dir, abstract_params, description)
    diffs = tree_differences(_saved_tree(step_dir / "train_state"), abstract_train_state)
    if diffs:
      raise CheckpointError(
          f"The optimizer state in {step_dir} does not fit the configured optimizer (was it "
          f"written with another optimizer, or Adafactor with another experiments.optimizers."
          f"adafactor.factoring?):\n  - " + "\n  - ".join(diffs))
    restored = self._manager.restore(
        step,
        args=ocp.args.Composite(
            params=ocp.args.StandardRestore(abstract_params),
            train_state=ocp.args.StandardRestore(abstract_train_state),
            meta=ocp.args.JsonRestore()))
    return (_restructure(restored["params"], abstract_params),
            _restructure(restored["train_state"], abstract_train_state),
            dict(restored["meta"] or {}))

  def _set_aside(self, steps: list[tuple[int, str]], resumed: int | None) -> None:
    """Moves unusable steps out of the way (a later save of the same step must not collide)."""
    if not steps or jax.process_index() != 0:
      return
    aside = self.directory.parent / DAMAGED_SUBDIR
    aside.mkdir(exist_ok=True)
    for step, why in steps:
      target, n = aside / str(step), 1
      while target.exists():
        target, n = aside / f"{step}.{n}", n + 1
      (self.directory / str(step)).rename(target)
      logging.warning("Skipped checkpoint step %d (%s); moved it to %s; %s.", step, why, target,
                      f"resuming from step {resumed}" if resumed is not None
                      else "no earlier step, starting afresh")
    self._manager.reload()

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()


@contextlib.contextmanager
def _quiet_failed_reads():
  """Silences what a failed orbax read leaves behind; the failure is reported in one line.

  Its other reads fail too and are never awaited ('Exception ignored' and 'Task exception was
  never retrieved' tracebacks), and tensorstore still completes them afterwards on its own threads
  into orbax's closed event loop ('Event loop is closed'): from the first failure on, that one
  error is dropped for the rest of the process.
  """
  previous = sys.unraisablehook
  sys.unraisablehook = lambda unraisable: None
  asyncio_logger = logging.getLogger("asyncio")
  level = asyncio_logger.level
  asyncio_logger.setLevel(logging.CRITICAL)
  failed = False
  try:
    yield
  except Exception:
    failed = True
    raise
  finally:
    gc.collect()  # while silenced: the abandoned reads are collected here
    sys.unraisablehook = _without_closed_loop_errors(previous) if failed else previous
    asyncio_logger.setLevel(level)


def _without_closed_loop_errors(hook):
  if getattr(hook, "drops_closed_loop_errors", False):
    return hook

  def filtered(unraisable):
    if not (unraisable.exc_type is RuntimeError
            and str(unraisable.exc_value) == "Event loop is closed"):
      hook(unraisable)

  filtered.drops_closed_loop_errors = True
  return filtered


def describe_tree(tree: Any) -> dict[str, Any]:
  """Total parameter count and the number of arrays, for logs and metadata."""
  leaves = jax.tree_util.tree_leaves(tree)
  return {"params": int(sum(int(np.prod(x.shape)) for x in leaves)), "arrays": len(leaves)}
