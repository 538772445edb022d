"""Path settings on storage URIs (experiments/runtime/storage.py) and the checkpoint keep policy.

URIs are tested offline on gs:// itself, redirected to a local folder (tests/fake_gcs.py): the
harness, etils.epath and orbax see 'gs://bucket/...' throughout; only the bytes land locally.
"""

import json
import os
import pathlib
import subprocess
import sys
import time

import numpy as np
import pytest
from etils.epath import gpath

from experiments import grid, train
from experiments import metrics as metrics_lib
from experiments import run_config, testing
from experiments import trainer as trainer_lib
from experiments.runtime import checkpoints, storage

REPO_ROOT = testing.REPO_ROOT
FAKE_GCS = pathlib.Path(__file__).resolve().parent / "fake_gcs.py"


def _stray_scheme_folders() -> list[str]:
  """Local folders a URI turned into a path would leave ('gs:', 'nosuch:' ...)."""
  return [p.name for p in REPO_ROOT.iterdir() if p.name.endswith(":")]


# ------------------------------------------------------------------------------- paths


def test_uris_stay_uris_and_local_paths_become_absolute(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  assert str(storage.as_path("gs://bucket/run")) == "gs://bucket/run"
  assert str(checkpoints.checkpoints_dir("gs://bucket/run")) == "gs://bucket/run/checkpoints"
  assert str(storage.as_path("runs/x")) == str(tmp_path / "runs" / "x")
  assert storage.join("gs://b/g", "cells", "x") == "gs://b/g/cells/x"
  assert storage.relative("gs://b/g/cells/x", "gs://b/g") == "cells/x"
  assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("value,message", [
    ("nosuch://bucket/run", r"MODEL_DIR = 'nosuch://bucket/run': unknown scheme 'nosuch://'"),
    ("s3://bucket/run", r"MODEL_DIR = 's3://bucket/run': orbax writes checkpoints to local "
                        r"paths and gs:// only"),
])
def test_model_dir_on_a_scheme_checkpoints_cannot_use_stops_before_any_work(
    tmp_path, value, message):
  files, bindings = testing.tiny_stack("causal_decoder", "full_lm", value, 4)
  with pytest.raises(run_config.ConfigError, match=message):
    train.run(files, bindings)
  assert not _stray_scheme_folders()


class _Backend:
  """A gs:// backend whose every call runs `answer` (epath calls backend.exists(path), ...)."""

  def __init__(self, answer):
    self._answer = answer

  def __getattr__(self, name):
    return lambda *args, **kwargs: self._answer()


def _no_credentials():
  raise PermissionError("401 Anonymous caller does not have storage.objects.get access")


def _redirect_gs(monkeypatch, backend):
  original = gpath._GPath._backend  # pylint: disable=protected-access
  monkeypatch.setattr(gpath._GPath, "_backend", property(  # pylint: disable=protected-access
      lambda self: backend if self._uri_scheme == "gs" else original.fget(self)))


@pytest.fixture
def unreachable_gcs(monkeypatch):
  _redirect_gs(monkeypatch, _Backend(_no_credentials))
  monkeypatch.setattr(storage, "gcs_client_missing", lambda: None)


def test_unreachable_model_dir_is_one_error_naming_it_before_compilation(
    unreachable_gcs, monkeypatch):
  monkeypatch.setattr(trainer_lib.StepBuilder, "compile",
                      lambda self: pytest.fail("compiled"))
  files, bindings = testing.tiny_stack("causal_decoder", "full_lm", "gs://bucket/run", 4)
  with pytest.raises(run_config.ConfigError,
                     match=r"MODEL_DIR = 'gs://bucket/run' cannot be reached: 401 Anonymous"):
    train.run(files, bindings)
  assert not _stray_scheme_folders()


def test_a_filesystem_that_does_not_answer_times_out_naming_the_setting(monkeypatch):
  _redirect_gs(monkeypatch, _Backend(lambda: time.sleep(30)))
  start = time.monotonic()
  with pytest.raises(storage.StorageError, match=r"GRID_DIR = 'gs://b/g': its filesystem did "
                                                 r"not answer within 0.5 s"):
    storage.check_dir("gs://b/g", "GRID_DIR", create=True, timeout=0.5)
  assert time.monotonic() - start < 5


def test_grid_dir_on_an_unreachable_filesystem_exits_2_writing_nothing(
    unreachable_gcs, tmp_path, capsys):
  gin_file = tmp_path / "g.gin"
  gin_file.write_text((REPO_ROOT / "gin_configs/grids/embedded_smoke.gin").read_text())
  code = testing.cli_exit_code(grid.main, [f"--gin_file={gin_file}",
                                           "--gin.GRID_DIR='gs://bucket/grid'"])
  assert code == 2
  assert "GRID_DIR = 'gs://bucket/grid' cannot be reached" in capsys.readouterr().err
  assert not _stray_scheme_folders()
  assert sorted(p.name for p in tmp_path.iterdir()) == ["g.gin"]


# ----------------------------------------------------------------------------- keep policy


def _save(ckpt, step):
  ckpt.save(step, {"w": np.full(2, step, np.float32)}, {"step": np.array(step)}, {"step": step})


def test_keep_the_last_k_plus_every_nth_and_never_overwrite(tmp_path):
  ckpt = checkpoints.Checkpointer(tmp_path, keep=2, keep_period=4, async_save=False)
  for step in range(1, 10):
    _save(ckpt, step)
  assert ckpt.all_steps() == [4, 8, 9]
  before = (tmp_path / "checkpoints" / "9" / "meta" / "metadata").read_text()
  assert ckpt.save(9, {"w": np.zeros(2, np.float32)}, {"step": np.array(0)}, {"step": 0}) is False
  assert (tmp_path / "checkpoints" / "9" / "meta" / "metadata").read_text() == before
  ckpt.close()


def test_time_based_save_is_due_after_the_interval_and_resets_on_save(tmp_path):
  ckpt = checkpoints.Checkpointer(tmp_path, save_minutes=0.5 / 60, async_save=False)
  assert not ckpt.time_due(1)
  time.sleep(0.6)
  assert ckpt.time_due(1)
  _save(ckpt, 1)
  assert not ckpt.time_due(1)
  assert not checkpoints.Checkpointer(tmp_path, async_save=False).time_due(1)  # no interval: never
  ckpt.close()


def test_on_several_hosts_process_0_decides_at_logging_steps(tmp_path, monkeypatch):
  """Every host must agree to join a save: the decision is process 0's, broadcast."""
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  decided = []
  ckpt = checkpoints.Checkpointer(tmp_path, save_minutes=1e-9, time_check_period=5,
                                  async_save=False)
  with monkeypatch.context() as m:  # two processes for time_due only (orbax would sync them)
    m.setattr(checkpoints.jax, "process_count", lambda: 2)
    m.setattr(multihost_utils, "broadcast_one_to_all", lambda x: decided.append(bool(x)) or x)
    due = [ckpt.time_due(s) for s in range(1, 11)]
  assert due == [False] * 4 + [True] + [False] * 4 + [True]
  assert decided == [True, True]  # one broadcast per check, none between
  ckpt.close()


@pytest.mark.parametrize("binding,message", [
    ("experiments.train.train.keep_checkpoints = 0", "train.keep_checkpoints must be a positive "
                                                     "integer or None, got 0"),
    ("experiments.train.train.checkpoint_minutes = -5", "train.checkpoint_minutes must be a "
                                                        "positive number"),
    ("experiments.train.train.keep_period = 7", "keep_period = 7 with train.keep_checkpoints = "
                                                "None"),
])
def test_bad_policy_is_named(tmp_path, binding, message):
  files, bindings = testing.tiny_stack("causal_decoder", "full_lm", tmp_path, 4, extra=[binding])
  with pytest.raises(run_config.ConfigError, match=message):
    train.run(files, bindings)
  assert not (tmp_path / "checkpoints").exists()


def test_training_saves_by_time_and_keeps_by_policy(tmp_path):
  files, bindings = testing.tiny_stack(
      "causal_decoder", "full_lm", tmp_path, 6, checkpoint_period=100, extra=[
          "experiments.train.train.checkpoint_minutes = 1e-9",  # due after every step
          "experiments.train.train.keep_checkpoints = 2",
          "experiments.train.train.keep_period = 3",
          "experiments.train.train.async_checkpointing = False"])
  train.run(files, bindings)
  assert checkpoints.Checkpointer(tmp_path).all_steps() == [3, 5, 6]
  # Iterator states are pruned before each save, against the steps kept until then.
  assert sorted(int(p.name) for p in (tmp_path / "data_state").iterdir()) == [3, 4, 5, 6]


def test_paper_recipes_set_the_policy():
  text = (REPO_ROOT / "gin_configs/base/train.gin").read_text()
  for binding in ("keep_checkpoints = 3", "keep_period = 20000", "checkpoint_minutes = 60"):
    assert f"experiments.train.train.{binding}\n" in text


def test_initial_checkpoint_on_gs_restores_params_and_optimizer_state(tmp_path, monkeypatch):
  sys.path.insert(0, str(FAKE_GCS.parent))
  import fake_gcs  # pylint: disable=g-import-not-at-top
  sys.path.pop(0)
  fake_gcs.install(str(tmp_path / "root"), monkeypatch.setattr)
  monkeypatch.chdir(tmp_path)
  params = {"w": np.arange(4, dtype=np.float32)}
  state = {"step": np.array(7, np.int32), "v": np.full(3, 0.5, np.float32)}
  ckpt = checkpoints.Checkpointer("gs://bucket/src", async_save=False)
  ckpt.save(7, params, state, {"step": 7})
  ckpt.close()
  step_dir = storage.check_dir("gs://bucket/src", "INITIAL_CHECKPOINT_PATH", checkpoints=True)
  step_dir = checkpoints.resolve_step_dir(step_dir)
  assert str(step_dir) == "gs://bucket/src/checkpoints/7"
  restored = checkpoints.restore_params("gs://bucket/src", params)
  np.testing.assert_array_equal(restored["w"], params["w"])
  rest = checkpoints.restore_train_state("gs://bucket/src/checkpoints/7", state)
  np.testing.assert_array_equal(rest["v"], state["v"])
  assert sorted(p.name for p in tmp_path.iterdir()) == ["root"]  # no local 'gs:' folder


# ------------------------------------------------------------------- the cycle on gs://


def _fake_gcs_run(root, module, args, env=None):
  full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3",
              "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
              **(env or {})}
  return subprocess.run([sys.executable, str(FAKE_GCS), str(root), module, *args], cwd=REPO_ROOT,
                        env=full_env, capture_output=True, text=True, timeout=600, check=False)


