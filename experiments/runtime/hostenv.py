"""Host allocator settings that only take effect when the process starts (CPU runs).

XLA's CPU runtime allocates each executable's temporaries (for a train step: the [tokens,
vocabulary] logits and their gradient) and its large outputs afresh on every call. glibc serves
allocations above 32 MiB, and every large one made by a worker thread, with a new mmap, so each
step faults in and zeroes all those pages again. With one arena, no mmap and no trimming, freed
blocks go back to the heap and the next step reuses pages that are already mapped (the resident
set stays at the run's peak, as with tcmalloc); hugetlb=1 on top asks for transparent huge pages
on the heap (THP 'madvise' mode), leaving fewer faults and TLB misses for a larger resident set.
The price: every thread shares the one arena, which slows tf.data (still far above what a CPU
trainer consumes); hugetlb=1 alone keeps the arenas but only trades the faults for zeroing huge
pages. Figures in benchmarks/README.md.

glibc reads these tunables only at start-up, so every command-line entry point calls
`reexec_with_tuned_allocator()` first thing (through experiments.runtime.cli.start): it replaces
the process with the same command line and GLIBC_TUNABLES set. It does nothing when
GLIBC_TUNABLES is already set (by the user or by the re-exec itself), off glibc Linux, where an
accelerator is present or JAX_PLATFORMS names one (device buffers do not come from malloc; host
threads there benefit from many arenas), or with ZEROSHOT_HARNESS_ALLOCATOR=system. Standard
library only: it runs before jax is imported.
"""

from __future__ import annotations

import glob
import os
import platform
import sys

OPT_OUT_VAR = "ZEROSHOT_HARNESS_ALLOCATOR"
TUNABLES = ("glibc.malloc.arena_max=1:glibc.malloc.mmap_max=0:"
            "glibc.malloc.trim_threshold=1099511627776:glibc.malloc.hugetlb=1")
_ACCELERATOR_NODES = ("/dev/nvidia0", "/dev/accel0", "/dev/vfio/0", "/dev/kfd")


def _accelerator_present(environ) -> bool:
  platforms = environ.get("JAX_PLATFORMS", "").strip().lower()
  if platforms:
    return platforms.split(",")[0] != "cpu"
  return any(glob.glob(node) for node in _ACCELERATOR_NODES)


def tuned_allocator_reason(environ=None) -> str | None:
  """Why the process keeps its allocator settings, or None when it should re-exec with ours."""
  environ = os.environ if environ is None else environ
  if environ.get(OPT_OUT_VAR, "").lower() == "system":
    return f"{OPT_OUT_VAR}=system"
  if "GLIBC_TUNABLES" in environ:
    return "GLIBC_TUNABLES is already set"
  if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
    return "not glibc Linux"
  if _accelerator_present(environ):
    return "an accelerator is present"
  return None


def allocator_summary(environ=None) -> str:
  """One line for start-up logs and benchmark JSON: which allocator settings this process has."""
  environ = os.environ if environ is None else environ
  value = environ.get("GLIBC_TUNABLES")
  if value == TUNABLES:
    return "tuned (glibc: one arena, no mmap, no trim, transparent huge pages)"
  if value is not None:
    return f"GLIBC_TUNABLES={value}"
  return "system default"


def reexec_with_tuned_allocator() -> None:
  """Replaces this process by the same command line with TUNABLES, when that applies."""
  if tuned_allocator_reason() is not None:
    return
  argv = list(getattr(sys, "orig_argv", []))
  if not argv:
    return
  sys.stdout.flush()
  sys.stderr.flush()
  try:
    os.execve(sys.executable, argv, dict(os.environ, GLIBC_TUNABLES=TUNABLES))
  except OSError:
    pass  # keep running with the system allocator
