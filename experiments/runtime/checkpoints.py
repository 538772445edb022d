"""Checkpoints with orbax: MODEL_DIR/checkpoints/<step>/{params, train_state, meta}.

- `params`: the model parameters alone, so evaluation and finetuning read only what they need.
- `train_state`: step, RNG key and optimizer state.
- `meta`: JSON with the step, the data position (batches consumed in this MODEL_DIR), the model's
  description and the task, used for resume and for error messages.

Saves are atomic (orbax writes a temporary directory and renames it once complete; a step
without its commit marker is never listed), asynchronous where orbax allows, every N steps and at
the end, keeping K. A step that already exists is never overwritten.
"""

from __future__ import annotations

import json
import logging
import pathlib
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

CHECKPOINTS_SUBDIR = "checkpoints"
ITEMS = ("params", "train_state", "meta")


class CheckpointError(ValueError):
  """A checkpoint is missing, incomplete or incompatible with the requested model."""


def absolute(path: str | pathlib.Path) -> pathlib.Path:
  """A local path made absolute (orbax refuses relative ones), so `runs/x` works as in t5x."""
  return pathlib.Path(path).expanduser().absolute()


def checkpoints_dir(model_dir: str | pathlib.Path) -> pathlib.Path:
  return absolute(model_dir) / CHECKPOINTS_SUBDIR


def _is_step_dir(path: pathlib.Path) -> bool:
  return path.is_dir() and (path / "params").is_dir() and path.name.isdigit()


def _finalized_steps(directory: pathlib.Path) -> list[int]:
  """Steps with a complete checkpoint; temporary (interrupted) saves are never listed."""
  if not directory.is_dir():
    return []
  mngr = ocp.CheckpointManager(
      directory, options=ocp.CheckpointManagerOptions(read_only=True, create=False),
      item_names=ITEMS)
  try:
    return sorted(int(s) for s in mngr.all_steps())
  finally:
    mngr.close()


def resolve_step_dir(checkpoint_path: str | pathlib.Path) -> pathlib.Path:
  """One step's directory from a MODEL_DIR, its checkpoints dir, or a step dir itself."""
  path = absolute(checkpoint_path)
  if _is_step_dir(path):
    if not _finalized_steps(path.parent) or int(path.name) not in _finalized_steps(path.parent):
      raise CheckpointError(f"Checkpoint {path} is incomplete (an interrupted save).")
    return path
  for directory in (path / CHECKPOINTS_SUBDIR, path):
    steps = _finalized_steps(directory)
    if steps:
      return directory / str(steps[-1])
  raise CheckpointError(
      f"No complete checkpoint under {checkpoint_path} (expected MODEL_DIR, MODEL_DIR/checkpoints "
      f"or MODEL_DIR/checkpoints/<step>).")


def read_meta(step_dir: pathlib.Path) -> dict:
  """The JSON metadata of a step (empty when absent)."""
  for candidate in (step_dir / "meta" / "metadata", step_dir / "meta"):
    if candidate.is_file():
      return json.loads(candidate.read_text())
  return {}


def _path_str(path) -> str:
  return "/".join(str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k)))) for k in path)


def tree_differences(saved: Any, requested: Any, limit: int = 8) -> list[str]:
  """Human-readable differences of names, shapes and dtypes between two trees of arrays."""
  flat_saved = {_path_str(p): x for p, x in jax.tree_util.tree_leaves_with_path(saved)}
  flat_req = {_path_str(p): x for p, x in jax.tree_util.tree_leaves_with_path(requested)}
  diffs = []
  missing = sorted(set(flat_req) - set(flat_saved))
  extra = sorted(set(flat_saved) - set(flat_req))
  if missing:
    diffs.append(f"{len(missing)} parameter(s) absent from the checkpoint, e.g. "
                 + ", ".join(missing[:limit]))
  if extra:
    diffs.append(f"{len(extra)} parameter(s) in the checkpoint the model does not have, e.g. "
                 + ", ".join(extra[:limit]))
  shape_diffs = [
      f"{k}: checkpoint {tuple(flat_saved[k].shape)} vs model {tuple(flat_req[k].shape)}"
      for k in sorted(set(flat_saved) & set(flat_req))
      if tuple(flat_saved[k].shape) != tuple(flat_req[k].shape)
  ]
  if shape_diffs:
    diffs.append(f"{len(shape_diffs)} shape mismatch(es): " + "; ".join(shape_diffs[:limit]))
  return diffs


