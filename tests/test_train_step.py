"""The jit step: gradient accumulation equals the full batch; non-finite steps are flagged."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from arch import config as config_lib
from arch import models
from experiments import optimizers
from experiments import partitioning
from experiments import trainer

TINY = config_lib.TransformerConfig(vocab_size=200, emb_dim=32, num_heads=2, head_dim=16,
                                    mlp_dim=64, num_layers=2, num_encoder_layers=1,
                                    num_decoder_layers=1)


def _batch(model, batch_size, lengths, seed=0):
  """A random, partly padded batch of the model's features (no packing)."""
  shapes = model.input_shapes(batch_size, lengths, pack=False)
  rng = np.random.RandomState(seed)
  batch = {k: rng.randint(2, TINY.vocab_size, size=s).astype(np.int32) for k, s in shapes.items()}
  weights = (rng.rand(*shapes["decoder_loss_weights"]) < 0.8).astype(np.int32)
  batch["decoder_loss_weights"] = weights
  if "decoder_causal_attention" in batch:
    batch["decoder_causal_attention"] = (np.arange(shapes["decoder_causal_attention"][1])[None]
                                         < 9).astype(np.int32).repeat(batch_size, 0)
  return shapes, batch


def _builder(model, shapes, microbatches, lr=1.0):
  opt = optimizers.adafactor(learning_rate=optimizers.constant_schedule(lr))
  return trainer.StepBuilder(model, opt, partitioning.Partitioner(), shapes, microbatches)


@pytest.mark.slow
@pytest.mark.parametrize("name,lengths,impl", [
    ("causal_decoder", {"targets": 24}, "cpu"),
    ("encoder_decoder", {"inputs": 16, "targets": 8}, "cpu"),
    # The reference kernels (what an accelerator compiles, less its fused attention).
    ("causal_decoder", {"targets": 24}, "xla"),
])
def test_microbatching_equals_the_full_batch(name, lengths, impl):
  model = models.get_model(name, TINY.replace(attention_impl=impl), vocabulary=None)
  shapes, batch = _batch(model, 4, lengths)
  full, micro = _builder(model, shapes, 1), _builder(model, shapes, 4)
  params = full.init_params(0)
  gbatch = trainer.global_batch(batch, full.batch_shardings)
  loss_full, grads_full = full.loss_and_grads()(params, gbatch)
  loss_micro, grads_micro = micro.loss_and_grads()(params, gbatch)
  # Tolerance: float32 sums taken in a different order (4 partial sums vs one).
  np.testing.assert_allclose(loss_micro, loss_full, rtol=2e-6)
  for g_m, g_f in zip(jax.tree_util.tree_leaves(grads_micro), jax.tree_util.tree_leaves(grads_full)):
    np.testing.assert_allclose(g_m, g_f, rtol=1e-4, atol=1e-5 * float(np.abs(g_f).max()))
  if name == "encoder_decoder":
    return  # the update below does not depend on the architecture; compile it once
  # And one whole update: same parameters, same summed metrics.
  copy = lambda t: jax.tree_util.tree_map(jnp.copy, t)  # noqa: E731
  state_f, m_f = full.compile()(full.make_state(copy(params), 0, 0), gbatch)
  state_m, m_m = micro.compile()(micro.make_state(copy(params), 0, 0), gbatch)
  for key in ("loss", "num_tokens", "num_correct", "accuracy", "z_loss"):
    np.testing.assert_allclose(m_m[key], m_f[key], rtol=2e-5, err_msg=key)
  assert float(m_f["num_tokens"]) == float(batch["decoder_loss_weights"].sum())
  for p_m, p_f in zip(jax.tree_util.tree_leaves(state_m.params),
                      jax.tree_util.tree_leaves(state_f.params)):
    np.testing.assert_allclose(p_m, p_f, rtol=1e-4, atol=1e-6)
  assert int(state_m.step) == int(state_f.step) == 1


def test_step_reports_non_finite_loss_and_counts_steps():
  model = models.get_model("causal_decoder", TINY, vocabulary=None)
  shapes, batch = _batch(model, 2, {"targets": 16})
  builder = _builder(model, shapes, 1, lr=0.01)
  step = builder.compile()
  gbatch = trainer.global_batch(batch, builder.batch_shardings)
  state = builder.make_state(builder.init_params(0), 5, 0)
  state, metrics = step(state, gbatch)
  assert bool(metrics["finite"]) and int(state.step) == 6
  assert float(metrics["learning_rate"]) == pytest.approx(0.01)
  poisoned = jax.tree_util.tree_map(lambda p: p * jnp.nan, state.params)
  state = state.replace(params=poisoned)
  _, metrics = step(state, gbatch)
  assert not bool(metrics["finite"])


def test_batch_not_divisible_by_microbatches_is_rejected():
  model = models.get_model("causal_decoder", TINY, vocabulary=None)
  shapes = model.input_shapes(6, {"targets": 16})
  with pytest.raises(ValueError, match="num_microbatches 4"):
    _builder(model, shapes, 4)
