"""The architecture registry: clear errors, and a test-only architecture built and counted by name."""

import dataclasses
import functools

import jax
import numpy as np
import pytest

from arch import accounting
from arch import flops
from arch import models
from arch import registry
from arch import testing
from experiments.runtime.errors import ConfigError

VOCAB = 200


@pytest.fixture(name="scratch_registry")
def _scratch_registry(monkeypatch):
  """The built-ins in a copy of the registry; what a test registers is gone afterwards."""
  monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))


def _dense_rule(config, input_shapes, task_feature_lengths, arch):
  """A test rule: every (query, key) pair of the row counted, as dense einsum attention computes."""
  del task_feature_lengths, arch
  length = input_shapes["decoder_target_tokens"][1]
  return flops.Workload(tokens={"dec": length}, attention_pairs=config.num_layers * length ** 2,
                        tokens_per_example=length, attention_shape={"length": length})


def _register_dense_decoder() -> registry.Architecture:
  """A decoder-only variant under its own name, short name and FLOP rule (ND's attention)."""
  return registry.register(registry.Architecture(
      name="dense_counted_decoder", short="DD",
      build=functools.partial(models.DecoderOnlyModel, name="dense_counted_decoder"),
      encoder_decoder=False, bidirectional_prefix=True,
      feature_converter_cls=registry.get("non_causal_decoder").feature_converter_cls,
      flop_rule=_dense_rule, default_feature_lengths={"inputs": 24, "targets": 8}))


def test_unknown_name_lists_the_registered_names():
  names = registry.names()
  assert names[:3] == ("causal_decoder", "non_causal_decoder", "encoder_decoder")
  with pytest.raises(registry.UnknownArchitectureError) as err:
    registry.get("prefix_decoder")
  assert isinstance(err.value, ConfigError) and isinstance(err.value, ValueError)
  for name in names:
    assert repr(name) in str(err.value)
  with pytest.raises(registry.UnknownArchitectureError, match="arch.models.get_model.name"):
    models.get_model("prefix_decoder", testing.tiny_config())


def test_registration_is_refused_twice_unless_replaced(scratch_registry):
  del scratch_registry
  cd = registry.get("causal_decoder")
  with pytest.raises(ValueError, match="already registered.*replace=True"):
    registry.register(cd)
  with pytest.raises(ValueError, match="'CD' is already 'causal_decoder'"):
    registry.register(dataclasses.replace(cd, name="another_decoder"))
  swapped = dataclasses.replace(cd, default_feature_lengths={"targets": 8})
  assert registry.register(swapped, replace=True) is registry.get("causal_decoder")
  assert registry.names()[0] == "causal_decoder"


def test_a_registered_architecture_builds_trains_and_is_counted_by_its_own_rule(scratch_registry):
  del scratch_registry
  arch = _register_dense_decoder()
  assert registry.names()[-1] == arch.name
  model = models.get_model(arch.name, testing.tiny_config(vocab_size=VOCAB), z_loss=0.0)
  assert model.name == arch.name and model.arch is arch and model.module.prefix
  batch = testing.decoder_batch(np.random.RandomState(0), 2, 10, VOCAB, prefix_lengths=[3, 4])
  params = testing.init_params(model, {k: v.shape for k, v in batch.items()})
  loss, grads = jax.jit(jax.value_and_grad(lambda p: model.loss_fn(p, batch)[0]))(params)
  assert np.isfinite(loss) and all(np.isfinite(g).all() for g in jax.tree_util.tree_leaves(grads))

  counts = accounting.account(model)  # the architecture's own default lengths: 24 + 8
  cfg = model.config
  assert counts["attention_flops_per_example"] == (
      12 * cfg.num_heads * cfg.head_dim * cfg.num_layers * 32 * 32)
  nd = accounting.account(models.get_model("non_causal_decoder", cfg), {"inputs": 24, "targets": 8})
  assert counts["weight_flops_per_example"] == nd["weight_flops_per_example"]
  assert counts["attention_flops_per_example"] > nd["attention_flops_per_example"]


def test_a_rule_that_does_not_fit_the_network_is_an_error(scratch_registry):
  del scratch_registry
  ed = registry.get("encoder_decoder")
  registry.register(dataclasses.replace(
      ed, name="ed_counted_as_decoder", short="EX", flop_rule=flops.decoder_only,
      build=functools.partial(models.EncoderDecoderModel, name="ed_counted_as_decoder")))
  model = models.get_model("ed_counted_as_decoder", testing.tiny_config())
  with pytest.raises(ValueError, match="encoder_input_tokens"):
    accounting.account(model)

  _register_dense_decoder()
  registry.register(dataclasses.replace(
      registry.get("dense_counted_decoder"),
      flop_rule=lambda *a: dataclasses.replace(_dense_rule(*a), tokens={})), replace=True)
  model = models.get_model("dense_counted_decoder", testing.tiny_config())
  with pytest.raises(ValueError, match=r"no token count for the matmul roles \['dec'\]"):
    accounting.account(model)