def _saved_tree(item_dir: pathlib.Path) -> Any:
  absl_logger = logging.getLogger("absl")
  level = absl_logger.level
  absl_logger.setLevel(logging.ERROR)  # orbax warns that per-item step metadata is absent
  try:
    md = ocp.StandardCheckpointer().metadata(item_dir)
  finally:
    absl_logger.setLevel(level)
  md = getattr(md, "item_metadata", md)
  return getattr(md, "tree", md)


def check_compatible(step_dir: pathlib.Path, abstract_params: Any,
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


def restore_params(checkpoint_path: str | pathlib.Path, abstract_params: Any,
                   description: str | None = None) -> Any:
  """Parameters of the latest (or the given) step, shaped and sharded like `abstract_params`.

  `description` (e.g. the model's name and sizes) is added to the error when the shapes differ.
  """
  step_dir = resolve_step_dir(checkpoint_path)
  check_compatible(step_dir, abstract_params, description)
  restored = ocp.StandardCheckpointer().restore(step_dir / "params", _with_sharding(abstract_params))
  return _restructure(restored, abstract_params)


def _restructure(restored: Any, abstract: Any) -> Any:
  """Orbax gives tuples for named tuples (optax states): put the requested structure back."""
  leaves = jax.tree_util.tree_leaves(restored)
  treedef = jax.tree_util.tree_structure(abstract)
  if len(leaves) != treedef.num_leaves:
    raise CheckpointError(
        f"Restored {len(leaves)} arrays where the model expects {treedef.num_leaves}.")
  return jax.tree_util.tree_unflatten(treedef, leaves)


class Checkpointer:
  """Saves and restores the full train state under MODEL_DIR/checkpoints."""

  def __init__(self, model_dir: str | pathlib.Path, keep: int | None = None,
               async_save: bool = True):
    self.directory = checkpoints_dir(model_dir)
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(
            max_to_keep=keep, enable_async_checkpointing=async_save, create=True,
            cleanup_tmp_directories=True),
        item_names=ITEMS)

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def save(self, step: int, params: Any, train_state: Any, meta: dict) -> bool:
    """Starts a save of `step` (returns at once when asynchronous); never overwrites a step."""
    if step in self._manager.all_steps():
      logging.info("Checkpoint for step %d already exists; not overwriting it.", step)
      return False
    return self._manager.save(
        step,
        args=ocp.args.Composite(
            params=ocp.args.StandardSave(params),
            train_state=ocp.args.StandardSave(train_state),
            meta=ocp.args.JsonSave(meta)),
        force=True)

  def restore(self, step: int, abstract_params: Any, abstract_train_state: Any,
              description: str | None = None):
    """(params, train_state, meta) of `step`, checked against the requested shapes first."""
    step_dir = self.directory / str(step)
    check_compatible(step_dir, abstract_params, description)
    diffs = tree_differences(_saved_tree(step_dir / "train_state"), abstract_train_state)
    if diffs:
      raise CheckpointError(
          f"The optimizer state in {step_dir} does not fit the configured optimizer (was it "
          f"written with another optimizer?):\n  - " + "\n  - ".join(diffs))
    restored = self._manager.restore(
        step,
        args=ocp.args.Composite(
            params=ocp.args.StandardRestore(abstract_params),
            train_state=ocp.args.StandardRestore(abstract_train_state),
            meta=ocp.args.JsonRestore()))
    return (_restructure(restored["params"], abstract_params),
            _restructure(restored["train_state"], abstract_train_state),
            dict(restored["meta"] or {}))

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()


def describe_tree(tree: Any) -> dict[str, Any]:
  """Total parameter count and the number of arrays, for logs and metadata."""
  leaves = jax.tree_util.tree_leaves(tree)
  return {"params": int(sum(int(np.prod(x.shape)) for x in leaves)), "arrays": len(leaves)}
