"""Training metrics: MODEL_DIR/metrics.jsonl, TensorBoard events, peak FLOP/s and MFU.

Each record is one step's {'step', ...}: the train metrics every log_period steps, and the
validation metrics ('eval/loss', ...) in their own record every eval_period steps.

MFU is model FLOP/s per device over the device's peak for the activations' dtype (PEAKS: dense
TFLOP/s per device, looked up by jax's device_kind). On CPU there is no datasheet figure, so a
float32 matmul peak is measured at start-up and used instead (what the step could reach at best on
this machine). A chip missing from PEAKS gets no MFU: the logs say "unknown peak", never NaN.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import time
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from experiments.runtime import storage

@dataclasses.dataclass(frozen=True)
class Peak:
  """Dense (no sparsity) TFLOP/s of one device, per activation dtype."""
  chip: str
  pattern: str  # regular expression, fully matching jax's device_kind lower-cased
  bfloat16: float
  # float32 matmuls at JAX's default precision, which is not IEEE float32: XLA runs them as TF32 on
  # NVIDIA tensor cores (Ampere and later) and as one bfloat16 pass on TPU (JAX documentation,
  # "Matmul precision", docs.jax.dev/en/latest/201/precision.html). So a GPU's float32 peak is its
  # TF32 tensor-core figure and a TPU's equals its bfloat16 figure.
  float32: float


# NVIDIA's figures are the datasheets' tensor-core rates "with sparsity" halved (H100 / H200 /
# A100 / B200 / GB200 datasheets, nvidia.com). TPU figures: Google Cloud's TPU system
# architecture pages (cloud.google.com/tpu/docs: v4, v5e, v5p, v6e), bf16 per chip; jax has one
# device per chip on these (megacore on v4 and v5p). Ordered: the first matching pattern wins.
PEAKS = (
    Peak("NVIDIA GB200", r".*\bgb200\b.*", 2500.0, 1250.0),  # 5 / 2.5 PFLOP/s sparse per GPU
    Peak("NVIDIA B200", r".*\bb200\b.*", 2250.0, 1125.0),  # HGX B200: 36 / 18 PF sparse per 8
    Peak("NVIDIA GH200", r".*\bgh200\b.*", 989.5, 494.5),  # the H100 SXM's tensor cores
    Peak("NVIDIA H200 NVL", r".*\bh200 nvl\b.*", 835.5, 417.5),  # 1,671 / 835 sparse
    Peak("NVIDIA H200 SXM", r".*\bh200\b.*", 989.5, 494.5),  # 1,979 / 989 sparse
    Peak("NVIDIA H100 NVL", r".*\bh100 nvl\b.*", 835.5, 417.5),  # 1,671 / 835 sparse
    Peak("NVIDIA H100 PCIe", r".*\bh100 pcie\b.*", 756.5, 378.0),  # 1,513 / 756 sparse
    Peak("NVIDIA H100 SXM", r".*\bh100\b.*", 989.5, 494.5),  # "H100 80GB HBM3": 1,979 / 989
    Peak("NVIDIA A100", r".*\ba100\b.*", 312.0, 156.0),  # 40GB and 80GB, SXM4 and PCIe alike
    Peak("TPU v6e", r"tpu v6( lite|e)", 918.0, 918.0),  # device_kind "TPU v6 lite"
    Peak("TPU v5p", r"tpu v5p?", 459.0, 459.0),  # device_kind "TPU v5"
    Peak("TPU v5e", r"tpu v5( lite|e)", 197.0, 197.0),  # device_kind "TPU v5 lite"
    Peak("TPU v4", r"tpu v4", 275.0, 275.0),  # not "TPU v4 lite" (v4i): unknown
)


def lookup_peak(device_kind: str, dtype: str = "bfloat16") -> tuple[float, str] | None:
  """(dense peak TFLOP/s, chip) of a device_kind for 'bfloat16' or 'float32'; None if unknown."""
  kind = " ".join(str(device_kind).lower().split())
  column = "float32" if str(dtype) == "float32" else "bfloat16"
  for peak in PEAKS:
    if re.fullmatch(peak.pattern, kind):
      return getattr(peak, column), peak.chip
  return None


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


def peak_flops_per_device(device: Any | None = None, cpu_gflops: float | None = None,
                          dtype: str = "bfloat16") -> tuple[float | None, str]:
  """(peak FLOP/s of one device for `dtype`, or None when unknown; where the figure comes from)."""
  device = device or jax.devices()[0]
  if device.platform == "cpu":
    gflops = cpu_gflops if cpu_gflops is not None else measure_cpu_matmul_gflops()
    # Virtual CPU devices share the host's cores.
    per_device = gflops * 1e9 / max(1, jax.local_device_count())
    return per_device, f"measured float32 matmul peak {gflops:.1f} GFLOP/s per host"
  found = lookup_peak(device.device_kind, dtype)
  if found is None:
    return None, (f"unknown peak for {device.device_kind!r} ({dtype}): MFU not reported (add the "
                  f"chip to experiments.metrics.PEAKS)")
  tflops, chip = found
  return tflops * 1e12, f"{dtype} dense peak of {chip}: {tflops:g} TFLOP/s"


def mfu(flops_per_second_per_device: float, peak_per_device: float | None) -> float | None:
  """Model FLOP/s utilisation, or None when the peak is unknown (never NaN)."""
  if peak_per_device is None or not np.isfinite(peak_per_device) or peak_per_device <= 0:
    return None
  return flops_per_second_per_device / peak_per_device


def format_mfu(value: float | None) -> str:
  """'0.412', or 'unknown peak' for a chip missing from PEAKS."""
  return "unknown peak" if value is None else f"{value:.3f}"


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
