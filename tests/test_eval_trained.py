"""End to end: a tiny CD trained briefly on the embedded corpus beats chance on a held-out family.

Trains through the real trainer (experiments.train.run) and evaluates through the real entry point
(eval.zero_shot.run), so the checkpoint, the gin stack and results.json are all exercised.
Stated margin: word_order accuracy >= 0.5 + 0.15 with n = 120 examples per prompt (0.15 is over
3 binomial standard errors at chance); measured about 0.85 after 150 steps.
"""

import json

import pytest

from eval import zero_shot

_STACK = ["gin_configs/arch/causal_decoder.gin", "gin_configs/sizes/tiny.gin",
          "gin_configs/data/embedded.gin"]
N_EXAMPLES = 120
MARGIN = 0.15


@pytest.fixture(scope="module")
def trained_dir(tmp_path_factory):
  from experiments import train
  model_dir = tmp_path_factory.mktemp("cd_flm")
  train.run(_STACK + ["gin_configs/objectives/full_lm.gin", "gin_configs/runs/pretrain.gin"],
            [f"MODEL_DIR = '{model_dir}'", "TRAIN_STEPS = 120", "BATCH_SIZE = 8",
             "TASK_FEATURE_LENGTHS = {'targets': 128}"])
  return model_dir


@pytest.mark.slow
def test_tiny_model_beats_chance_on_word_order(trained_dir, tmp_path):
  results = zero_shot.run(_STACK, [
      f"CHECKPOINT_PATH = '{trained_dir}'", "EVAL_SUITE = 'embedded:word_order,next_line'",
      f"EVAL_OUTPUT_DIR = '{tmp_path}'",
      f"eval.zero_shot.evaluate_checkpoint.embedded_examples = {N_EXAMPLES}"])
  task = results["tasks"]["embedded_word_order"]
  assert task["n"] == N_EXAMPLES and task["random_baseline"] == 0.5
  assert task["median"] >= 0.5 + MARGIN, task
  assert results["tasks"]["embedded_next_line"]["random_baseline"] == 0.25
  on_disk = json.loads((tmp_path / "results.json").read_text())
  assert on_disk["tasks"]["embedded_word_order"]["median"] == task["median"]
  assert on_disk["aggregate"]["n_tasks"] == 2


@pytest.mark.slow
def test_checkpoint_not_matching_the_model_gin_is_a_clear_error(trained_dir, tmp_path):
  from experiments.runtime import checkpoints
  with pytest.raises(checkpoints.CheckpointError, match="emb|shape|differ"):
    zero_shot.run(_STACK, [f"CHECKPOINT_PATH = '{trained_dir}'", "EVAL_SUITE = 'embedded'",
                           "arch.config.TransformerConfig.emb_dim = 64"])


def test_unknown_suite_fails_before_any_restore(tmp_path):
  with pytest.raises(ValueError, match="valid suites"):
    zero_shot.run(_STACK, [f"CHECKPOINT_PATH = '{tmp_path}/nothing'", "EVAL_SUITE = 'nope'"])


def test_missing_required_macro_is_named():
  from experiments.runtime import gin_utils
  with pytest.raises(gin_utils.GinConfigError, match="CHECKPOINT_PATH"):
    zero_shot.run(_STACK, ["EVAL_SUITE = 'embedded'"])
