"""arch/kernels: every CPU-available kernel matches the reference; selection and 'auto' resolution.

Tolerances: float32 kernels differ from the reference by summation order only (the blockwise
online softmax rescales partial sums), so loss within 1e-5 relative and every gradient entry within
1e-4 of its array's largest. bfloat16 keeps a float32 softmax but rounds activations at different
points (blockwise rounds unnormalised block probabilities; bfloat16 has 8 mantissa bits): each
bfloat16 run lies about 1-1.5% (relative norm) from float32 gradients, in its own direction, so the
loss within 2e-2 relative, each gradient array within 3e-2 in relative norm and every entry within
1e-1 of its array's largest.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from arch import config as config_lib
from arch import kernels
from arch import layers
from arch import masks
from arch import models
from arch import testing
from arch.kernels import blockwise
from arch.kernels import cpu
from arch.kernels import reference
from experiments import optimizers
from experiments import partitioning
from experiments import trainer

CPU_IMPLS = ("cpu", "blockwise")
TOL = {"float32": (1e-5, 1e-4), "bfloat16": (2e-2, 1e-1)}  # (loss rel, grad entries rel to max)
NORM_TOL = {"float32": 1e-4, "bfloat16": 3e-2}  # gradient arrays, relative norm of the difference


def _assert_close_grads(got, want, dtype, msg=""):
  got, want = np.asarray(got, np.float32), np.asarray(want, np.float32)
  assert got.shape == want.shape and np.isfinite(got).all(), msg
  np.testing.assert_allclose(got, want, atol=TOL[dtype][1] * np.abs(want).max(), err_msg=msg)
  assert np.linalg.norm(got - want) <= NORM_TOL[dtype] * np.linalg.norm(want), msg


def _mask(kind, b=2, q_len=40, k_len=40):
  seg = np.ones((b, q_len), np.int32)
  seg[0, 15:] = 2
  seg[1, 30:] = 0  # padding
  valid = jnp.asarray(seg > 0)
  if kind == "cross":
    k_seg = np.ones((b, k_len), np.int32)
    k_seg[0, 20:] = 2
    k_seg[1, 33:] = 0
    return masks.AttentionMask(valid, jnp.asarray(k_seg > 0), jnp.asarray(seg),
                               jnp.asarray(k_seg))
  marked = None
  if kind == "prefix":
    marked = np.zeros((b, q_len), np.int32)
    marked[:, :7] = 1
    marked = jnp.asarray(marked)
  return masks.AttentionMask(valid, valid, jnp.asarray(seg), jnp.asarray(seg), marked, marked,
                             causal=kind != "encoder")


@pytest.mark.parametrize("kind", ["causal", "prefix", "encoder", "cross"])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_attention_kernels_match_the_reference(kind, dtype):
  mask = _mask(kind)
  q_len, k_len = mask.q_valid_BxQ.shape[1], mask.k_valid_BxK.shape[1]
  rng = np.random.RandomState(0)
  q = jnp.asarray(rng.randn(2, q_len, 3, 8), dtype)
  k, v = (jnp.asarray(rng.randn(2, k_len, 3, 8), dtype) for _ in range(2))
  bias = jnp.asarray(rng.randn(1, 3, q_len, k_len), jnp.float32)
  weights = jnp.cos(jnp.arange(8.0))[None, None, None, :]
  row_valid = mask.q_valid_BxQ[:, :, None, None]

  def loss_and_grads(fn):
    def loss(q, k, v, bias):
      out = fn(q, k, v, bias, mask).astype(jnp.float32)
      return jnp.sum(jnp.where(row_valid, out, 0.0) * weights)  # padding rows are never read
    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2, 3)))(q, k, v, bias)

  ref_loss, ref_grads = loss_and_grads(reference.attention)
  loss_tol = TOL[dtype][0]
  small_blocks = lambda *a: blockwise.attention(*a, block_k=16)  # noqa: E731  (K=40: padded)
  for fn in (cpu.attention, blockwise.attention, small_blocks):
    got_loss, got_grads = loss_and_grads(fn)
    np.testing.assert_allclose(got_loss, ref_loss, rtol=loss_tol, atol=loss_tol)
    for g, r in zip(got_grads, ref_grads):
      _assert_close_grads(g, r, dtype)


def _model_case(name):
  rng = np.random.RandomState(3)
  seg = np.array([[1] * 9 + [2] * 7, [1] * 12 + [0] * 4])
  if name == "encoder_decoder":
    enc_seg = np.array([[1] * 10 + [2] * 6, [1] * 11 + [0] * 5])
    return testing.encdec_batch(rng, 2, 16, 16, 200, encoder_segment_ids=enc_seg,
                                decoder_segment_ids=seg)
  prefix = [4, 6] if name == "non_causal_decoder" else None
  return testing.decoder_batch(rng, 2, 16, 200, prefix_lengths=prefix, segment_ids=seg)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("name", ["causal_decoder", "non_causal_decoder", "encoder_decoder"])
def test_models_give_the_reference_loss_and_gradients_with_every_cpu_kernel(name, dtype):
  batch = _model_case(name)
  shapes = {k: v.shape for k, v in batch.items()}
  results = {}
  for impl in ("xla",) + CPU_IMPLS:
    model = models.get_model(name, testing.tiny_config(dtype=dtype, attention_impl=impl))
    params = testing.init_params(model, shapes)
    grad_fn = jax.jit(jax.value_and_grad(lambda p, m=model: m.loss_fn(p, batch)[0]))
    results[impl] = grad_fn(params)
  loss_tol = TOL[dtype][0]
  ref_loss, ref_grads = results["xla"]
  for impl in CPU_IMPLS:
    loss, grads = results[impl]
    np.testing.assert_allclose(loss, ref_loss, rtol=loss_tol, err_msg=impl)
    for (path, g), r in zip(jax.tree_util.tree_leaves_with_path(grads),
                            jax.tree_util.tree_leaves(ref_grads)):
      _assert_close_grads(g, r, dtype, f"{impl} {jax.tree_util.keystr(path)}")


def test_fused_kernels_fall_back_where_they_cannot_serve():
  q32 = jnp.zeros((2, 256, 4, 64), jnp.float32)
  q16 = q32.astype(jnp.bfloat16)
  causal, prefix = _mask("causal", q_len=256, k_len=256), _mask("prefix", q_len=256, k_len=256)
  select = kernels.select_attention
  assert select("cudnn", q16, q16, causal, False) == "cudnn"
  assert select("cudnn", q16, q16, prefix, False) == "xla"  # the ND prefix mask
  assert select("cudnn", q32, q32, causal, False) == "xla"  # cuDNN takes 16-bit floats only
  assert select("cudnn", q16, q16, causal, True) == "xla"  # attention dropout
  assert select("pallas_tpu", q32, q32, causal, False) == "pallas_tpu"
  assert select("pallas_tpu", q32, q32, prefix, False) == "xla"
  short = jnp.zeros((2, 40, 4, 64))
  assert select("pallas_tpu", short, short, _mask("causal"), False) == "xla"  # not 128-tiled
  assert select("blockwise", q32, q32, prefix, False) == "blockwise"  # any mask
  assert select("blockwise", q32, q32, prefix, True) == "xla"
  assert select("cpu", q32, q32, prefix, True) == "cpu"  # keeps its dropout


def test_auto_resolves_by_the_platform_of_the_mesh():
  assert [kernels.resolve("auto", p) for p in ("cpu", "gpu", "tpu")] == [
      "cpu", "cudnn", "pallas_tpu"]
  assert kernels.resolve("blockwise", "gpu") == "blockwise"
  assert tuple(config_lib.ATTENTION_IMPLS) == kernels.IMPLS
  model = models.get_model("causal_decoder", testing.tiny_config())
  assert model.config.attention_impl == "auto"
  assert model.for_platform("gpu").config.attention_impl == "cudnn"
  assert model.for_platform("tpu").module.config.attention_impl == "pallas_tpu"
  with pytest.raises(config_lib.ConfigError, match="attention_impl = 'cudnn'"):
    models.get_model("causal_decoder",
                     testing.tiny_config(attention_impl="cudnn")).for_platform("cpu")
  with pytest.raises(config_lib.ConfigError, match="attention_impl"):
    testing.tiny_config(attention_impl="flash")
  # The trainer resolves it from its mesh before tracing.
  shapes = model.input_shapes(2, {"targets": 8}, pack=False)
  builder = trainer.StepBuilder(model, optimizers.adafactor(
      learning_rate=optimizers.constant_schedule(1e-3)), partitioning.Partitioner(), shapes, 1)
  assert builder.model.config.attention_impl == kernels.resolve("auto",
                                                                 jax.devices()[0].platform)


def test_cpu_tricks_live_only_in_the_cpu_kernels():
  x = jnp.ones((2, 3, 8))
  kernel = jnp.ones((8, 16))
  grad_jaxpr = lambda dot: str(jax.make_jaxpr(jax.grad(  # noqa: E731
      lambda k: jnp.sum(dot(x.reshape(6, 8), k))))(kernel))
  assert "optimization_barrier" in grad_jaxpr(kernels.vocab_dot("cpu"))
  assert "optimization_barrier" not in grad_jaxpr(kernels.vocab_dot("xla"))
  logits = jnp.asarray(np.random.RandomState(0).randn(2, 5, 7))
  logits = logits.at[0, 0, 3].set(logits[0, 0, 2])  # ties resolve to the first index
  targets = jnp.asarray(np.random.RandomState(1).randint(0, 7, (2, 5)))
  np.testing.assert_array_equal(kernels.token_correct(logits, targets, "cpu"),
                                kernels.token_correct(logits, targets, "xla"))
  with open(layers.__file__, encoding="utf-8") as f:
    src = f.read()
  assert "default_backend" not in src and "custom_vjp" not in src


@pytest.mark.slow
def test_bfloat16_scan_remat_training_stays_close_to_float32():
  batch = {k: np.asarray(v) for k, v in _model_case("causal_decoder").items()}
  shapes = {k: v.shape for k, v in batch.items()}
  losses = {}
  for dtype in ("float32", "bfloat16"):
    cfg = testing.tiny_config(dtype=dtype, scan_layers=True, remat_policy="full",
                              attention_impl="xla")
    model = models.get_model("causal_decoder", cfg)
    opt = optimizers.adafactor(learning_rate=optimizers.constant_schedule(1e-2))
    builder = trainer.StepBuilder(model, opt, partitioning.Partitioner(), shapes, 1)
    step = builder.compile()
    state = builder.make_state(builder.init_params(0), 0, 0)
    gbatch = trainer.global_batch(batch, builder.batch_shardings)
    history = []
    for _ in range(20):
      state, metrics = step(state, gbatch)
      history.append(float(metrics["loss_per_token"]))
    losses[dtype] = np.asarray(history)
  assert np.isfinite(losses["bfloat16"]).all()
  assert losses["float32"][-1] < losses["float32"][0] - 0.5  # it learns (20 steps, one batch)
  # Close: bfloat16 activations move the loss by a few hundredths of a nat per token here.
  np.testing.assert_allclose(losses["bfloat16"], losses["float32"], atol=0.1)
