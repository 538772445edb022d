"""Learning-rate schedules and the paper's Adafactor settings."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from experiments import optimizers


def test_rsqrt_schedule_matches_the_paper():
  lr = optimizers.rsqrt_schedule()
  assert float(lr(1)) == pytest.approx(0.01, rel=1e-6)
  assert float(lr(10_000)) == pytest.approx(0.01, rel=1e-6)
  assert float(lr(131_072)) == pytest.approx(0.0027621, abs=5e-8)
  # Decays as 1/sqrt(step) after the plateau: 4x the step halves the rate.
  assert float(lr(40_000)) == pytest.approx(float(lr(10_000)) / 2, rel=1e-6)


def test_constant_and_warmup_cosine_schedules():
  assert float(optimizers.constant_schedule(1e-3)(141_000)) == pytest.approx(1e-3)
  lr = optimizers.warmup_cosine_schedule(peak_value=1.0, warmup_steps=10, decay_steps=110,
                                         end_value=0.1, start_step=100)
  assert float(lr(100)) == pytest.approx(0.0)
  assert float(lr(105)) == pytest.approx(0.5)
  assert float(lr(110)) == pytest.approx(1.0)
  assert float(lr(160)) == pytest.approx(0.55, rel=1e-5)  # half-way down the cosine
  assert float(lr(1000)) == pytest.approx(0.1)
  with pytest.raises(ValueError, match="decay_steps"):
    optimizers.warmup_cosine_schedule(warmup_steps=10, decay_steps=5)


def test_adafactor_is_t5x_adafactor_without_the_learning_rate():
  opt = optimizers.adafactor(learning_rate=optimizers.rsqrt_schedule())
  params = {"w": jnp.arange(256 * 130, dtype=jnp.float32).reshape(256, 130) / 1e4,
            "b": jnp.linspace(-1.0, 1.0, 130)}
  grads = jax.tree_util.tree_map(lambda p: jnp.cos(p) * 0.3, params)
  reference = optax.adafactor(learning_rate=0.01, decay_rate=0.8, clipping_threshold=1.0,
                              multiply_by_parameter_scale=True, momentum=None, factored=True)
  ours, _ = opt.tx.update(grads, opt.tx.init(params), params)
  theirs, _ = reference.update(grads, reference.init(params), params)
  for key in params:
    np.testing.assert_allclose(np.asarray(ours[key]) * float(opt.schedule(1)),
                               np.asarray(theirs[key]), rtol=1e-6)
  # Factored second moments and no momentum: the [256, 130] matrix keeps only row/col stats.
  state_sizes = sum(x.size for x in jax.tree_util.tree_leaves(opt.tx.init(params)))
  assert state_sizes < 256 * 130 // 4


@pytest.mark.parametrize("momentum", [None, 0.9])
def test_adafactor_steps_match_optax_adafactor(momentum):
  """Several steps against optax.adafactor: a wide matrix (the outer-axis GEMV), a tall one, a
  3-D kernel, a vector, and an all-zero matrix (rms below the 1e-3 parameter-scale floor)."""
  keys = jax.random.split(jax.random.PRNGKey(3), 5)
  params = {"wide": jax.random.normal(keys[0], (128, 300)),
            "tall": jax.random.normal(keys[1], (300, 128)) * 0.1,
            "kernel": jax.random.normal(keys[2], (130, 4, 160)),
            "scale": jnp.linspace(0.5, 1.5, 130),
            "zero": jnp.zeros((128, 140))}
  opt = optimizers.adafactor(learning_rate=optimizers.constant_schedule(1.0), momentum=momentum)
  reference = optax.adafactor(learning_rate=None, decay_rate=0.8, clipping_threshold=1.0,
                              multiply_by_parameter_scale=True, momentum=momentum, factored=True)
  ours_state, ref_state = opt.tx.init(params), reference.init(params)
  assert (jax.tree_util.tree_structure(ours_state) == jax.tree_util.tree_structure(ref_state))
  ours_update, ref_update = jax.jit(opt.tx.update), jax.jit(reference.update)
  for i in range(4):
    grads = jax.tree_util.tree_map(
        lambda p, k: jnp.cos(p * (i + 1)) * 0.3 + 0.01 * jax.random.normal(k, p.shape),
        params, dict(zip(sorted(params), jax.random.split(jax.random.PRNGKey(i), 5))))
    ours, ours_state = ours_update(grads, ours_state, params)
    theirs, ref_state = ref_update(grads, ref_state, params)
    for key in params:
      np.testing.assert_allclose(ours[key], theirs[key], rtol=2e-6, atol=1e-7, err_msg=key)
    for a, b in zip(jax.tree_util.tree_leaves(ours_state), jax.tree_util.tree_leaves(ref_state)):
      np.testing.assert_allclose(a, b, rtol=2e-6, atol=1e-7)
    params = jax.tree_util.tree_map(lambda p, u: p + 1e-2 * u, params, ours)
  # optax's own update continues from our state (checkpoints interchange).
  reference.update(grads, ours_state, params)


def test_adafactor_column_statistics_against_float64():
  """The wide matrix's column second moments (the GEMV on CPU) equal a float64 mean."""
  grad = jax.random.normal(jax.random.PRNGKey(4), (256, 3000)) * 3.0
  opt = optimizers.adafactor(learning_rate=optimizers.constant_schedule(1.0))
  _, state = opt.tx.update({"w": grad}, opt.tx.init({"w": grad}), {"w": grad})
  factored = state[0]
  g64 = np.asarray(grad, np.float64) ** 2 + 1e-30
  beta = 1.0 - 1.0 ** -0.8  # first step: the decayed average is the new statistic alone
  np.testing.assert_allclose(factored.v_col["w"], (1 - beta) * g64.mean(axis=0), rtol=1e-6)
  np.testing.assert_allclose(factored.v_row["w"], (1 - beta) * g64.mean(axis=1), rtol=1e-6)


def test_adamw_decays_only_matrices():
  opt = optimizers.adamw(learning_rate=optimizers.constant_schedule(1.0), weight_decay=0.5,
                         max_grad_norm=None)
  params = {"w": jnp.ones((2, 2)), "scale": jnp.ones((2,))}
  zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
  updates, _ = opt.tx.update(zeros, opt.tx.init(params), params)
  np.testing.assert_allclose(updates["w"], -0.5 * np.ones((2, 2)))
  np.testing.assert_allclose(updates["scale"], np.zeros((2,)))
