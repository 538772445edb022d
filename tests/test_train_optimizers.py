"""Learning-rate schedules and Adafactor: t5x's logical-axis factoring and optax's."""

import dataclasses
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import PartitionSpec

from arch import config as config_lib
from arch import models
from arch import stack
from experiments import adafactor
from experiments import optimizers
from experiments.runtime import errors


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


P = PartitionSpec
TINY = config_lib.TransformerConfig(vocab_size=200, emb_dim=32, num_heads=2, head_dim=16,
                                    mlp_dim=64, num_layers=2, num_encoder_layers=1,
                                    num_decoder_layers=1)


def _axes_like(params, spec_for):
  return jax.tree_util.tree_map(spec_for, params)


def _grads(params, i, spread=1.0):
  """Deterministic gradients, shaped like params, different per step and per leaf."""
  leaves, treedef = jax.tree_util.tree_flatten(params)
  keys = jax.random.split(jax.random.PRNGKey(100 + i), len(leaves))
  return treedef.unflatten([jnp.cos(p * (i + 1)) * 0.3 + spread * jax.random.normal(k, p.shape)
                            for p, k in zip(leaves, keys)])


def test_the_default_is_t5x_factoring_with_the_papers_settings():
  opt = optimizers.adafactor(learning_rate=optimizers.rsqrt_schedule())
  assert opt.build is not None  # t5x factoring: built from the parameters' logical axes
  with pytest.raises(errors.ConfigError, match="logical axis names"):
    opt.tx.init({"w": jnp.ones((2, 2))})
  # gin_configs/base/train.gin binds the paper's values and the t5x factoring.
  text = (pathlib.Path(__file__).resolve().parents[1] / "gin_configs/base/train.gin").read_text()
  for binding in ("adafactor.decay_rate = 0.8", "adafactor.factored = True",
                  "adafactor.clipping_threshold = 1.0", "adafactor.momentum = None",
                  "adafactor.multiply_by_parameter_scale = True", "adafactor.factoring = 't5x'"):
    assert f"experiments.optimizers.{binding}" in text


@pytest.mark.parametrize("momentum", [None, 0.9])
def test_optax_factoring_is_optax_adafactor(momentum):
  """factoring='optax': several steps equal optax.adafactor's (LR 1 applied outside), state too."""
  keys = jax.random.split(jax.random.PRNGKey(3), 5)
  params = {"wide": jax.random.normal(keys[0], (128, 300)),
            "kernel": jax.random.normal(keys[2], (130, 4, 160)),
            "scale": jnp.linspace(0.5, 1.5, 130),
            "zero": jnp.zeros((128, 140))}
  opt = optimizers.adafactor(learning_rate=optimizers.constant_schedule(1.0), momentum=momentum,
                             factoring="optax")
  reference = optax.adafactor(learning_rate=1.0, decay_rate=0.8, clipping_threshold=1.0,
                              multiply_by_parameter_scale=True, momentum=momentum, factored=True)
  ours_state, ref_state = opt.tx.init(params), reference.init(params)
  for i in range(3):
    grads = _grads(params, i, spread=0.01)
    ours, ours_state = opt.tx.update(grads, ours_state, params)
    theirs, ref_state = reference.update(grads, ref_state, params)
    for key in params:
      np.testing.assert_allclose(ours[key], theirs[key], rtol=1e-6, atol=1e-8, err_msg=key)
    params = jax.tree_util.tree_map(lambda p, u: p + 1e-2 * u, params, ours)
  with pytest.raises(errors.ConfigError, match="factor_rules applies to factoring='t5x'"):
    optimizers.adafactor(learning_rate=optimizers.constant_schedule(1.0), factoring="optax",
                         factor_rules={"mlp": "none"})
  with pytest.raises(errors.ConfigError, match="factoring = 'mtf'"):
    optimizers.adafactor(learning_rate=optimizers.constant_schedule(1.0), factoring="mtf")


