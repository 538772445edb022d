"""Profiler window, data-wait seconds, and the peak table behind MFU (never NaN)."""

import logging
import math
import time
import types

import pytest

from experiments import data as data_lib
from experiments import loop
from experiments import metrics as metrics_lib
from experiments import profiling
from experiments import testing
from experiments import train
from experiments.runtime import errors


@pytest.mark.parametrize("kind,dtype,tflops,chip", [
    ("NVIDIA H100 80GB HBM3", "bfloat16", 989.5, "NVIDIA H100 SXM"),
    ("NVIDIA H100 80GB HBM3", "float32", 494.5, "NVIDIA H100 SXM"),
    ("NVIDIA H100 PCIe", "bfloat16", 756.5, "NVIDIA H100 PCIe"),
    ("NVIDIA H100 NVL", "bfloat16", 835.5, "NVIDIA H100 NVL"),
    ("NVIDIA H200", "bfloat16", 989.5, "NVIDIA H200 SXM"),
    ("NVIDIA A100-SXM4-40GB", "bfloat16", 312.0, "NVIDIA A100"),
    ("NVIDIA A100 80GB PCIe", "float32", 156.0, "NVIDIA A100"),
    ("NVIDIA B200", "bfloat16", 2250.0, "NVIDIA B200"),
    ("TPU v4", "bfloat16", 275.0, "TPU v4"),
    ("TPU v5 lite", "bfloat16", 197.0, "TPU v5e"),
    ("TPU v5", "bfloat16", 459.0, "TPU v5p"),
    ("TPU v6 lite", "float32", 918.0, "TPU v6e"),
])
def test_peak_lookup_by_device_kind(kind, dtype, tflops, chip):
  assert metrics_lib.lookup_peak(kind, dtype) == (tflops, chip)


@pytest.mark.parametrize("kind", ["NVIDIA L4", "TPU v4 lite", "TPU7x", "NVIDIA GeForce RTX 4090"])
def test_unknown_chip_has_no_peak_and_no_mfu(kind):
  assert metrics_lib.lookup_peak(kind) is None
  device = types.SimpleNamespace(platform="gpu", device_kind=kind)
  peak, source = metrics_lib.peak_flops_per_device(device, dtype="bfloat16")
  assert peak is None and "unknown peak" in source and kind in source
  rates = loop._rates(0.5, 1000, 1e12, 1, peak)  # pylint: disable=protected-access
  assert "mfu" not in rates and all(math.isfinite(v) for v in rates.values())
  assert metrics_lib.format_mfu(rates.get("mfu")) == "unknown peak"


def test_known_chip_gives_mfu():
  device = types.SimpleNamespace(platform="gpu", device_kind="NVIDIA H200")
  peak, source = metrics_lib.peak_flops_per_device(device, dtype="bfloat16")
  assert peak == 989.5e12 and "H200" in source
  rates = loop._rates(1.0, 1000, 989.5e12 / 2, 1, peak)  # pylint: disable=protected-access
  assert rates["mfu"] == pytest.approx(0.5)


@pytest.mark.parametrize("steps", [(3, 3), (0, 2), (2,), "2,3", (2.0, 3), (True, 3)])
def test_bad_profile_window_is_a_config_error(steps):
  with pytest.raises(profiling.ProfileConfigError, match="PROFILE_STEPS") as raised:
    profiling.check_steps(steps)
  assert isinstance(raised.value, errors.ConfigError)


def test_profile_window_outside_the_run_is_skipped():
  assert profiling.ProfileWindow("unused", (2, 4), first_step=10, last_step=20).window is None
  assert profiling.ProfileWindow("unused", (30, 40), first_step=10, last_step=20).window is None
  assert profiling.ProfileWindow("unused", (5, 12), first_step=10, last_step=20).window == (10, 12)


_WAIT = 0.25


def test_tiny_run_writes_a_profile_and_logs_data_wait(tmp_path, monkeypatch, caplog):
  """3 steps, PROFILE_STEPS = (2, 3): a trace of step 2; each step's wait on a slowed iterator."""
  next_batch = data_lib.TrainData.__next__

  def slow_next(self):
    time.sleep(_WAIT)
    return next_batch(self)

  monkeypatch.setattr(data_lib.TrainData, "__next__", slow_next)
  files, bindings = testing.tiny_stack("causal_decoder", "full_lm", tmp_path, 3, log_period=1,
                                       checkpoint_period=3, extra=["PROFILE_STEPS = (2, 3)"])
  with caplog.at_level(logging.INFO):
    train.run(files, bindings)
  traces = list((tmp_path / "plugins" / "profile").glob("*/*.xplane.pb"))
  assert len(traces) == 1 and traces[0].stat().st_size > 0
  rows = {r["step"]: r for r in metrics_lib.read_metrics(tmp_path) if "loss" in r}
  assert sorted(rows) == [1, 2, 3]
  assert rows[1]["data_wait_seconds_per_step"] < _WAIT  # drawn while the step compiled
  for step in (2, 3):
    assert _WAIT <= rows[step]["data_wait_seconds_per_step"] <= rows[step]["seconds_per_step"]
  assert "Activations: float32 (TransformerConfig.dtype = 'float32' on cpu)" in caplog.text
  assert "data wait" in caplog.text
