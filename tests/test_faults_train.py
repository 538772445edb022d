"""Faults around a training run: damaged checkpoints, a shared or reused MODEL_DIR, a corpus that
cannot fill a batch, a stalled pipeline, SIGTERM and Ctrl-C, stale metrics, small messages."""

import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import threading

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
import tensorflow as tf

from experiments import data as data_lib
from experiments import grid
from experiments import grid_plan
from experiments import grid_spec
from experiments import loop
from experiments import metrics as metrics_lib
from experiments import run_config
from experiments import testing
from experiments import trainer as trainer_lib
from experiments import train
from experiments.runtime import checkpoints
from experiments.runtime import errors


def _stack(model_dir, steps, *extra, checkpoint_period=2, log_period=2):
  return testing.tiny_stack("causal_decoder", "full_lm", model_dir, steps,
                            checkpoint_period=checkpoint_period, log_period=log_period,
                            extra=list(extra))


def _saved_params(step_dir):
  """The parameter arrays of one step, as saved (no model needed)."""
  return ocp.StandardCheckpointer().restore(pathlib.Path(step_dir) / "params")


def _assert_same_arrays(a, b):
  leaves_a, leaves_b = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
  assert len(leaves_a) == len(leaves_b) > 0
  for x, y in zip(leaves_a, leaves_b):
    assert np.array_equal(np.asarray(x), np.asarray(y))


def _no_compile_and_no_pipeline(monkeypatch):
  """Errors meant to come before the pipeline and compilation fail the test if they do not."""
  def refuse(*args, **kwargs):
    raise AssertionError("reached the data pipeline or compilation")
  monkeypatch.setattr(trainer_lib.StepBuilder, "compile", refuse)
  monkeypatch.setattr(data_lib, "TrainData", refuse)


@pytest.fixture(scope="module")
def ref(tmp_path_factory):
  """CD:FLM, 8 steps, a checkpoint every 2: the uninterrupted reference."""
  model_dir = tmp_path_factory.mktemp("ref")
  train.run(*_stack(model_dir, 8))
  return model_dir


# ------------------------------------------------------------------------ damaged checkpoints


def test_damaged_checkpoints_are_set_aside_and_the_run_resumes_bitwise(ref, tmp_path, caplog):
  model_dir = tmp_path / "run"
  shutil.copytree(ref, model_dir)
  ckpt = model_dir / "checkpoints"
  (ckpt / "10").mkdir()  # an empty step folder is not a step
  (ckpt / "8" / "params" / "_METADATA").unlink()
  data_files = lambda step: sorted((ckpt / str(step) / "params").rglob("d/*"),  # noqa: E731
                                   key=lambda p: p.stat().st_size)
  truncated = data_files(6)[-1]
  half = truncated.stat().st_size // 2
  truncated.write_bytes(truncated.read_bytes()[:half])
  data_files(4)[-1].unlink()
  caplog.set_level("WARNING")
  summary = train.run(*_stack(model_dir, 8))
  assert summary["final_step"] == 8
  skipped = [r.getMessage() for r in caplog.records if "Skipped checkpoint" in r.getMessage()]
  assert [m.split()[3] for m in skipped] == ["10", "8", "6", "4"], skipped
  assert all(len(m.splitlines()) == 1 and "resuming from step 2" in m for m in skipped)
  assert "an empty folder" in skipped[0] and "params/_METADATA is missing" in skipped[1]
  assert all("cannot be read" in m for m in skipped[2:])
  # Nothing deleted: the damaged steps are beside the checkpoints; the run redid 4, 6 and 8.
  aside = model_dir / checkpoints.DAMAGED_SUBDIR
  assert sorted(p.name for p in aside.iterdir()) == ["10", "4", "6", "8"]
  assert (aside / truncated.relative_to(ckpt)).stat().st_size == half
  assert checkpoints.Checkpointer(model_dir).all_steps() == [2, 4, 6, 8]
  _assert_same_arrays(_saved_params(ckpt / "8"), _saved_params(ref / "checkpoints" / "8"))
  strip = lambda rows: [{k: v for k, v in r.items() if "second" not in k and k != "mfu"}  # noqa
                        for r in rows]
  assert strip(metrics_lib.read_metrics(model_dir)) == strip(metrics_lib.read_metrics(ref))
  # Reading a damaged step directly names what is damaged, not the model.
  with pytest.raises(checkpoints.CheckpointError, match="params/_METADATA is missing"):
    checkpoints.resolve_step_dir(aside / "8")


