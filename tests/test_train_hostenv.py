"""The CPU allocator re-exec of the entry points (experiments/runtime/hostenv.py)."""

import os
import platform
import subprocess
import sys

import pytest

from experiments.runtime import hostenv

_GLIBC_LINUX = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"


def _clean_env(**extra):
  env = {k: v for k, v in os.environ.items()
         if k not in ("GLIBC_TUNABLES", hostenv.OPT_OUT_VAR, "JAX_PLATFORMS")}
  env.update(extra)
  return env


def test_reasons_to_keep_the_system_allocator(monkeypatch):
  monkeypatch.setattr(hostenv, "_ACCELERATOR_NODES", ())
  assert hostenv.tuned_allocator_reason(_clean_env(ZEROSHOT_HARNESS_ALLOCATOR="system")) == (
      "ZEROSHOT_HARNESS_ALLOCATOR=system")
  assert hostenv.tuned_allocator_reason(_clean_env(GLIBC_TUNABLES="glibc.malloc.arena_max=4")) == (
      "GLIBC_TUNABLES is already set")
  assert hostenv.tuned_allocator_reason(_clean_env(JAX_PLATFORMS="cuda,cpu")) == (
      "an accelerator is present")
  if _GLIBC_LINUX:
    assert hostenv.tuned_allocator_reason(_clean_env()) is None
    assert hostenv.tuned_allocator_reason(_clean_env(JAX_PLATFORMS="cpu")) is None


def test_summary_names_the_settings():
  assert hostenv.allocator_summary({"GLIBC_TUNABLES": hostenv.TUNABLES}).startswith("tuned")
  assert hostenv.allocator_summary({}) == "system default"
  assert hostenv.allocator_summary({"GLIBC_TUNABLES": "x=1"}) == "GLIBC_TUNABLES=x=1"


_PROBE = ("import os, sys; from experiments.runtime import hostenv; "
          "hostenv.reexec_with_tuned_allocator(); "
          "print(os.environ.get('GLIBC_TUNABLES', '-'), os.getpid(), sys.argv[1:])")


def _probe(env):
  out = subprocess.run([sys.executable, "-c", _PROBE, "a", "--b=c"], env=env, check=True,
                       capture_output=True, text=True, cwd=os.path.dirname(os.path.dirname(
                           os.path.abspath(__file__))))
  return out.stdout.split(" ", 1)


@pytest.mark.skipif(not _GLIBC_LINUX, reason="the tunables are glibc's")
def test_reexec_keeps_the_command_line_and_sets_the_tunables():
  tunables, rest = _probe(_clean_env(JAX_PLATFORMS="cpu"))
  assert tunables == hostenv.TUNABLES
  assert rest.strip().endswith("['a', '--b=c']")  # same arguments after the exec


def test_opt_out_and_user_settings_are_kept():
  tunables, _ = _probe(_clean_env(JAX_PLATFORMS="cpu", ZEROSHOT_HARNESS_ALLOCATOR="system"))
  assert tunables == "-"
  tunables, _ = _probe(_clean_env(JAX_PLATFORMS="cpu", GLIBC_TUNABLES="glibc.malloc.arena_max=2"))
  assert tunables == "glibc.malloc.arena_max=2"
