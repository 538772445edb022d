"""Training batches from a seqio task or mixture, per host, resumable at an exact position.

Batches come from `objectives.get_dataset` (deterministic given RANDOM_SEED). Each host reads its
own shard (seqio.ShardInfo(process_index, process_count)) and BATCH_SIZE / process_count rows; the
trainer assembles the global array.

The data position (batches consumed in this MODEL_DIR) is stored in each checkpoint's metadata.
Next to a checkpoint of step s, the tf.data iterator state is written to
MODEL_DIR/data_state/<s>/ (written to a temporary directory, then renamed, so a half-written state
is never used). On resume, that state is restored when present; otherwise the pipeline is replayed
up to the position. Both give exactly the batches an uninterrupted run would have seen.

Before the pipeline is built, `check_corpus_size` counts the corpus's tokens (up to one batch's
worth), so a corpus too small to fill one batch is an error rather than a pipeline that never
yields.
"""

from __future__ import annotations

import importlib
import logging
import os
import shutil
import tempfile
from typing import Mapping

import jax
import numpy as np
import seqio

from experiments.runtime import errors
from experiments.runtime import storage

DATA_STATE_SUBDIR = "data_state"


class CorpusTooSmallError(errors.ConfigError):
  """The corpus holds fewer tokens than one training batch needs."""


def import_task_modules() -> None:
  """Registers the seqio tasks (`objectives`) and the MTF mixtures (`objectives.multitask`)."""
  importlib.import_module("objectives")
  try:
    importlib.import_module("objectives.multitask")
  except ModuleNotFoundError as e:
    if e.name != "objectives.multitask":
      raise


def get_task(name: str):
  """The registered task or mixture, or an error listing what is registered."""
  import_task_modules()
  try:
    return seqio.get_mixture_or_task(name)
  except ValueError as e:
    names = sorted(set(seqio.TaskRegistry.names()) | set(seqio.MixtureRegistry.names()))
    shown = ", ".join(names[:40]) + (" ..." if len(names) > 40 else "")
    raise ValueError(
        f"MIXTURE_OR_TASK_NAME = {name!r} is not a registered seqio task or mixture. "
        f"Registered: {shown}") from e


def check_feature_lengths(task, task_feature_lengths: Mapping[str, int]) -> None:
  """TASK_FEATURE_LENGTHS must cover the task's features, with positive lengths."""
  expected = set(task.output_features)
  given = set(task_feature_lengths)
  if not expected <= given:
    raise ValueError(
        f"TASK_FEATURE_LENGTHS = {dict(task_feature_lengths)} lacks {sorted(expected - given)} "
        f"required by task {task.name!r} (its features: {sorted(expected)}).")
  bad = {k: v for k, v in task_feature_lengths.items()
         if isinstance(v, bool) or not isinstance(v, int) or v < 1}
  if bad:
    raise ValueError(f"TASK_FEATURE_LENGTHS must map features to positive ints, got {bad}.")


def corpus_name(task_name: str) -> str | None:
  """The corpus of a '{corpus}_{objective}' task (None for a mixture)."""
  import objectives  # pylint: disable=g-import-not-at-top
  try:
    return objectives.parse_task_name(task_name)[0]
  except ValueError:
    return None


def count_corpus_tokens(task_name: str, limit: int) -> int:
  """Tokens of the task's 'train' documents, tokenized as before the objective, up to `limit`."""
  task = get_task(task_name)
  ds = task.preprocess_precache(task.source.get_dataset(split="train", shuffle=False), seed=0)
  total = 0
  for example in ds.as_numpy_iterator():
    total += sum(int(np.size(example[k])) for k in task.output_features if k in example)
    if total >= limit:
      break
  return total


def check_corpus_size(task_name: str, raw_length: int, batch_size: int) -> None:
  """A '{corpus}_{objective}' task's corpus holds at least one batch of tokens (one pass)."""
  corpus = corpus_name(task_name)
  if corpus is None:
    return
  needed = int(raw_length) * int(batch_size)
  found = count_corpus_tokens(task_name, needed)
  if found < needed:
    raise CorpusTooSmallError(
        f"Corpus {corpus!r} (task {task_name!r}) yields {found} token(s) in its whole 'train' "
        f"split; one batch needs {needed:,} (BATCH_SIZE {batch_size} x {raw_length} tokens per "
        f"example). Give it more text, or lower BATCH_SIZE or TASK_FEATURE_LENGTHS.")


# On a URI the state is uploaded, then this marker: objects have no atomic folder rename.
COMPLETE_MARKER = "COMPLETE"


