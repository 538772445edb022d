"""Tiny training stacks for tests and smoke runs (gin_configs/local_tiny.gin appended last)."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
from typing import Callable, Mapping, Sequence

from experiments.runtime import cli
from experiments.runtime import gin_utils

REPO_ROOT = gin_utils.REPO_ROOT

def tiny_stack(arch: str, objective: str | None, model_dir: str | pathlib.Path,
               train_steps: int, batch_size: int = 2, run: str = "pretrain", log_period: int = 5,
               checkpoint_period: int = 10, extra: Sequence[str] = (),
               lengths: Mapping[str, int] | None = None) -> tuple[list[str], list[str]]:
  """(gin files, gin bindings) of a CPU run: arch, data, objective, run + gin_configs/local_tiny.gin.

  objective=None for a run file that names its own task (runs/finetune.gin). `lengths` overrides
  the objective's tiny feature lengths.
  """
  files = [f"gin_configs/arch/{arch}.gin", "gin_configs/data/embedded.gin",
           *([f"gin_configs/objectives/{objective}.gin"] if objective else []),
           f"gin_configs/runs/{run}.gin", "gin_configs/local_tiny.gin"]
  bindings = [
      f"MODEL_DIR = '{model_dir}'",
      f"TRAIN_STEPS = {train_steps}",
      f"BATCH_SIZE = {batch_size}",
      *([f"TASK_FEATURE_LENGTHS = {dict(lengths)!r}"] if lengths else []),
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


def cli_exit_code(main: Callable[[list[str]], int | None], argv: Sequence[str]) -> int:
  """The exit status of an entry point's main under experiments.runtime.cli, in this process."""
  try:
    cli.run(main, argv=list(argv))
  except SystemExit as e:
    return int(e.code or 0)
  raise AssertionError("cli.run returned without exiting")


EVAL_STACK = ("gin_configs/arch/causal_decoder.gin", "gin_configs/sizes/tiny.gin",
              "gin_configs/data/embedded.gin")


def untrained_eval_checkpoint(path: str | pathlib.Path, step: int = 1) -> pathlib.Path:
  """A MODEL_DIR holding one complete step of EVAL_STACK's tiny causal decoder at initialisation
  (no training): enough for evaluation tests. Leaves gin parsed with that stack."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from arch import models  # pylint: disable=g-import-not-at-top
  from eval import zero_shot  # pylint: disable=g-import-not-at-top
  from experiments.runtime import checkpoints  # pylint: disable=g-import-not-at-top
  zero_shot.parse(list(EVAL_STACK), [f"CHECKPOINT_PATH = '{path}'", "EVAL_SUITE = 'embedded'"])
  model = models.get_model()
  params = model.get_initial_variables(jax.random.PRNGKey(0),
                                       model.input_shapes(1, {"targets": 8}))["params"]
  ckpt = checkpoints.Checkpointer(path, async_save=False)
  ckpt.save(step, params, {"step": np.array(step, np.int32)}, {"step": step})
  ckpt.close()
  return pathlib.Path(path)
