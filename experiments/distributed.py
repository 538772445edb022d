"""Multi-host start-up: jax.distributed.initialize when a multi-process environment is present."""

from __future__ import annotations

import logging
import os

import jax

_INITIALIZED = False

# Variables that mean "this process is one of several" for jax's cluster auto-detection.
_COORDINATOR_VARS = ("JAX_COORDINATOR_ADDRESS", "COORDINATOR_ADDRESS")
_MULTI_PROCESS_VARS = ("SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE", "JAX_NUM_PROCESSES")


def _multi_process_env() -> bool:
  if any(os.environ.get(v) for v in _COORDINATOR_VARS):
    return True
  for var in _MULTI_PROCESS_VARS:
    try:
      if int(os.environ.get(var, "1")) > 1:
        return True
    except ValueError:
      pass
  # Multi-host TPU slices list their workers (a single host lists one).
  return "," in os.environ.get("TPU_WORKER_HOSTNAMES", "")


def maybe_initialize() -> bool:
  """Calls jax.distributed.initialize() once when the environment describes several processes."""
  global _INITIALIZED
  if _INITIALIZED or not _multi_process_env():
    return False
  jax.distributed.initialize()  # coordinator, process id and count come from the environment
  _INITIALIZED = True
  logging.info("jax.distributed: process %d of %d, %d local / %d global devices.",
               jax.process_index(), jax.process_count(), jax.local_device_count(),
               jax.device_count())
  return True