_GRID = """
import experiments.grid_spec
experiments.grid_spec.grid_definition.name = 'gs_cycle'
experiments.grid_spec.grid_definition.gin_files = ['gin_configs/data/embedded.gin',
                                                   'gin_configs/local_tiny.gin']
experiments.grid_spec.grid_definition.bindings = ['experiments.train.train.log_period = 2']
experiments.grid_spec.grid_definition.eval_bindings = [
    'eval.zero_shot.evaluate_checkpoint.embedded_examples = 4']
experiments.grid_spec.grid_definition.pretrain_steps = 2
experiments.grid_spec.grid_definition.batch_size = 2
experiments.grid_spec.grid_definition.feature_lengths = {'full_lm': {'targets': 32}}
experiments.grid_spec.grid_definition.mtf_steps = 1
experiments.grid_spec.grid_definition.mtf_batch_size = 2
experiments.grid_spec.grid_definition.mtf_feature_lengths = {'inputs': 48, 'targets': 16}
experiments.grid_spec.grid_definition.suites = ['embedded']
experiments.grid_spec.grid_definition.cells = [
    {'name': 'CD:FLM', 'arch': 'causal_decoder', 'objective': 'full_lm',
     'stages': ['pretrain', 'eval']}]
"""


@pytest.mark.slow
def test_train_kill_resume_eval_and_grid_on_gs(tmp_path):
  root = tmp_path / "bucket_root"
  files, bindings = testing.tiny_stack(
      "causal_decoder", "full_lm", "gs://bucket/run", 6, checkpoint_period=2, log_period=1,
      extra=["experiments.train.train.async_checkpointing = False"])
  flags = testing.as_flags(files, bindings)
  killed = _fake_gcs_run(root, "experiments.train", flags,
                         {"ZEROSHOT_HARNESS_SIGNAL_AT_STEP": "4"})
  assert killed.returncode == -9, killed.stderr[-3000:]
  run = root / "bucket" / "run"
  assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["2", "4"]
  assert (run / "data_state" / "4" / "host0" / "COMPLETE").is_file()
  resumed = _fake_gcs_run(root, "experiments.train", flags)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert "Resumed from gs://bucket/run/checkpoints/4" in resumed.stderr
  assert "restoring the iterator state" in resumed.stderr
  assert [r["step"] for r in metrics_lib.read_metrics(run) if "loss" in r] == [1, 2, 3, 4, 5, 6]
  assert list((run / "train").glob("events.out.tfevents.*"))
  assert (run / "config.gin").is_file() and not (run / "LOCK").exists()
  # Bitwise the uninterrupted run (a local MODEL_DIR).
  ref = tmp_path / "ref"
  testing.run_subprocess(*testing.tiny_stack("causal_decoder", "full_lm", ref, 6,
                                             checkpoint_period=2, log_period=1))
  assert metrics_lib.read_metrics(ref)
  strip = lambda rows: [{k: v for k, v in r.items() if "second" not in k and k != "mfu"}  # noqa
                        for r in rows]
  assert strip(metrics_lib.read_metrics(run)) == strip(metrics_lib.read_metrics(ref))

  evaluated = _fake_gcs_run(root, "eval.zero_shot", [
      *[f"--gin_file={f}" for f in testing.EVAL_STACK],
      "--gin_file=gin_configs/local_tiny.gin",
      "--gin.CHECKPOINT_PATH='gs://bucket/run'", "--gin.EVAL_SUITE='embedded'",
      "--gin.EVAL_OUTPUT_DIR='gs://bucket/run/eval'",
      "--gin.eval.zero_shot.evaluate_checkpoint.embedded_examples=4"])
  assert evaluated.returncode == 0, evaluated.stderr[-3000:]
  results = json.loads((run / "eval" / "results.json").read_text())
  assert results["checkpoint"]["step_dir"] == "gs://bucket/run/checkpoints/6"
  assert (run / "eval" / "examples.jsonl.gz").is_file()

  grid_file = tmp_path / "gs_cycle.gin"
  grid_file.write_text(_GRID)
  gridded = _fake_gcs_run(root, "experiments.grid", [f"--gin_file={grid_file}",
                                                     "--gin.GRID_DIR='gs://bucket/grid'"])
  assert gridded.returncode == 0, gridded.stderr[-3000:] + gridded.stdout[-3000:]
  out = root / "bucket" / "grid"
  for name in ("grid.json", "status.json", "results.csv", "summary.md", "summary.png"):
    assert (out / name).is_file(), name
  assert (out / "cells").is_dir()
  assert not _stray_scheme_folders()
  assert not [p for p in tmp_path.iterdir() if p.name.endswith(":")]
