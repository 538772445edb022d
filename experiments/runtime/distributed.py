"""Multi-process start-up: jax.distributed.initialize with settings from gin or the environment.

Each setting comes from the first of: the gin binding (`experiments.distributed.initialize.*`),
then the launcher's environment variables:

| setting | gin | environment (first found) |
|---|---|---|
| coordinator | coordinator_address | JAX_COORDINATOR_ADDRESS, COORDINATOR_ADDRESS, JAX_COORDINATOR_IP:JAX_COORDINATOR_PORT |
| process count | num_processes | JAX_NUM_PROCESSES, NNODES, SLURM_NTASKS, OMPI_COMM_WORLD_SIZE |
| process id | process_id | JAX_PROCESS_ID, NODE_RANK, SLURM_PROCID, OMPI_COMM_WORLD_RANK |

JAX_* are t5x's and JAX's own names; JAX_COORDINATOR_IP/PORT, NNODES and NODE_RANK are MaxText's
GPU launcher's (one process per node). What stays unset is left to JAX's cluster detection (SLURM,
Open MPI, Kubernetes, Cloud TPU), which also finds a SLURM job's coordinator. A single process
(no count above 1, no coordinator, a TPU slice of one host) initializes nothing.

Wrong counts are ConfigErrors before any training: a process id outside the count, sources that
disagree (gin says 2, SLURM_NTASKS says 4), a count above 1 without a coordinator or an id, or
devices that do not come from `num_processes` processes holding the same number each (the mesh
spans them all). Processes that never connect (a count larger than the processes launched) are
JAX's to report: its client aborts the process after `initialization_timeout` seconds with
DEADLINE_EXCEEDED (RegisterTask), a native abort Python cannot catch, so the line logged just
before names the settings and where each came from.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Mapping

import gin
import jax

from experiments.runtime.errors import ConfigError

_COORDINATOR_VARS = ("JAX_COORDINATOR_ADDRESS", "COORDINATOR_ADDRESS")
_COUNT_VARS = ("JAX_NUM_PROCESSES", "NNODES", "SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE")
_ID_VARS = ("JAX_PROCESS_ID", "NODE_RANK", "SLURM_PROCID", "OMPI_COMM_WORLD_RANK")
_BINDING = "experiments.distributed.initialize"

_INITIALIZED = False


class DistributedConfigError(ConfigError):
  """Multi-process settings that cannot describe one job."""


@dataclasses.dataclass(frozen=True)
class Settings:
  """What initialize passes to jax.distributed.initialize (None: JAX detects it), and whence."""
  coordinator_address: str | None
  num_processes: int | None
  process_id: int | None
  sources: Mapping[str, str]

  @property
  def multi_process(self) -> bool:
    return self.coordinator_address is not None or (self.num_processes or 1) > 1


def _int_var(env: Mapping[str, str], var: str) -> int:
  try:
    return int(env[var])
  except ValueError:
    raise DistributedConfigError(
        f"Environment variable {var}={env[var]!r}: expected an integer.") from None


def _first(names, env, gin_value, gin_name, as_int):
  """(value, source) from gin, else the first variable set; several that disagree: an error."""
  found = [(n, _int_var(env, n) if as_int else env[n]) for n in names if env.get(n)]
  if gin_value is not None:
    found.insert(0, (f"{_BINDING}.{gin_name}", gin_value))
  if as_int:  # counts and ids given twice must agree (a launcher's and a user's)
    values = {v for _, v in found}
    if len(values) > 1:
      raise DistributedConfigError(
          f"The {gin_name} is given differently: " + ", ".join(f"{n} = {v}" for n, v in found)
          + f". Unset all but one (or bind {_BINDING}.{gin_name}).")
  return found[0][::-1] if found else (None, None)


def resolve(coordinator_address: str | None = None, num_processes: int | None = None,
            process_id: int | None = None, env: Mapping[str, str] | None = None) -> Settings:
  """The settings from gin's values and the environment, checked; initializes nothing."""
  env = os.environ if env is None else env
  sources = {}
  address, sources["coordinator_address"] = _first(
      _COORDINATOR_VARS, env, coordinator_address, "coordinator_address", as_int=False)
  if address is None and env.get("JAX_COORDINATOR_IP") and env.get("JAX_COORDINATOR_PORT"):
    address = f"{env['JAX_COORDINATOR_IP']}:{env['JAX_COORDINATOR_PORT']}"
    sources["coordinator_address"] = "JAX_COORDINATOR_IP:JAX_COORDINATOR_PORT"
  count, sources["num_processes"] = _first(_COUNT_VARS, env, num_processes, "num_processes",
                                           as_int=True)
  pid, sources["process_id"] = _first(_ID_VARS, env, process_id, "process_id", as_int=True)
  if count is not None and count < 1:
    raise DistributedConfigError(f"{sources['num_processes']} = {count}: expected >= 1.")
  if count is not None and pid is not None and not 0 <= pid < count:
    raise DistributedConfigError(
        f"{sources['process_id']} = {pid} is not a process of {sources['num_processes']} = "
        f"{count} (ids run from 0 to {count - 1}).")
  if (count or 1) > 1 and address is None and not _cluster_detected(env):
    raise DistributedConfigError(
        f"{sources['num_processes']} = {count} processes but no coordinator: set "
        f"JAX_COORDINATOR_ADDRESS=host:port (process 0's host) or bind "
        f"{_BINDING}.coordinator_address.")
  if count is not None and count > 1 and pid is None and not _cluster_detected(env):
    raise DistributedConfigError(
        f"{sources['num_processes']} = {count} processes but this one's id is unset: set "
        f"JAX_PROCESS_ID (0 to {count - 1}) or bind {_BINDING}.process_id.")
  if count == 1 and address is None:
    count = pid = None  # one process: nothing to initialize
  if count is None and address is None and "," in env.get("TPU_WORKER_HOSTNAMES", ""):
    sources["coordinator_address"] = "Cloud TPU detection (TPU_WORKER_HOSTNAMES)"
    return Settings(None, None, None, sources | {"detected": "cloud_tpu"})
  return Settings(address, count, pid, {k: v for k, v in sources.items() if v})


