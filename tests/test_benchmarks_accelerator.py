"""benchmarks/accelerator.sh on CPU: valid bash, and a dry run that names its steps and limits."""

import json
import re
import shutil
import subprocess

import pytest

SCRIPT = "benchmarks/accelerator.sh"


@pytest.fixture(scope="module")
def dry_run(repo_root):
  if shutil.which("bash") is None or shutil.which("timeout") is None:
    pytest.skip("needs bash and coreutils' timeout")
  syntax = subprocess.run(["bash", "-n", SCRIPT], cwd=repo_root, capture_output=True, text=True,
                          check=False)
  assert syntax.returncode == 0, syntax.stderr
  proc = subprocess.run(["bash", SCRIPT, "--dry-run"], cwd=repo_root, capture_output=True,
                        text=True, timeout=60, check=False, env={"PATH": "/usr/bin:/bin",
                                                                 "OUT": "out_dir"})
  assert proc.returncode == 0, proc.stderr
  return proc.stdout


def test_dry_run_prints_every_step_with_a_time_limit_under_eight_minutes(dry_run, repo_root):
  lines = dry_run.strip().splitlines()
  assert lines[0].startswith("timeout ") and "make install ACCEL=cuda12" in lines[0]
  assert any("-m benchmarks.recipe_throughput --json" in l and "runs/decoder_1b_1gpu.gin" in l
             for l in lines)
  assert any("-m benchmarks.train_throughput --json" in l for l in lines)
  if (repo_root / "benchmarks" / "attention.py").exists():
    assert any("-m benchmarks.attention --json" in l for l in lines)
  assert all(re.search(r"> out_dir/\w+\.(json|txt) 2> out_dir/\w+\.log$", l) for l in lines)
  limits = [int(re.match(r"timeout (\d+)s ", l).group(1)) for l in lines]
  assert sum(limits) + 10 * len(limits) < 8 * 60, limits
  # Every gin file and module it names is shipped.
  for path in re.findall(r"--gin_file=(\S+)", dry_run):
    assert (repo_root / path).exists(), path
  for module in re.findall(r"-m (benchmarks\.\w+)", dry_run):
    assert (repo_root / (module.replace(".", "/") + ".py")).exists(), module


def test_unknown_argument_is_refused(repo_root):
  proc = subprocess.run(["bash", SCRIPT, "--fast"], cwd=repo_root, capture_output=True, text=True,
                        timeout=60, check=False)
  assert proc.returncode == 2 and "unknown argument --fast" in proc.stderr


@pytest.mark.slow
def test_recipe_benchmark_times_the_1b_recipe_shrunk_by_local_tiny(capsys):
  from benchmarks import recipe_throughput  # pylint: disable=g-import-not-at-top
  files = ["gin_configs/arch/causal_decoder.gin", "gin_configs/data/c4.gin",
           "gin_configs/objectives/full_lm.gin", "gin_configs/runs/decoder_1b_1gpu.gin",
           "gin_configs/local_tiny.gin"]
  assert recipe_throughput.main([f"--gin_file={f}" for f in files]
                                + ["--json", "--steps=1", "--warmup=1"]) == 0
  out = json.loads(capsys.readouterr().out)["result"]
  assert out["tokens_per_second"] > 0 and out["seconds_per_step"] > 0
  assert out["batch_size"] == 2 and out["num_microbatches"] == 1  # the overlay's
  assert 0.75 < out["estimated_memory_gib"] / out["xla_memory_gib"] < 1.5
