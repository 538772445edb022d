"""Start-up checks of the accelerator: TensorFlow kept off the GPUs, JAX not silently on the CPU.

  accelerators.start_up()   # in every entry point, after jax.distributed and gin are set up

TensorFlow (tf.data, seqio, TFDS) only feeds the input pipeline, but on a GPU host its runtime
reserves most of each GPU's memory when it first initializes, leaving JAX too little (MaxText
hides the GPUs from it for the same reason). `hide_gpus_from_tensorflow` makes them invisible to
TF before that happens; experiments.runtime.cli.run calls it before any entry point's main.

A JAX installed without an accelerator plugin (the default `pip install -e .`) runs on the CPU
even on a GPU or TPU host, and only the step time would tell. `check_backend` looks for the
hardware itself (device nodes, the TPU VM's environment) and, when JAX's backend is the CPU
anyway, logs a loud warning, or raises when `start_up.require_accelerator` is True (the run
files bind it to the macro REQUIRE_ACCELERATOR). Standard library and gin at import; JAX and TF
are imported only inside the functions.
"""

from __future__ import annotations

import glob
import logging
import os
from typing import Callable, Mapping

import gin

from experiments.runtime import errors

# Device nodes: NVIDIA's driver; TPU v4 / v5p chips (/dev/accel*) and v5e / v6e (/dev/vfio/*);
# AMD's ROCm driver.
_NODES = (("/dev/nvidia[0-9]*", "NVIDIA GPU", "gpu"),
          ("/proc/driver/nvidia/gpus/*", "NVIDIA GPU", "gpu"),
          ("/dev/accel[0-9]*", "TPU", "tpu"),
          ("/dev/vfio/[0-9]*", "TPU", "tpu"),
          ("/dev/kfd", "AMD GPU", "rocm"))
# Set on Cloud TPU VMs and GKE TPU node pools.
_TPU_ENV = ("TPU_ACCELERATOR_TYPE", "TPU_WORKER_HOSTNAMES", "TPU_NAME")
_INSTALL_HINT = {
    "gpu": "install JAX's CUDA plugin: `make install ACCEL=cuda12` (pip install -e '.[cuda12]')",
    "tpu": "install libtpu: `make install ACCEL=tpu` (pip install -e '.[tpu]'); if it is "
           "installed, another process may hold the TPU",
    "rocm": "install JAX's ROCm plugin (jax[rocm]; no extra of this project provides it)",
}
REQUIRE_BINDING = "experiments.runtime.accelerators.start_up.require_accelerator"


class AcceleratorError(errors.ConfigError):
  """An accelerator was required (REQUIRE_ACCELERATOR = True) but JAX runs on the CPU."""


def detect_accelerator(environ: Mapping[str, str] | None = None,
                       glob_fn: Callable[[str], list] = glob.glob) -> tuple[str, str] | None:
  """(description, platform) of accelerator hardware on this host, or None; JAX not consulted."""
  environ = os.environ if environ is None else environ
  for pattern, name, platform in _NODES:
    found = sorted(glob_fn(pattern))
    if found:
      return f"{name} ({found[0]})", platform
  for var in _TPU_ENV:
    if environ.get(var):
      return f"TPU ({var}={environ[var]})", "tpu"
  return None


_hidden = False


def hide_gpus_from_tensorflow() -> None:
  """On a GPU host, makes TensorFlow see no GPU (before its runtime starts); once per process."""
  global _hidden
  if _hidden:
    return
  detected = detect_accelerator()
  if detected is None or detected[1] == "tpu":
    _hidden = True  # nothing for TF to grab; importing TF here would only cost time
    return
  try:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    tf.config.set_visible_devices([], "GPU")
  except ImportError:
    pass
  except RuntimeError as e:  # TF's runtime already started: too late to hide them
    logging.warning("Could not hide the GPUs from TensorFlow (%s); its input pipeline may hold "
                    "GPU memory that JAX needs.", e)
  _hidden = True


_warned = False


def check_backend(require_accelerator: bool = False, backend: str | None = None,
                  detected: tuple[str, str] | None | bool = False,
                  environ: Mapping[str, str] | None = None) -> str | None:
  """Warns (or raises AcceleratorError when required) if JAX runs on the CPU of a host with an
  accelerator, or when one is required and none is in use. Returns the warning, if any.

  `backend` and `detected` default to JAX's backend and detect_accelerator() (tests pass both).
  """
  global _warned
  environ = os.environ if environ is None else environ
  if backend is None:
    import jax  # pylint: disable=g-import-not-at-top
    backend = jax.default_backend()
  if backend != "cpu":
    return None
  if detected is False:
    detected = detect_accelerator(environ)
  if detected is None:
    if require_accelerator:
      raise AcceleratorError(
          f"{REQUIRE_BINDING} = True (REQUIRE_ACCELERATOR) but JAX runs on the CPU and no GPU "
          f"or TPU was found on this host. Run on an accelerator host, or set "
          f"REQUIRE_ACCELERATOR = False for a CPU run.")
    return None
  what, platform = detected
  chosen = environ.get("JAX_PLATFORMS", "").strip()
  cause = (f"JAX_PLATFORMS={chosen} chose the CPU" if chosen else
           f"this JAX has no {platform.upper()} backend: {_INSTALL_HINT[platform]}")
  message = f"{what} is present but JAX runs on the CPU: {cause}."
  if require_accelerator:
    raise AcceleratorError(f"{message} ({REQUIRE_BINDING} = True, REQUIRE_ACCELERATOR.)")
  if chosen and chosen.split(",")[0] == "cpu":
    logging.info("%s", message)  # the user's explicit choice: noted, not shouted
    return message
  if not _warned:
    bar = "!" * 78
    logging.warning("\n%s\n%s\nEvery step runs on the CPU, orders of magnitude slower. Set "
                    "REQUIRE_ACCELERATOR = True to make this an error.\n%s", bar, message, bar)
    _warned = True
  return message


@gin.configurable(module="experiments.runtime.accelerators")
def start_up(require_accelerator: bool = False) -> str | None:
  """The one start-up call: TF off the GPUs, then check_backend; returns its warning, if any."""
  hide_gpus_from_tensorflow()
  return check_backend(require_accelerator)