def test_when_no_step_can_be_read_the_run_stops_and_moves_nothing(ref, tmp_path, monkeypatch):
  _no_compile_and_no_pipeline(monkeypatch)
  shutil.copytree(ref, tmp_path / "run")
  for step_dir in (tmp_path / "run" / "checkpoints").iterdir():
    for data in (step_dir / "params").rglob("d/*"):
      data.write_bytes(b"")
  with pytest.raises(checkpoints.CheckpointError,
                     match=r"No checkpoint in .* can be read; nothing was moved or deleted: "
                           r"step 8: params/.* cannot be read.*step 2: params/"):
    train.run(*_stack(tmp_path / "run", 8))
  assert checkpoints.Checkpointer(tmp_path / "run").all_steps() == [2, 4, 6, 8]
  assert not (tmp_path / "run" / checkpoints.DAMAGED_SUBDIR).exists()


# ------------------------------------------------------------------- MODEL_DIR ownership, resume


def test_a_second_run_on_the_same_model_dir_stops_at_once(tmp_path, monkeypatch):
  _no_compile_and_no_pipeline(monkeypatch)
  with run_config.ModelDirLock(tmp_path):
    with pytest.raises(run_config.ModelDirInUseError,
                       match=rf"in use by another run \(host {socket.gethostname()}, process "
                             rf"{os.getpid()},"):
      train.run(*_stack(tmp_path, 4))
  assert not (tmp_path / run_config.LOCK_FILE).exists()  # released at exit
  # A lock naming another host cannot be checked from here: refused, naming the file to delete.
  (tmp_path / run_config.LOCK_FILE).write_text(json.dumps({"host": "elsewhere", "pid": 1}))
  with pytest.raises(run_config.ModelDirInUseError, match=r"another host \(host elsewhere.*delete"):
    train.run(*_stack(tmp_path, 4))


def test_a_dead_runs_lock_and_rows_are_taken_over(tmp_path, caplog):
  """A run killed before its first checkpoint left its lock and metrics rows 2 and 4."""
  dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                        capture_output=True, text=True, check=True)
  (tmp_path / run_config.LOCK_FILE).write_text(
      json.dumps({"host": socket.gethostname(), "pid": int(dead.stdout)}))
  (tmp_path / "metrics.jsonl").write_text("".join(
      json.dumps({"step": s, "loss": 99.0}) + "\n" for s in (2, 4)))
  caplog.set_level("WARNING")
  train.run(*_stack(tmp_path, 4, checkpoint_period=4))
  assert any(f"process {int(dead.stdout)} is gone" in r.getMessage() for r in caplog.records)
  rows = metrics_lib.read_metrics(tmp_path)
  assert [r["step"] for r in rows] == [2, 4] and all(r["loss"] != 99.0 for r in rows)
  assert not (tmp_path / run_config.LOCK_FILE).exists()
  # TensorBoard: the new event file starts by purging every earlier event from step 1 on.
  (events,) = (tmp_path / "train").glob("events.out.tfevents.*")
  from tensorboardX.proto import event_pb2  # pylint: disable=g-import-not-at-top
  starts = [e.step for e in map(event_pb2.Event.FromString,
                                tf.data.TFRecordDataset(str(events)).as_numpy_iterator())
            if e.HasField("session_log") and e.session_log.status == e.session_log.START]
  assert starts == [1]


