"""Training metrics: MODEL_DIR/metrics.jsonl, TensorBoard events, peak FLOP/s and MFU.

Each record is one step's {'step', ...}: the train metrics every log_period steps, and the
validation metrics ('eval/loss', ...) in their own record every eval_period steps.

MFU is model FLOP/s per device over the device's peak. Peaks are bf16 dense TFLOP/s per chip
(MaxText's table); on CPU there is no datasheet figure, so a float32 matmul peak is measured at
start-up and used instead (it is what the step could reach at best on this machine).
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from experiments.runtime import storage

# bf16 dense peak TFLOP/s per chip, matched against jax's device_kind (lower-cased, in order).
PEAK_TFLOPS = (
    ("v6", 918.0),  # TPU v6e (Trillium)
    ("v5p", 459.0),
    ("v5 lite", 197.0),  # TPU v5e reports "TPU v5 lite"
    ("v5e", 197.0),
    ("v5", 459.0),
    ("v4", 275.0),
    ("h200", 989.0),
    ("h100", 989.0),
)


def measure_cpu_matmul_gflops(n: int = 1024, repeats: int = 5) -> float:
  """Best float32 matmul rate of this host in GFLOP/s (all cores), timed after compilation."""
  x = jnp.ones((n, n), jnp.float32)
  f = jax.jit(lambda a: a @ a)
  f(x).block_until_ready()
  best = float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    f(x).block_until_ready()
    best = min(best, time.perf_counter() - start)
  return 2.0 * n ** 3 / best / 1e9


def peak_flops_per_device(device: Any | None = None, cpu_gflops: float | None = None) -> tuple[
    float, str]:
  """(peak FLOP/s of one device, where the figure comes from)."""
  device = device or jax.devices()[0]
  kind = device.device_kind.lower()
  if device.platform == "cpu":
    gflops = cpu_gflops if cpu_gflops is not None else measure_cpu_matmul_gflops()
    # Virtual CPU devices share the host's cores.
    per_device = gflops * 1e9 / max(1, jax.local_device_count())
    return per_device, f"measured float32 matmul peak {gflops:.1f} GFLOP/s per host"
  for key, tflops in PEAK_TFLOPS:
    if key in kind:
      return tflops * 1e12, f"bf16 dense peak of {device.device_kind}: {tflops:g} TFLOP/s"
  return float("nan"), f"no peak known for {device.device_kind}; MFU not reported"


def to_python(metrics: Mapping[str, Any]) -> dict[str, float]:
  """Device scalars to plain floats (ints kept as ints) for JSON and TensorBoard."""
  out = {}
  for key, value in jax.device_get(dict(metrics)).items():
    arr = np.asarray(value)
    if arr.size != 1:
      continue
    item = arr.item()
    out[key] = item if isinstance(item, (int, bool)) else float(item)
  return out


class MetricsWriter:
  """Appends metrics to MODEL_DIR/metrics.jsonl and TensorBoard; only process 0 writes.

  A run starting at `start_step` (the restored step, 0 when fresh) drops the rows past it that an
  interrupted earlier attempt wrote, in both, so no step ever has two rows.
  """

  def __init__(self, model_dir: str | os.PathLike, start_step: int, tensorboard: bool = True):
    self.enabled = jax.process_index() == 0
    self.path = storage.as_path(model_dir) / "metrics.jsonl"
    self._uri = storage.is_uri(self.path)
    self._text = ""  # on a URI: the file's lines, rewritten whole (objects cannot be appended)
    self._tb = None
    if not self.enabled:
      return
    self._drop_after(start_step)
    if self._uri and self.path.is_file():
      self._text = self.path.read_text()
    if tensorboard:
      try:
        from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
        storage.register_tensorboard(model_dir)
        # purge_step: TensorBoard hides this run's earlier events from that step on.
        self._tb = SummaryWriter(logdir=storage.join(storage.as_path(model_dir), "train"),
                                 purge_step=start_step + 1)
      except Exception as e:  # pylint: disable=broad-except
        logging.warning("TensorBoard events disabled: %s", e)

  def _drop_after(self, step: int) -> None:
    """Removes lines past `step` (written before an interruption; they will recur)."""
    if not self.path.is_file():
      return
    lines = self.path.read_text().splitlines()
    keep = [line for line in lines if line.strip() and json.loads(line).get("step", 0) <= step]
    if len(keep) != len(lines):
      storage.write_text(self.path, "".join(line + "\n" for line in keep))

  def write(self, step: int, metrics: Mapping[str, float]) -> None:
    if not self.enabled:
      return
    record = {"step": int(step), **{k: v for k, v in metrics.items()}}
    line = json.dumps(record, sort_keys=True) + "\n"
    if self._uri:
      self._text += line
      self.path.write_text(self._text)
    else:
      with open(self.path, "a", encoding="utf-8") as f:
        f.write(line)
    if self._tb is not None:
      for key, value in metrics.items():
        if isinstance(value, (int, float)) and np.isfinite(value):
          # 'eval/loss' (experiments/validation.py) keeps its own section; the rest is train/.
          self._tb.add_scalar(key if "/" in key else f"train/{key}", value, step)
      self._tb.flush()

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()


def read_metrics(model_dir: str | os.PathLike) -> list[dict]:
  """All records of MODEL_DIR/metrics.jsonl."""
  path = storage.as_path(model_dir) / "metrics.jsonl"
  if not path.is_file():
    return []
  return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