def test_t5x_factoring_equals_optax_on_unscanned_matrices():
  """Rank <= 2 without a batch axis: t5x falls back to optax's size heuristic (same numbers)."""
  keys = jax.random.split(jax.random.PRNGKey(5), 3)
  params = {"embedding": jax.random.normal(keys[0], (300, 130)),
            "kernel": jax.random.normal(keys[1], (130, 256)) * 0.1,
            "scale": jnp.linspace(0.5, 1.5, 130), "zero": jnp.zeros((128, 140))}
  axes = {"embedding": P("vocab", "embed"), "kernel": P("embed", "mlp"), "scale": P("embed"),
          "zero": P("mlp", "embed")}
  lr = optimizers.constant_schedule(1.0)
  t5x = optimizers.adafactor(learning_rate=lr).for_params(axes)
  ref = optimizers.adafactor(learning_rate=lr, factoring="optax")
  s1, s2 = t5x.tx.init(params), ref.tx.init(params)
  for i in range(3):
    grads = _grads(params, i)
    u1, s1 = t5x.tx.update(grads, s1, params)
    u2, s2 = ref.tx.update(grads, s2, params)
    for key in params:
      np.testing.assert_allclose(u1[key], u2[key], rtol=2e-6, atol=1e-8, err_msg=key)
    params = jax.tree_util.tree_map(lambda p, u: p + 1e-2 * u, params, u1)
  np.testing.assert_allclose(s1[0].v_row["embedding"], s2[0].v_row["embedding"], rtol=2e-6)


def test_scanned_attention_kernel_is_factored_by_logical_axes():
  """[layers, embed, heads, kv] = [2, 32, 2, 16]: rows over embed, columns over heads x kv, per
  layer. State: v_row [2, 32] + v_col [2, 2, 16] = 128 values (+1 placeholder) for 2,048
  parameters; optax's heuristic keeps all 2,048 (no axis pair reaches 128)."""
  params = {"query": jnp.ones((2, 32, 2, 16)), "scale": jnp.ones((2, 32))}
  axes = {"query": P("layers", "embed", "heads", "kv"), "scale": P("layers", "embed")}
  opt = optimizers.adafactor(learning_rate=optimizers.constant_schedule(1.0)).for_params(axes)
  factored = opt.tx.init(params)[0]
  assert factored.v_row["query"].shape == (2, 32)
  assert factored.v_col["query"].shape == (2, 2, 16)
  assert factored.v["query"].shape == (1,)
  assert adafactor.state_size(
      {k: (factored.v_row[k], factored.v_col[k], factored.v[k]) for k in ["query"]}) == 129
  assert factored.v["scale"].shape == (2, 32)  # a norm scale: full second moment, per layer
  optax_state = optimizers.adafactor(learning_rate=optimizers.constant_schedule(1.0),
                                     factoring="optax").tx.init(params)
  assert optax_state[0].v["query"].shape == (2, 32, 2, 16)


def test_factored_update_matches_a_float64_reference():
  """One step of a scanned kernel against t5x's formulas written out in numpy, layer by layer."""
  g = np.asarray(jax.random.normal(jax.random.PRNGKey(7), (2, 6, 3, 4)), np.float64)
  g[1] *= 50.0  # layer 1: large gradients; clipping must not leak into layer 0
  p = np.asarray(jax.random.normal(jax.random.PRNGKey(8), (2, 6, 3, 4)), np.float64)
  p[0] *= 0.01  # layer 0: small weights (parameter scale per layer)
  axes = {"k": P("layers", "embed", "heads", "kv")}
  opt = optimizers.adafactor(learning_rate=optimizers.constant_schedule(1.0),
                             clipping_threshold=0.5).for_params(axes)
  params = {"k": jnp.asarray(p, jnp.float32)}
  update, _ = opt.tx.update({"k": jnp.asarray(g, jnp.float32)}, opt.tx.init(params), params)
  for layer in range(2):
    g2 = g[layer] ** 2 + 1e-30  # first step: beta = 0, the moments are this step's statistics
    v_row, v_col = g2.mean(axis=(1, 2)), g2.mean(axis=0)
    y = g[layer] * (v_row / v_row.mean())[:, None, None] ** -0.5 * v_col[None] ** -0.5
    y /= max(1.0, np.sqrt(np.mean(y ** 2)) / 0.5)
    y *= max(np.sqrt(np.mean(p[layer] ** 2)), 1e-3)
    np.testing.assert_allclose(update["k"][layer], -y, rtol=2e-5, atol=1e-9)


def _decoder_params(scan: bool):
  cfg = dataclasses.replace(TINY, scan_layers=scan)
  model = models.get_model("causal_decoder", cfg, vocabulary=None)
  shapes = model.input_shapes(2, {"targets": 8}, pack=False)
  return model.param_logical_axes(shapes), model.get_initial_variables(
      jax.random.PRNGKey(0), shapes)["params"]


