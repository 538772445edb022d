"""Tiny end-to-end runs on the embedded corpus: learning, exact resume after kill -9, adaptation."""

import re

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from arch import config as config_lib
from arch import models
from experiments.runtime import checkpoints
from experiments import metrics as metrics_lib
from experiments import run_config
from experiments import testing
from experiments import train

# Timing fields differ between runs; everything else in metrics.jsonl must not.
_TIMING = ("seconds_per_step", "data_wait_seconds_per_step", "tokens_per_second",
           "tflops_per_second_per_device", "mfu")


def _model_metrics(model_dir):
  return {r["step"]: {k: v for k, v in r.items() if k not in _TIMING}
          for r in metrics_lib.read_metrics(model_dir)}


def _params(model_dir, arch="causal_decoder"):
  model = models.get_model(arch, config_lib.TransformerConfig(
      vocab_size=4100, emb_dim=32, num_heads=4, head_dim=8, mlp_dim=64, num_layers=2,
      num_encoder_layers=2, num_decoder_layers=2), vocabulary=None)
  shapes = model.input_shapes(1, {"targets": 64})
  abstract = jax.eval_shape(lambda: model.get_initial_variables(jax.random.PRNGKey(0), shapes))
  return checkpoints.restore_params(model_dir, abstract["params"])


@pytest.fixture(scope="module")
def cd_run(tmp_path_factory):
  """CD:FLM, 40 steps, checkpoints every 10: the uninterrupted reference."""
  model_dir = tmp_path_factory.mktemp("cd_flm")
  files, bindings = testing.tiny_stack("causal_decoder", "full_lm", model_dir, 40,
                                       checkpoint_period=10)
  summary = train.run(files, bindings)
  return model_dir, summary


@pytest.mark.slow
@pytest.mark.parametrize("arch,objective", [
    ("non_causal_decoder", "prefix_lm"),
    ("encoder_decoder", "span_corruption"),
])
def test_tiny_runs_lower_the_loss(tmp_path, arch, objective):
  files, bindings = testing.tiny_stack(arch, objective, tmp_path, 40, checkpoint_period=40)
  summary = train.run(files, bindings)
  _assert_learns(tmp_path, summary, 40)


def test_tiny_causal_decoder_lowers_the_loss(cd_run):
  model_dir, summary = cd_run
  _assert_learns(model_dir, summary, 40)


def _assert_learns(model_dir, summary, steps):
  records = metrics_lib.read_metrics(model_dir)
  assert summary["final_step"] == steps and records[-1]["step"] == steps
  first, last = records[0]["loss_per_token"], records[-1]["loss_per_token"]
  # Margin: from about ln(4100) = 8.3 nats per token at init, a tiny model must shed >= 1 nat.
  assert last < first - 1.0, (first, last)
  assert all(r["finite"] for r in records)
  assert (model_dir / "config.gin").is_file()
  assert list((model_dir / "train").glob("events.out.tfevents.*"))


def _kill_9_then_rerun(run_dir, ref_dir, steps, extra=()):
  """SIGKILL right after step 20's asynchronous save was started (that save may be torn), rerun:
  bitwise the same parameters and model metrics at every logged step as the uninterrupted run."""
  files, bindings = testing.tiny_stack("causal_decoder", "full_lm", run_dir, steps,
                                       checkpoint_period=10, extra=list(extra))
  killed = testing.run_subprocess(files, bindings,
                                  env={"ZEROSHOT_HARNESS_SIGNAL_AT_STEP": "20"})
  assert killed.returncode == -9, killed.stderr[-2000:]
  survived = checkpoints.Checkpointer(run_dir).all_steps()
  assert survived and set(survived) <= {10, 20}
  resumed = testing.run_subprocess(files, bindings)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert "Resuming at step" in resumed.stderr
  for a, b in zip(jax.tree_util.tree_leaves(_params(run_dir)),
                  jax.tree_util.tree_leaves(_params(ref_dir))):
    assert np.array_equal(np.asarray(a), np.asarray(b))
  assert _model_metrics(run_dir) == _model_metrics(ref_dir)


@pytest.mark.slow
def test_kill_9_then_rerun_equals_uninterrupted(tmp_path, cd_run):
  _kill_9_then_rerun(tmp_path, cd_run[0], 40)


@pytest.mark.slow
def test_kill_9_then_rerun_equals_uninterrupted_with_the_reference_kernels(tmp_path):
  """As above with attention_impl = 'xla' (the CPU default 'auto' runs the 'cpu' kernels); the
  run stops at step 20, so the kill hits the last step's save."""
  xla = ["arch.config.TransformerConfig.attention_impl = 'xla'"]
  ref_dir = tmp_path / "ref"
  train.run(*testing.tiny_stack("causal_decoder", "full_lm", ref_dir, 20, checkpoint_period=10,
                                extra=xla))
  _kill_9_then_rerun(tmp_path / "run", ref_dir, 20, xla)


