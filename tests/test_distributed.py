"""Multi-process settings from gin and the environment (experiments/runtime/distributed.py)."""

import dataclasses

import pytest

from experiments import distributed


def test_jax_variables_give_every_setting():
  s = distributed.resolve(env={"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234",
                               "JAX_NUM_PROCESSES": "4", "JAX_PROCESS_ID": "3"})
  assert (s.coordinator_address, s.num_processes, s.process_id) == ("10.0.0.1:1234", 4, 3)
  assert s.multi_process and s.sources["process_id"] == "JAX_PROCESS_ID"


def test_maxtext_variables_and_gin_first():
  env = {"JAX_COORDINATOR_IP": "10.0.0.2", "JAX_COORDINATOR_PORT": "5678", "NNODES": "2",
         "NODE_RANK": "1"}
  s = distributed.resolve(env=env)
  assert (s.coordinator_address, s.num_processes, s.process_id) == ("10.0.0.2:5678", 2, 1)
  s = distributed.resolve(coordinator_address="h:1", env=env)
  assert s.coordinator_address == "h:1"
  assert s.sources["coordinator_address"] == "experiments.distributed.initialize.coordinator_address"


def test_slurm_leaves_the_coordinator_to_jax():
  s = distributed.resolve(env={"SLURM_JOB_ID": "7", "SLURM_NTASKS": "8", "SLURM_PROCID": "5"})
  assert (s.coordinator_address, s.num_processes, s.process_id) == (None, 8, 5)


def test_one_process_initializes_nothing():
  assert not distributed.resolve(env={}).multi_process
  assert not distributed.resolve(env={"SLURM_NTASKS": "1", "SLURM_PROCID": "0"}).multi_process
  assert not distributed.maybe_initialize()  # this test process: no multi-process variables


@pytest.mark.parametrize("env, gin, match", [
    ({"JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "2", "JAX_COORDINATOR_ADDRESS": "h:1"}, {},
     r"JAX_PROCESS_ID = 2 is not a process of JAX_NUM_PROCESSES = 2 \(ids run from 0 to 1\)"),
    ({"JAX_NUM_PROCESSES": "2", "SLURM_NTASKS": "4"}, {},
     "num_processes is given differently: JAX_NUM_PROCESSES = 2, SLURM_NTASKS = 4"),
    ({"SLURM_NTASKS": "4", "SLURM_JOB_ID": "1", "SLURM_PROCID": "0"}, {"num_processes": 2},
     "initialize.num_processes = 2, SLURM_NTASKS = 4"),
    ({"JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "0"}, {}, "no coordinator: set JAX_COORDINATOR"),
    ({"JAX_NUM_PROCESSES": "2", "JAX_COORDINATOR_ADDRESS": "h:1"}, {}, "id is unset"),
    ({"JAX_NUM_PROCESSES": "two"}, {}, "JAX_NUM_PROCESSES='two': expected an integer"),
])
def test_settings_that_cannot_hold_are_config_errors(env, gin, match):
  with pytest.raises(distributed.DistributedConfigError, match=match):
    distributed.resolve(env=env, **gin)


@dataclasses.dataclass
class _Device:
  process_index: int


def test_devices_must_come_from_the_process_count_evenly():
  distributed.check_devices(2, [_Device(0), _Device(0), _Device(1), _Device(1)])
  with pytest.raises(distributed.DistributedConfigError,
                     match=r"process count is 4 but the 4 devices found come from 2 process"):
    distributed.check_devices(4, [_Device(0), _Device(0), _Device(1), _Device(1)])
  with pytest.raises(distributed.DistributedConfigError, match="process 0: 2, process 1: 1"):
    distributed.check_devices(2, [_Device(0), _Device(0), _Device(1)])


def test_a_signal_before_the_first_step_waits_for_the_vote_on_several_processes():
  import signal
  from experiments import loop
  alone, several = loop._Signals(), loop._Signals(defer=True)  # pylint: disable=protected-access
  alone.signum = several.signum = signal.SIGTERM
  with pytest.raises(loop.Preempted):
    alone.check()
  several.check()  # no stop: all processes stop together after the first steps' vote
  assert distributed.StopVote().agreed(signal.SIGTERM) == signal.SIGTERM  # one process: at once