def test_scanned_stack_is_updated_as_the_unrolled_stack():
  """The real decoder, 2 layers scanned vs unrolled: equal updates over steps (factoring, clipping
  and parameter scale per layer). The layers get very different weights and gradients, so
  statistics over the whole stack (optax's) would differ; the test checks that they do.

  min_dim_size_to_factor=16: an unrolled 2-D matrix takes t5x's size heuristic, which factors the
  tiny [32, 64] MLP kernels as the rules do only above that size (the paper's all pass 128).
  """
  unrolled_axes, unrolled = _decoder_params(scan=False)
  scanned_axes, _ = _decoder_params(scan=True)
  unrolled = dict(unrolled, layers_1=jax.tree_util.tree_map(lambda x: x * 20.0,
                                                            unrolled["layers_1"]))
  scanned = stack.unrolled_to_scanned(unrolled)
  lr = optimizers.constant_schedule(1.0)
  results = {}
  for factoring in ("t5x", "optax"):
    opt_u = optimizers.adafactor(learning_rate=lr, factoring=factoring, min_dim_size_to_factor=16)
    opt_s = optimizers.adafactor(learning_rate=lr, factoring=factoring, min_dim_size_to_factor=16)
    opt_u, opt_s = opt_u.for_params(unrolled_axes), opt_s.for_params(scanned_axes)
    pu, ps = unrolled, scanned
    su, ss = opt_u.tx.init(pu), opt_s.tx.init(ps)
    update_u, update_s = jax.jit(opt_u.tx.update), jax.jit(opt_s.tx.update)
    diffs = []
    for i in range(3):
      grads_u = _grads(pu, i)
      grads_u = dict(grads_u, layers_0=jax.tree_util.tree_map(lambda x: x * 1e-3,
                                                              grads_u["layers_0"]))
      uu, su = update_u(grads_u, su, pu)
      us, ss = update_s(stack.unrolled_to_scanned(grads_u), ss, ps)
      for a, b in zip(jax.tree_util.tree_leaves(stack.unrolled_to_scanned(uu)),
                      jax.tree_util.tree_leaves(us)):
        diffs.append(float(jnp.max(jnp.abs(a - b)) / (jnp.max(jnp.abs(a)) + 1e-30)))
      pu = jax.tree_util.tree_map(lambda p, u: p + 1e-2 * u, pu, uu)
      ps = jax.tree_util.tree_map(lambda p, u: p + 1e-2 * u, ps, us)
    results[factoring] = max(diffs)
  assert results["t5x"] < 1e-5, results
  assert results["optax"] > 1e-2, results  # whole-stack statistics: a different update


@pytest.mark.parametrize("rules,message", [
    ({"mpl": "none"}, "names axis 'mpl', which no parameter has"),
    ({"kv": "none"}, "row, column and none together"),
])
def test_factor_rules_that_do_not_fit_fail_before_compilation(rules, message):
  axes, params = _decoder_params(scan=True)
  opt = optimizers.adafactor(learning_rate=optimizers.constant_schedule(1.0),
                             factor_rules=rules)
  with pytest.raises(errors.ConfigError, match=message):
    opt.for_params(axes)


def test_factor_rules_name_every_axis_with_a_known_kind():
  lr = optimizers.constant_schedule(1.0)
  with pytest.raises(errors.ConfigError, match="axis 'mlp' -> 'diagonal'"):
    optimizers.adafactor(learning_rate=lr, factor_rules={"mlp": "diagonal"})
  opt = optimizers.adafactor(learning_rate=lr)
  with pytest.raises(errors.ConfigError, match="no rule for axis 'experts' of parameter moe/w"):
    opt.for_params({"moe": {"w": P("experts", "embed", "mlp")}})
  with pytest.raises(errors.ConfigError, match="needs one name per axis"):
    opt.for_params({"w": P("embed", None)})
  built = opt.for_params({"w": P("embed", "mlp")})
  with pytest.raises(errors.ConfigError, match=r"shape \(2, 3, 4\) but 2 logical"):
    built.tx.init({"w": jnp.ones((2, 3, 4))})
  # An override changes the factoring: 'mlp' unfactored keeps a full second moment.
  custom = optimizers.adafactor(learning_rate=lr, factor_rules={"mlp": "none"})
  state = custom.for_params({"w": P("layers", "embed", "mlp")}).tx.init(
      {"w": jnp.ones((2, 3, 4))})
  assert state[0].v["w"].shape == (2, 3, 4)


def test_adamw_decays_only_matrices():
  opt = optimizers.adamw(learning_rate=optimizers.constant_schedule(1.0), weight_decay=0.5,
                         max_grad_norm=None)
  params = {"w": jnp.ones((2, 2)), "scale": jnp.ones((2,))}
  zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
  updates, _ = opt.tx.update(zeros, opt.tx.init(params), params)
  np.testing.assert_allclose(updates["w"], -0.5 * np.ones((2, 2)))
  np.testing.assert_allclose(updates["scale"], np.zeros((2,)))
