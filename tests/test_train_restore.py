"""INITIAL_CHECKPOINT_PATH restores the optimizer state too (t5x's finetuning), or starts it fresh."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from arch import config as config_lib
from arch import models
from experiments import loop
from experiments import optimizers
from experiments import partitioning
from experiments import trainer
from experiments.runtime import checkpoints

TINY = config_lib.TransformerConfig(vocab_size=200, emb_dim=32, num_heads=2, head_dim=16,
                                    mlp_dim=64, num_layers=2, scan_layers=True)
CHECKPOINT_STEP = 7


@functools.lru_cache(maxsize=None)
def _builder(factoring="t5x"):
  model = models.get_model("causal_decoder", TINY, vocabulary=None)
  shapes = model.input_shapes(2, {"targets": 8}, pack=False)
  opt = optimizers.adafactor(learning_rate=optimizers.constant_schedule(1e-3),
                             factoring=factoring)
  return trainer.StepBuilder(model, opt, partitioning.Partitioner(), shapes, 1)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
  """A checkpoint at step 7 whose optimizer state has seen two updates (non-zero moments)."""
  model_dir = tmp_path_factory.mktemp("pretrained")
  builder = _builder()
  state = builder.make_state(builder.init_params(0), CHECKPOINT_STEP, 0)
  tx, opt_state, params = builder.optimizer.tx, state.opt_state, state.params
  for i in range(2):
    grads = jax.tree_util.tree_map(lambda p, i=i: jnp.sin(p * (i + 2)), params)
    _, opt_state = tx.update(grads, opt_state, params)
  state = state.replace(opt_state=opt_state)
  ckpt = checkpoints.Checkpointer(model_dir, async_save=False)
  ckpt.save(CHECKPOINT_STEP, state.params, state.train_state_item(), {"step": CHECKPOINT_STEP})
  ckpt.close()
  return model_dir, jax.device_get(state)


def _start(tmp_path, model_dir, restore, factoring="t5x"):
  builder = _builder(factoring)
  ckpt = checkpoints.Checkpointer(tmp_path / "run", async_save=False)
  try:
    state, position, resumed = loop._initial_state(  # pylint: disable=protected-access
        builder, ckpt, str(model_dir), seed=3, train_steps=20, description="tiny",
        restore_optimizer_state=restore)
  finally:
    ckpt.close()
  assert position == 0 and resumed is None
  return builder, state


def test_initial_checkpoint_restores_the_optimizer_state(tmp_path, pretrained):
  model_dir, saved = pretrained
  _, state = _start(tmp_path, model_dir, restore=True)
  assert int(state.step) == CHECKPOINT_STEP  # the step continues
  assert int(state.opt_state[0].count) == 2
  for a, b in zip(jax.tree_util.tree_leaves(state.opt_state),
                  jax.tree_util.tree_leaves(saved.opt_state)):
    assert np.array_equal(np.asarray(a), np.asarray(b))
  assert any(np.abs(np.asarray(x)).sum() > 0 for x in jax.tree_util.tree_leaves(saved.opt_state))


def test_fresh_optimizer_switch_gives_the_initial_state(tmp_path, pretrained):
  model_dir, saved = pretrained
  builder, state = _start(tmp_path, model_dir, restore=False)
  assert int(state.step) == CHECKPOINT_STEP  # the step continues here too
  fresh = builder.optimizer.tx.init(state.params)
  for a, b in zip(jax.tree_util.tree_leaves(state.opt_state), jax.tree_util.tree_leaves(fresh)):
    assert np.array_equal(np.asarray(a), np.asarray(b))
  for a, b in zip(jax.tree_util.tree_leaves(state.params),
                  jax.tree_util.tree_leaves(saved.params)):
    assert np.array_equal(np.asarray(a), np.asarray(b))


def test_optimizer_state_of_another_factoring_is_a_config_error(tmp_path, pretrained):
  """optax's factoring keeps a full moment for the tiny scanned kernels: the shapes differ."""
  model_dir, _ = pretrained
  with pytest.raises(checkpoints.CheckpointError,
                     match=r"(?s)optimizer state in .* does not fit the configured optimizer.*"
                           r"self_attention/query: checkpoint \(1,\) vs model \(2, 32, 2, 16\)"
                           r".*restore_optimizer_state = False"):
    _start(tmp_path, model_dir, restore=True, factoring="optax")
  _, state = _start(tmp_path, model_dir, restore=False, factoring="optax")  # the way out
  assert int(state.step) == CHECKPOINT_STEP