@pytest.mark.parametrize("extra,message", [
    (["BATCH_SIZE = 4"], r"BATCH_SIZE: checkpoint 2, this configuration 4"),
    (["TASK_FEATURE_LENGTHS = {'targets': 32}"],
     r"TASK_FEATURE_LENGTHS: checkpoint \{'targets': 64\}, this configuration \{'targets': 32\}"),
    (["CORPUS = 'text'"], r"MIXTURE_OR_TASK_NAME: checkpoint 'embedded_full_lm', this "
                          r"configuration 'text_full_lm'"),
])
def test_resuming_with_another_task_lengths_or_batch_is_refused(ref, tmp_path, monkeypatch,
                                                                extra, message):
  _no_compile_and_no_pipeline(monkeypatch)
  (tmp_path / "a.txt").write_text("to be or not to be, that is the question. " * 200)
  texts = [f"objectives.corpora.text_files.{s}_files = ['{tmp_path}/*.txt']"
           for s in ("train", "validation")]
  before = {p: p.stat().st_mtime_ns for p in ref.rglob("*")}
  with pytest.raises(run_config.ResumeMismatchError,
                     match=message + r".*INITIAL_CHECKPOINT_PATH = '.*/checkpoints/8' and a new "
                                     r"MODEL_DIR"):
    train.run(*_stack(ref, 8, *extra, *texts))
  assert {p: p.stat().st_mtime_ns for p in ref.rglob("*")} == before


# ---------------------------------------------------------------------- data: too small, stalled


def test_a_corpus_smaller_than_one_batch_fails_before_compilation(tmp_path, monkeypatch, capsys):
  _no_compile_and_no_pipeline(monkeypatch)
  (tmp_path / "nul.txt").write_bytes(b"\0" * 50_000)
  texts = [f"objectives.corpora.text_files.{s}_files = ['{tmp_path}/nul.txt']"
           for s in ("train", "validation")]
  stack = _stack(tmp_path / "run", 4, "CORPUS = 'text'", *texts)
  with pytest.raises(data_lib.CorpusTooSmallError,
                     match=r"Corpus 'text' \(task 'text_full_lm'\) yields \d token\(s\) .*one "
                           r"batch needs 128"):
    train.run(*stack)
  # The command line: one line (without gin's call-site note), exit status 2.
  assert testing.cli_exit_code(train.main, testing.as_flags(*stack)) == 2
  err = capsys.readouterr().err.strip()
  assert err.startswith("error: Corpus 'text'") and len(err.splitlines()) == 1, err
  # A folder instead of files: said so, with the glob to use.
  texts = [f"objectives.corpora.text_files.{s}_files = ['{tmp_path}']"
           for s in ("train", "validation")]
  with pytest.raises(errors.ConfigError, match=rf"'{tmp_path}' is a folder.*'{tmp_path}/\*.txt'"):
    train.run(*_stack(tmp_path / "run", 4, "CORPUS = 'text'", *texts))


def _stalled_pipeline(monkeypatch, then=None):
  """The pipeline never yields (for 30 s at most); `then()` runs in the fetching thread first."""
  release = threading.Event()

  def stuck(self):
    if then is not None:
      then()
    release.wait(30)
    raise RuntimeError("the test's stalled pipeline timed out: the run did not stop")

  monkeypatch.setattr(data_lib.TrainData, "__next__", stuck)
  return release


def test_a_stalled_pipeline_stops_the_run_naming_the_corpus(tmp_path, monkeypatch):
  release = _stalled_pipeline(monkeypatch)
  try:
    with pytest.raises(loop.DataStallError, match=r"task 'embedded_full_lm' \(corpus 'embedded'\) "
                                                  r"gave no batch in 0.5 s"):
      train.run(*_stack(tmp_path, 4, "experiments.train.train.first_batch_timeout = 0.5"))
  finally:
    release.set()
  assert not (tmp_path / "checkpoints").exists() or not any((tmp_path / "checkpoints").iterdir())


