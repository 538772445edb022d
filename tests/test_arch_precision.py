"""Activation dtype: 'auto' is bfloat16 on GPU/TPU and float32 on CPU; explicit values are kept."""

import gin
import jax
import jax.numpy as jnp
import pytest

from arch import config as config_lib
from arch import models
from experiments import optimizers
from experiments import partitioning
from experiments import trainer
from experiments.runtime import gin_utils

_OTHER_LAYERS = ("VOCABULARY = None", "VOCAB_SIZE = 32128", "DROPOUT_RATE = 0.0")


@pytest.mark.parametrize("dtype,platform,want", [
    ("auto", "cpu", "float32"), ("auto", "gpu", "bfloat16"), ("auto", "tpu", "bfloat16"),
    ("auto", "METAL", "float32"),  # a platform without a rule keeps the safe choice
    ("float32", "tpu", "float32"), ("bfloat16", "cpu", "bfloat16"),
])
def test_resolve_for_platform(dtype, platform, want):
  config = config_lib.TransformerConfig(dtype=dtype)
  resolved = config_lib.resolve_for_platform(config, platform)
  assert resolved.dtype == want
  assert resolved.activation_dtype == jnp.dtype(want)
  assert resolved.replace(dtype=dtype) == config  # nothing else changes


def test_default_is_auto_and_unresolved_auto_follows_the_default_backend():
  gin.clear_config()  # the class default, not a binding another module's test left behind
  config = config_lib.TransformerConfig()
  assert config.dtype == "auto"
  assert config.activation_dtype == jnp.dtype(config_lib.AUTO_DTYPES[jax.default_backend()])
  with pytest.raises(config_lib.ConfigError, match="TransformerConfig.dtype"):
    config_lib.TransformerConfig(dtype="float16")


def _size_config(size):
  gin_utils.parse_gin(["gin_configs/arch/causal_decoder.gin", f"gin_configs/sizes/{size}.gin"],
                      list(_OTHER_LAYERS))
  try:
    return gin.query_parameter("%MODEL").scoped_configurable_fn().config
  finally:
    gin.clear_config()


@pytest.mark.parametrize("size", ["small", "base", "large", "paper"])
def test_every_size_above_tiny_is_bfloat16_on_accelerators_and_float32_on_cpu(size):
  config = _size_config(size)
  assert config.dtype == "auto"
  assert config_lib.resolve_for_platform(config, "gpu").dtype == "bfloat16"
  assert config_lib.resolve_for_platform(config, "tpu").dtype == "bfloat16"
  assert config_lib.resolve_for_platform(config, "cpu").dtype == "float32"


def test_tiny_is_float32_everywhere():
  config = _size_config("tiny")
  for platform in ("cpu", "gpu", "tpu"):
    assert config_lib.resolve_for_platform(config, platform).dtype == "float32"


def _tiny_model(dtype, attention_impl="auto"):
  return models.get_model("causal_decoder", config_lib.TransformerConfig(
      vocab_size=256, emb_dim=32, num_heads=4, head_dim=8, mlp_dim=64, num_layers=2,
      dtype=dtype, attention_impl=attention_impl))


def _dot_dtypes(model):
  shapes = model.input_shapes(2, {"targets": 16})
  params = jax.eval_shape(lambda: model.get_initial_variables(jax.random.PRNGKey(0), shapes))
  batch = {k: jnp.ones(v, jnp.int32) for k, v in shapes.items()}
  jaxpr = jax.make_jaxpr(lambda p: model.loss_fn(p, batch)[0])(params["params"])
  found = set()

  def walk(jp):
    for eqn in jp.eqns:
      if eqn.primitive.name == "dot_general":
        found.add(str(eqn.invars[0].aval.dtype))
      for sub in jax.core.jaxprs_in_params(eqn.params):
        walk(sub)
  walk(jaxpr.jaxpr)
  return found


def test_model_for_platform_computes_in_the_resolved_dtype():
  # The reference kernel: 'auto' would pick cuDNN for 'gpu', which cannot be traced on a CPU host.
  model = _tiny_model("auto", attention_impl="xla")
  on_gpu = model.for_platform("gpu")
  assert on_gpu.config.dtype == "bfloat16" and on_gpu.name == model.name
  assert _tiny_model("auto").for_platform("gpu").config.attention_impl == "cudnn"
  assert "bfloat16" in _dot_dtypes(on_gpu)
  assert _dot_dtypes(model.for_platform("cpu")) == {"float32"}
  explicit = _tiny_model("float32", attention_impl="xla")
  assert explicit.for_platform("tpu") is explicit


def test_step_builder_resolves_auto_from_the_mesh_platform():
  partitioner = partitioning.Partitioner()
  assert partitioner.platform == "cpu"
  model = _tiny_model("auto")
  opt = optimizers.adafactor(learning_rate=optimizers.constant_schedule(1e-3))
  builder = trainer.StepBuilder(model, opt, partitioner,
                                model.input_shapes(2, {"targets": 16}))
  assert builder.model.config.dtype == "float32"
  assert jax.tree_util.tree_all(jax.tree_util.tree_map(
      lambda x: x.dtype == jnp.float32, builder.abstract_params))  # parameters stay float32