@pytest.mark.slow
def test_cd_checkpoint_adapts_as_nd_on_another_objective(tmp_path, cd_run):
  cd_dir, _ = cd_run
  cd_params = _params(cd_dir)
  nd_params = _params(cd_dir, "non_causal_decoder")  # a CD checkpoint restores as ND
  for a, b in zip(jax.tree_util.tree_leaves(cd_params), jax.tree_util.tree_leaves(nd_params)):
    assert np.array_equal(np.asarray(a), np.asarray(b))
  files, bindings = testing.tiny_stack(
      "non_causal_decoder", "span_corruption", tmp_path, 50, run="adapt", checkpoint_period=10,
      extra=[f"INITIAL_CHECKPOINT_PATH = '{cd_dir}'"])
  summary = train.run(files, bindings)
  assert summary["final_step"] == 50
  records = metrics_lib.read_metrics(tmp_path)
  assert [r["step"] for r in records] == [45, 50]  # the step count continued from 40
  assert checkpoints.Checkpointer(tmp_path).all_steps() == [50]
  meta = checkpoints.read_meta(tmp_path / "checkpoints" / "50")
  assert meta["task"] == "embedded_span_corruption" and meta["data_position"] == 10
  # The optimizer state came with the parameters (t5x's finetuning): Adafactor's count went on
  # from 40 (a fresh state would be at 10).
  saved = ocp.StandardCheckpointer().restore(tmp_path / "checkpoints" / "50" / "train_state")
  counts = [int(x) for p, x in jax.tree_util.tree_leaves_with_path(saved["opt_state"])
            if "count" in jax.tree_util.keystr(p)]
  assert counts == [50], counts


def test_incompatible_checkpoint_fails_before_training_and_keeps_it(tmp_path, cd_run):
  cd_dir, _ = cd_run
  before = {p: p.stat().st_mtime_ns for p in cd_dir.rglob("*")}
  files, bindings = testing.tiny_stack(
      "causal_decoder", "full_lm", cd_dir, 60,
      extra=["arch.config.TransformerConfig.emb_dim = 64"])
  with pytest.raises(run_config.ResumeMismatchError,
                     match=r"MODEL: checkpoint 'causal_decoder .*emb_dim=32.*this configuration "
                           r"'causal_decoder .*emb_dim=64.*INITIAL_CHECKPOINT_PATH"):
    train.run(files, bindings)
  files, bindings = testing.tiny_stack("encoder_decoder", "span_corruption", tmp_path, 60,
                                       extra=[f"INITIAL_CHECKPOINT_PATH = '{cd_dir}'"])
  with pytest.raises(checkpoints.CheckpointError, match="absent from the checkpoint"):
    train.run(files, bindings)
  assert {p: p.stat().st_mtime_ns for p in cd_dir.rglob("*")} == before
  assert not (tmp_path / "checkpoints").exists() or not list((tmp_path / "checkpoints").iterdir())


def test_non_finite_loss_stops_naming_the_step_and_keeps_good_checkpoints(tmp_path):
  files, bindings = testing.tiny_stack(
      "causal_decoder", "full_lm", tmp_path, 10, checkpoint_period=1, log_period=1,
      extra=["experiments.optimizers.adafactor.learning_rate = "
             "@experiments.optimizers.constant_schedule()",
             "experiments.optimizers.constant_schedule.value = 1e30"])
  with pytest.raises(train.NonFiniteError, match=r"at step (\d+)") as err:
    train.run(files, bindings)
  bad_step = int(re.search(r"at step (\d+)", str(err.value)).group(1))
  steps = checkpoints.Checkpointer(tmp_path).all_steps()
  assert bad_step >= 2 and steps == list(range(1, bad_step))
  assert all(np.isfinite(r["loss"]) for r in metrics_lib.read_metrics(tmp_path))
  # The command-line entry point turns it into a non-zero exit status.
  assert testing.cli_exit_code(train.main, testing.as_flags(files, bindings)) == 1


@pytest.mark.slow
def test_sigterm_saves_the_current_step_and_the_rerun_matches(tmp_path, cd_run, monkeypatch):
  ref_dir, _ = cd_run
  files, bindings = testing.tiny_stack("causal_decoder", "full_lm", tmp_path, 40,
                                       checkpoint_period=10)
  monkeypatch.setenv("ZEROSHOT_HARNESS_SIGNAL_AT_STEP", "12:SIGTERM")
  with pytest.raises(train.Preempted, match="saved step 13"):
    train.run(files, bindings)
  assert checkpoints.Checkpointer(tmp_path).all_steps() == [10, 13]
  monkeypatch.delenv("ZEROSHOT_HARNESS_SIGNAL_AT_STEP")
  assert train.run(files, bindings)["final_step"] == 40
  for a, b in zip(jax.tree_util.tree_leaves(_params(tmp_path)),
                  jax.tree_util.tree_leaves(_params(ref_dir))):
    assert np.array_equal(np.asarray(a), np.asarray(b))
  assert _model_metrics(tmp_path) == _model_metrics(ref_dir)


def test_tiny_nd_prefix_lm_on_rows_of_decoder_length(tmp_path):
  # The paper's ND:PLM layout: one L-token sequence per row; tokens and FLOPs count L per row.
  L = 32
  files, bindings = testing.tiny_stack(
      "non_causal_decoder", "prefix_lm", tmp_path, 2, batch_size=4, log_period=1,
      checkpoint_period=2, lengths={"inputs": L, "targets": L, "decoder_length": L})
  summary = train.run(files, bindings)
  assert summary["final_step"] == 2
  records = metrics_lib.read_metrics(tmp_path)
  # Every row holds one sequence of L tokens split in [1, L): L - s >= 1 targets each.
  assert all(4 <= r["num_tokens"] <= 4 * (L - 1) for r in records)
  model = models.get_model("non_causal_decoder", config_lib.TransformerConfig(
      vocab_size=4100, emb_dim=32, num_heads=4, head_dim=8, mlp_dim=64, num_layers=2))
  shapes = model.input_shapes(4, {"inputs": L, "targets": L, "decoder_length": L})
  assert run_config.tokens_per_step(shapes) == 4 * L
