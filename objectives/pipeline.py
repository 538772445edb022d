"""The trainer's data entry point: converted, packed, batched numpy batches that can resume.

Determinism: the batches are a function of (task, feature lengths, converter, batch size, seed,
shard): the sources shuffle documents with `seed`, and every random preprocessing step draws its
seed from seqio's sequence started at `seed`. Two runs with the same arguments yield identical
batches.

Resuming (two ways, both exact):
  1. Iterator state (preferred, no replay): `it.save(prefix)` next to a model checkpoint writes the
     tf.data iterator state (shuffle buffers, positions, RNG state; about 7 MB for the embedded corpus
     at the paper's lengths, mostly the document and example shuffle buffers); `get_dataset(..., state_prefix=prefix)` restores it and continues with the next batch.
  2. Fast-forward: without a saved state, `start_step=k` skips k batches. This replays the input
     pipeline (tokenize, corrupt, pack) for those k batches but not the model; at the pipeline's
     measured rate (benchmarks/data_throughput.py) that is about k x batch tokens / rate seconds.
Multi-host: pass seqio.ShardInfo(index=host, num_shards=hosts); each host reads its own share of
documents and `batch_size` is the per-host batch.
"""

from __future__ import annotations

import os
from typing import Iterator, Mapping, Optional

import numpy as np
import seqio
import tensorflow as tf

from objectives import prefix_lm


class BatchIterator:
  """An iterator of numpy batches whose position can be saved and restored exactly."""

  def __init__(self, ds: tf.data.Dataset, step: int = 0):
    self._ds = ds
    self._iterator = iter(ds)
    self.step = step
    self._checkpoint = tf.train.Checkpoint(iterator=self._iterator)

  @property
  def element_spec(self):
    return self._ds.element_spec

  def __iter__(self) -> Iterator[dict]:
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    batch = next(self._iterator)
    self.step += 1
    return {k: v.numpy() for k, v in batch.items()}

  def fast_forward(self, num_batches: int) -> None:
    """Draws and drops `num_batches` batches (the replay cost of resuming without a state)."""
    for _ in range(num_batches):
      next(self._iterator)

  def save(self, prefix: str) -> str:
    """Writes the iterator state under `prefix` (e.g. MODEL_DIR/checkpoints/<step>/data)."""
    os.makedirs(os.path.dirname(os.path.abspath(prefix)), exist_ok=True)
    return self._checkpoint.write(prefix)

  def restore(self, prefix: str) -> None:
    """Restores a state written by `save` (raises if the pipeline differs)."""
    if not tf.io.gfile.exists(prefix + ".index"):
      raise FileNotFoundError(f"No data-iterator state at {prefix} (expected {prefix}.index).")
    self._checkpoint.read(prefix).assert_consumed()


def get_dataset(
    task_name: str,
    task_feature_lengths: Mapping[str, int],
    feature_converter: seqio.FeatureConverter,
    batch_size: int,
    seed: int,
    shard_info: Optional[seqio.ShardInfo] = None,
    start_step: int = 0,
    state_prefix: Optional[str] = None,
    split: str = "train",
    num_epochs: Optional[int] = None,
    use_cached: bool = False,
) -> BatchIterator:
  """Batches of the model's features for a task or mixture, continuing at `start_step`.

  Args:
    task_name: a registered seqio task or mixture (importing objectives registers the tasks).
    task_feature_lengths: TASK_FEATURE_LENGTHS.
    feature_converter: the model's converter, `model.feature_converter_cls(pack=True)`.
    batch_size: rows per batch on this host.
    seed: RANDOM_SEED; the whole stream is a function of it.
    shard_info: this host's shard (multi-host), or None.
    start_step: the step the next batch belongs to; batches before it are skipped unless a state is
      restored from `state_prefix`.
    state_prefix: a prefix written by BatchIterator.save at `start_step`; restores without replay.
    split: 'train' or 'validation'.
    num_epochs: None repeats forever (training).
    use_cached: read seqio's offline cache (seqio_cache_tasks) instead of preprocessing on the fly.

  Returns:
    A BatchIterator of {feature: np.ndarray [batch_size, length]}.
  """
  if batch_size < 1:
    raise ValueError(f"BATCH_SIZE must be >= 1 per host, got {batch_size}.")
  if start_step < 0:
    raise ValueError(f"start_step must be >= 0, got {start_step}.")
  # The prefix-LM rows follow the converter (pairs for encoder-decoder rows; objectives/prefix_lm.py).
  with prefix_lm.packing_for(feature_converter):
    ds = seqio.get_dataset(
        task_name, task_feature_lengths=dict(task_feature_lengths),
        feature_converter=feature_converter, dataset_split=split, use_cached=use_cached,
        shuffle=True, num_epochs=num_epochs, shard_info=shard_info, verbose=False, seed=seed,
        batch_size=batch_size)
  iterator = BatchIterator(ds.prefetch(tf.data.AUTOTUNE), step=start_step)
  if state_prefix is not None:
    iterator.restore(state_prefix)
  else:
    # Fast-forward through the same pipeline (not ds.skip), so a state saved later restores into
    # a freshly built iterator of identical structure.
    iterator.fast_forward(start_step)
  return iterator