def _cluster_detected(env: Mapping[str, str]) -> bool:
  """A scheduler whose variables JAX reads itself (it finds the coordinator too)."""
  return bool(env.get("SLURM_JOB_ID") or env.get("OMPI_MCA_orte_hnp_uri"))


@gin.configurable("initialize", module="experiments.distributed")
def maybe_initialize(coordinator_address: str | None = None, num_processes: int | None = None,
                     process_id: int | None = None, initialization_timeout: int = 300) -> bool:
  """jax.distributed.initialize once, when gin or the environment describes several processes.

  Call it before anything touches JAX's devices. Returns whether this call initialized.
  """
  global _INITIALIZED
  if _INITIALIZED:
    return False
  settings = resolve(coordinator_address, num_processes, process_id)
  detected = settings.sources.get("detected") or (
      _cluster_detected(os.environ) and (settings.num_processes or 0) > 1)
  if not settings.multi_process and not detected:
    return False
  logging.info(  # a native abort may follow (see the module's docstring): say what was asked
      "jax.distributed.initialize: %s; waiting up to %d s for every process to connect.",
      _describe(settings), initialization_timeout)
  try:
    jax.distributed.initialize(
        coordinator_address=settings.coordinator_address, num_processes=settings.num_processes,
        process_id=settings.process_id, initialization_timeout=initialization_timeout)
  except Exception as e:  # pylint: disable=broad-except  # grpc deadline, address in use, ...
    raise DistributedConfigError(
        f"jax.distributed.initialize did not complete ({_describe(settings)}): "
        f"{' '.join(str(e).split())[:300]}.") from e
  _INITIALIZED = True
  check_devices(settings.num_processes)
  logging.info("jax.distributed: process %d of %d (%s), %d local / %d global devices.",
               jax.process_index(), jax.process_count(), _describe(settings),
               jax.local_device_count(), jax.device_count())
  return True


def _describe(settings: Settings) -> str:
  parts = [f"{k} {getattr(settings, k)} from {v}" for k, v in settings.sources.items()
           if k != "detected"]
  return "; ".join(parts) or "all from cluster detection"


def check_devices(num_processes: int | None = None, devices=None) -> None:
  """The global devices come from `num_processes` processes holding the same number each."""
  devices = jax.devices() if devices is None else devices
  per_process: dict[int, int] = {}
  for d in devices:
    per_process[d.process_index] = per_process.get(d.process_index, 0) + 1
  expected = num_processes if num_processes is not None else jax.process_count()
  if len(per_process) != expected:
    raise DistributedConfigError(
        f"The process count is {expected} but the {len(devices)} devices found come from "
        f"{len(per_process)} process(es) ({_counts(per_process)}); check JAX_NUM_PROCESSES / "
        f"{_BINDING}.num_processes against the processes launched.")
  if len(set(per_process.values())) > 1:
    raise DistributedConfigError(
        f"Processes hold different numbers of devices ({_counts(per_process)}); the mesh needs "
        f"the same number on every process (JAX_LOCAL_DEVICE_IDS / visible devices).")


def _counts(per_process: Mapping[int, int]) -> str:
  return ", ".join(f"process {p}: {n}" for p, n in sorted(per_process.items()))