@pytest.mark.parametrize("signum,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_before_the_first_step_stops_at_once_with_nothing_written(tmp_path, monkeypatch,
                                                                           signum, code):
  release = _stalled_pipeline(monkeypatch, then=lambda: os.kill(os.getpid(), signum))
  try:
    assert testing.cli_exit_code(train.main, testing.as_flags(*_stack(tmp_path, 4))) == code
  finally:
    release.set()
  assert not {"metrics.jsonl", "config.gin", "train", run_config.LOCK_FILE} & {
      p.name for p in tmp_path.iterdir()}
  assert not any((tmp_path / "checkpoints").iterdir())


def test_ctrl_c_during_a_step_finishes_it_saves_and_exits_130(tmp_path, monkeypatch):
  monkeypatch.setenv("ZEROSHOT_HARNESS_SIGNAL_AT_STEP", "3:SIGINT")
  handler = signal.getsignal(signal.SIGINT)
  flags = testing.as_flags(*_stack(tmp_path, 6, checkpoint_period=10))
  assert testing.cli_exit_code(train.main, flags) == 130
  assert checkpoints.Checkpointer(tmp_path).all_steps() == [4]
  assert signal.getsignal(signal.SIGINT) is handler  # put back after the run


def test_ctrl_c_in_a_grid_stops_it_after_the_running_stage(tmp_path, monkeypatch):
  gin_file = tmp_path / "g.gin"
  gin_file.write_text(f"""
import experiments.grid_spec
GRID_DIR = '{tmp_path / 'out'}'
experiments.grid_spec.grid_definition.name = 'two'
experiments.grid_spec.grid_definition.gin_files = ['gin_configs/data/embedded.gin',
                                                   'gin_configs/local_tiny.gin']
experiments.grid_spec.grid_definition.pretrain_steps = 4
experiments.grid_spec.grid_definition.batch_size = 2
experiments.grid_spec.grid_definition.feature_lengths = {{'full_lm': {{'targets': 32}}}}
experiments.grid_spec.grid_definition.mtf_steps = 2
experiments.grid_spec.grid_definition.mtf_batch_size = 2
experiments.grid_spec.grid_definition.mtf_feature_lengths = {{'inputs': 48, 'targets': 16}}
experiments.grid_spec.grid_definition.suites = ['embedded']
experiments.grid_spec.grid_definition.cells = [
    {{'name': 'A', 'arch': 'causal_decoder', 'objective': 'full_lm'}},
    {{'name': 'B', 'arch': 'causal_decoder', 'objective': 'full_lm',
      'bindings': ['experiments.train.train.log_period = 1']}}]
""")
  ran = []

  def interrupted_train(gin_files, bindings):
    ran.append(bindings)
    raise loop.Preempted(signal.SIGINT, "Ctrl-C (SIGINT): saved step 3")

  monkeypatch.setitem(grid.RUNNERS, "train", interrupted_train)
  g, _ = grid_spec.load([str(gin_file)])
  assert not grid.preflight(grid_plan.plan(g, str(tmp_path / "out")))  # both cells are valid
  assert grid.main([f"--gin_file={gin_file}", "--compilation_cache_dir="]) == 130
  assert len(ran) == 1  # the grid stopped instead of going on with cell B
  status = json.loads((tmp_path / "out" / grid.STATUS_JSON).read_text())
  assert list(status.values()) == [{"status": "interrupted"}]
  assert not list((tmp_path / "out").rglob("ERROR"))


# ------------------------------------------------------------------------------ small messages


def test_non_finite_before_any_checkpoint_says_none_was_saved(tmp_path):
  files, bindings = _stack(
      tmp_path, 6, "experiments.optimizers.adafactor.learning_rate = "
      "@experiments.optimizers.constant_schedule()",
      "experiments.optimizers.constant_schedule.value = 1e30", checkpoint_period=10)
  with pytest.raises(train.NonFiniteError, match="no checkpoint was saved yet") as err:
    train.run(files, bindings)
  assert "None" not in str(err.value)


def test_model_dir_that_is_a_file(tmp_path):
  (tmp_path / "run").write_text("")
  with pytest.raises(run_config.ConfigError, match=r"MODEL_DIR = '.*run' is a file, expected a "
                                                   r"folder\."):
    train.run(*_stack(tmp_path / "run", 4))
