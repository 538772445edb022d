"""Tiny training configurations for tests, smoke runs and benchmarks (the `tiny` overlay stack)."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
from typing import Mapping, Sequence

from experiments.runtime import gin_utils

REPO_ROOT = gin_utils.REPO_ROOT

# Short sequences that each objective's length helper accepts.
TINY_LENGTHS = {
    "full_lm": {"targets": 64},
    "prefix_lm": {"inputs": 64, "targets": 64},
    "span_corruption": {"inputs": 64, "targets": 16},
    "ul2": {"inputs": 64, "targets": 64},
}


def tiny_stack(arch: str, objective: str, model_dir: str | pathlib.Path, train_steps: int,
               batch_size: int = 2, run: str = "pretrain", log_period: int = 5,
               checkpoint_period: int = 10, extra: Sequence[str] = (),
               lengths: Mapping[str, int] | None = None) -> tuple[list[str], list[str]]:
  """(gin files, gin bindings) of a tiny run: arch, tiny size, embedded data, objective, run."""
  files = [
      f"gin_configs/arch/{arch}.gin", "gin_configs/sizes/tiny.gin",
      "gin_configs/data/embedded.gin", f"gin_configs/objectives/{objective}.gin",
      f"gin_configs/runs/{run}.gin",
  ]
  bindings = [
      f"MODEL_DIR = '{model_dir}'",
      f"TRAIN_STEPS = {train_steps}",
      f"BATCH_SIZE = {batch_size}",
      f"TASK_FEATURE_LENGTHS = {dict(lengths or TINY_LENGTHS[objective])!r}",
      f"experiments.train.train.log_period = {log_period}",
      f"experiments.train.train.checkpoint_period = {checkpoint_period}",
      *extra,
  ]
  return files, bindings


def as_flags(gin_files: Sequence[str], gin_bindings: Sequence[str]) -> list[str]:
  """Command-line flags equivalent to (files, bindings)."""
  return [f"--gin_file={f}" for f in gin_files] + [f"--gin_bindings={b}" for b in gin_bindings]


def run_subprocess(gin_files: Sequence[str], gin_bindings: Sequence[str],
                   env: Mapping[str, str] | None = None, timeout: float = 600
                   ) -> subprocess.CompletedProcess:
  """`python -m experiments.train ...` from the repository root, output captured."""
  full_env = dict(os.environ)
  full_env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  full_env["PYTHONPATH"] = os.pathsep.join(
      [str(REPO_ROOT)] + ([full_env["PYTHONPATH"]] if full_env.get("PYTHONPATH") else []))
  full_env.update(env or {})
  return subprocess.run(
      [sys.executable, "-m", "experiments.train", *as_flags(gin_files, gin_bindings)],
      cwd=REPO_ROOT, env=full_env, capture_output=True, text=True, timeout=timeout, check=False)
