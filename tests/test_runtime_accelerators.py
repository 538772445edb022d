"""Start-up checks: TF kept off the GPUs; JAX on the CPU of an accelerator host warns or fails."""

import logging
import sys
import types

import pytest

from experiments import testing
from experiments import train
from experiments.runtime import accelerators
from experiments.runtime import errors

_GPU = ("NVIDIA GPU (/dev/nvidia0)", "gpu")
_TPU = ("TPU (/dev/accel0)", "tpu")


def _glob(present):
  return lambda pattern: [p for p in present if pattern.split("[")[0].rstrip("*") in p]


@pytest.mark.parametrize("nodes,environ,want", [
    (["/dev/nvidia0", "/dev/nvidiactl"], {}, ("NVIDIA GPU (/dev/nvidia0)", "gpu")),
    (["/dev/accel0"], {}, ("TPU (/dev/accel0)", "tpu")),
    (["/dev/vfio/0"], {}, ("TPU (/dev/vfio/0)", "tpu")),
    ([], {"TPU_ACCELERATOR_TYPE": "v5litepod-8"}, ("TPU (TPU_ACCELERATOR_TYPE=v5litepod-8)", "tpu")),
    ([], {}, None),
])
def test_detect_accelerator(nodes, environ, want):
  assert accelerators.detect_accelerator(environ, _glob(nodes)) == want


@pytest.fixture(autouse=True)
def _fresh(monkeypatch):
  monkeypatch.setattr(accelerators, "_warned", False)
  monkeypatch.setattr(accelerators, "_hidden", False)


def test_cpu_backend_on_a_gpu_host_warns_loudly(caplog):
  with caplog.at_level(logging.WARNING):
    message = accelerators.check_backend(backend="cpu", detected=_GPU, environ={})
  assert "NVIDIA GPU (/dev/nvidia0) is present but JAX runs on the CPU" in message
  assert "make install ACCEL=cuda12" in caplog.text and "!!!!" in caplog.text
  assert "REQUIRE_ACCELERATOR" in caplog.text


def test_tpu_host_names_the_tpu_extra():
  message = accelerators.check_backend(backend="cpu", detected=_TPU, environ={})
  assert "make install ACCEL=tpu" in message


def test_explicit_jax_platforms_cpu_is_noted_not_shouted(caplog):
  with caplog.at_level(logging.INFO):
    message = accelerators.check_backend(backend="cpu", detected=_GPU,
                                         environ={"JAX_PLATFORMS": "cpu"})
  assert "JAX_PLATFORMS=cpu" in message
  assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize("detected", [_GPU, None])
def test_require_accelerator_fails_on_the_cpu(detected):
  with pytest.raises(accelerators.AcceleratorError, match="REQUIRE_ACCELERATOR") as raised:
    accelerators.check_backend(True, backend="cpu", detected=detected, environ={})
  assert isinstance(raised.value, errors.ConfigError)  # exit 2 under experiments.runtime.cli


def test_nothing_to_say_on_an_accelerator_or_a_plain_cpu_host():
  assert accelerators.check_backend(True, backend="gpu", detected=_GPU) is None
  assert accelerators.check_backend(False, backend="cpu", detected=None, environ={}) is None


def test_require_accelerator_gin_macro_stops_a_run_before_any_work(tmp_path, monkeypatch, capsys):
  monkeypatch.setattr(accelerators, "detect_accelerator", lambda environ=None: _GPU)
  files, bindings = testing.tiny_stack("causal_decoder", "full_lm", tmp_path / "run", 2)
  argv = testing.as_flags(files, bindings + ["REQUIRE_ACCELERATOR = True"])
  assert testing.cli_exit_code(train.main, argv) == 2
  assert "is present but JAX runs on the CPU" in capsys.readouterr().err
  assert not (tmp_path / "run" / "checkpoints").exists()


def test_tensorflow_is_kept_off_the_gpus_of_a_gpu_host(monkeypatch):
  calls = []
  fake_tf = types.SimpleNamespace(config=types.SimpleNamespace(
      set_visible_devices=lambda devices, kind: calls.append((list(devices), kind))))
  monkeypatch.setitem(sys.modules, "tensorflow", fake_tf)
  monkeypatch.setattr(accelerators, "detect_accelerator", lambda environ=None: None)
  accelerators.hide_gpus_from_tensorflow()
  assert not calls  # a host without GPUs: TF is left alone
  monkeypatch.setattr(accelerators, "_hidden", False)
  monkeypatch.setattr(accelerators, "detect_accelerator", lambda environ=None: _GPU)
  accelerators.hide_gpus_from_tensorflow()
  accelerators.hide_gpus_from_tensorflow()  # once per process
  assert calls == [([], "GPU")]