def _state_dir(model_dir: str | os.PathLike, step: int) -> storage.Path:
  """This host's iterator state for checkpoint `step` (one directory per host)."""
  return (storage.as_path(model_dir) / DATA_STATE_SUBDIR / str(step)
          / f"host{jax.process_index()}")


def _state_prefix(model_dir: str | os.PathLike, step: int) -> str:
  return str(_state_dir(model_dir, step) / "iterator")


def _state_complete(state_dir: storage.Path) -> bool:
  if storage.is_uri(state_dir):
    return (state_dir / COMPLETE_MARKER).exists()
  return (state_dir / "iterator.index").exists()


class TrainData:
  """This host's batches, with the data position and iterator states kept beside checkpoints."""

  def __init__(self, task_name: str, task_feature_lengths: Mapping[str, int],
               feature_converter: seqio.FeatureConverter, global_batch_size: int, seed: int,
               model_dir: str | os.PathLike, position: int = 0, state_step: int | None = None,
               use_cached: bool = False, save_iterator_state: bool = True):
    import objectives  # pylint: disable=g-import-not-at-top
    hosts = jax.process_count()
    if global_batch_size % hosts:
      raise ValueError(
          f"BATCH_SIZE {global_batch_size} is not divisible by the number of hosts ({hosts}).")
    self.model_dir = storage.as_path(model_dir)
    self.save_iterator_state = save_iterator_state
    shard = seqio.ShardInfo(index=jax.process_index(), num_shards=hosts) if hosts > 1 else None
    prefix = None
    self._local_state = None  # a local copy of a URI's state, which tf.data reads
    if state_step is not None and save_iterator_state:
      state_dir = _state_dir(self.model_dir, state_step)
      if _state_complete(state_dir):
        prefix = str(state_dir / "iterator")
        if storage.is_uri(state_dir):
          self._local_state = tempfile.mkdtemp(prefix="data_state_")
          storage.download_tree(state_dir, self._local_state)
          prefix = os.path.join(self._local_state, "iterator")
    logging.info("Data: %s at position %d (%s).", task_name, position,
                 "restoring the iterator state" if prefix else
                 ("replaying the pipeline" if position else "from the start"))
    self._it = objectives.get_dataset(
        task_name, task_feature_lengths, feature_converter, global_batch_size // hosts, seed,
        shard_info=shard, start_step=position, state_prefix=prefix, use_cached=use_cached)
    self._state_failed = False
    if self._local_state is not None:
      shutil.rmtree(self._local_state, ignore_errors=True)

  @property
  def position(self) -> int:
    return int(self._it.step)

  def __iter__(self):
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    return {k: np.asarray(v, np.int32) for k, v in next(self._it).items()}

  def save_state(self, step: int, keep_steps: list[int] | None = None) -> None:
    """Writes the iterator state for checkpoint `step` atomically; prunes states not in keep.

    tf.data writes it to a local folder: renamed into place locally, uploaded (then its
    COMPLETE_MARKER) to a URI, so every MODEL_DIR goes through the one path layer.
    """
    if not self.save_iterator_state or self._state_failed:
      return
    final = _state_dir(self.model_dir, step)
    uri = storage.is_uri(final)
    if _state_complete(final) if uri else final.exists():
      return
    tmp = (tempfile.mkdtemp(prefix="data_state_") if uri
           else os.fspath(final.with_name(final.name + ".tmp")))
    if not uri:
      shutil.rmtree(tmp, ignore_errors=True)
      os.makedirs(tmp)
    try:
      self._it.save(os.path.join(tmp, "iterator"))
    except Exception as e:  # pylint: disable=broad-except
      # Some pipelines hold state tf.data cannot save; replay is still exact, only slower.
      logging.warning("Cannot save the data iterator state (%s); resume will replay.", e)
      self._state_failed = True
      shutil.rmtree(tmp, ignore_errors=True)
      return
    if uri:
      storage.upload_tree(tmp, final)
      (final / COMPLETE_MARKER).write_text("")
      shutil.rmtree(tmp, ignore_errors=True)
    else:
      os.replace(tmp, final)
    if keep_steps is not None:
      self.prune(keep_steps)

  def prune(self, keep_steps: list[int]) -> None:
    root = self.model_dir / DATA_STATE_SUBDIR
    if not root.is_dir():
      return
    for child in root.iterdir():
      if child.name.isdigit() and int(child.name) not in keep_steps:
        host = child / f"host{jax.process_index()}"
        if host.exists():
          host.rmtree()
        try:
          if not any(child.iterdir()):
            child.rmdir()  # the last host out removes the step's directory
        except OSError:
          pass
