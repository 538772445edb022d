"""Multi-host pieces of training: start-up (experiments/runtime/distributed.py) and the stop vote.

A scheduler may send SIGTERM to one host only (one VM of a slice preempted). If that host alone
saved and left, the others would wait in the step's collectives, or start a collective checkpoint
save it never joins. So each step every process casts its vote (the signal it received, 0 for
none) into one all-reduce (max) over every device; the result is read one step later, when the
loop already waits for that step's finiteness check, so the vote adds no wait. Every process reads
the same result at the same step, and all save that step and stop with the same exit code.

With one process the vote is the local signal at once (nothing to agree on). Before the first
step a signal on one of several processes does not stop it alone (experiments/loop.py `_Signals`):
the first steps' vote stops all of them.

Why not JAX's preemption sync manager (multihost_utils.reached_preemption_sync_point, what orbax's
`reached_preemption` asks): it learns of SIGTERM through a native handler that the harness's own
Python handler (needed for Ctrl-C and for stopping before the first step) replaces, and a notice
reaches it only through the coordination service; the vote needs neither and is tested on CPU.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from experiments.runtime.distributed import (  # noqa: F401  (the entry points call it from here)
    DistributedConfigError, check_devices, maybe_initialize, resolve)


class StopVote:
  """Per step: `agreed(local_signum)` -> the signal some process received (0: none), the same on
  every process at the same step."""

  def __init__(self):
    self._multi = jax.process_count() > 1
    self._pending = None
    if self._multi:
      mesh = Mesh(np.asarray(jax.devices()), ("processes",))
      self._sharding = NamedSharding(mesh, P("processes"))
      self._reduce = jax.jit(jnp.max, out_shardings=NamedSharding(mesh, P()))

  def agreed(self, local_signum: int | None) -> int:
    """Casts this step's vote; returns the result of the previous step's (0 on the first)."""
    vote = int(local_signum or 0)
    if not self._multi:
      return vote
    local_N = np.full((jax.local_device_count(),), vote, np.int32)
    ballot = self._reduce(jax.make_array_from_process_local_data(self._sharding, local_N))
    previous, self._pending = self._pending, ballot
    return 0 if previous is None else int(jax.device_get(previous))
