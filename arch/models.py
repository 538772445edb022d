"""The model API, the one seam between networks and the trainer / evaluator (t5x's shape).

`loss_fn`, `token_log_probs`, `score_batch`, `predict_batch` (cached decoding, arch/decoding.py),
`get_initial_variables`, `input_shapes` and the seqio feature converter each architecture needs.
Batches are exactly seqio's converted features (predict_batch: the task's 'inputs'). The
three built-in architectures are registered here (arch/registry.py), where their classes live.
"""

from __future__ import annotations

import functools
from typing import Any, Mapping, Optional

import flax.linen as nn
import gin
import jax
import jax.numpy as jnp
import seqio

from arch import config as config_lib
from arch import converters
from arch import decoding
from arch import flops
from arch import kernels
from arch import registry
from arch.decoder import DecoderOnlyNetwork
from arch.encoder_decoder import EncoderDecoderNetwork

Z_LOSS = 1e-4  # the paper's (t5x's default): z_loss x summed logsumexp^2 is added to the loss

Batch = Mapping[str, jax.Array]


def _weighted_token_stats(logits_BxLxV, targets_BxL, impl: str = "xla"):
  """Per-token cross-entropy, logsumexp and correctness, all float32 [B, L]."""
  logits_BxLxV = logits_BxLxV.astype(jnp.float32)
  lse_BxL = jax.nn.logsumexp(logits_BxLxV, axis=-1)
  target_logit_BxL = jnp.take_along_axis(logits_BxLxV, targets_BxL[..., None], axis=-1)[..., 0]
  correct_BxL = kernels.token_correct(logits_BxLxV, targets_BxL, impl)
  return lse_BxL - target_logit_BxL, lse_BxL, correct_BxL


class BaseModel:
  """Shared loss / scoring logic; subclasses supply the network call.

  `name` is the registered architecture (arch/registry.py) the model is built as; `arch` is its
  registry entry, which also gives the seqio feature converter.
  """

  def __init__(self, config: config_lib.TransformerConfig, z_loss: float = Z_LOSS, *, name: str):
    if not isinstance(config, config_lib.TransformerConfig):
      raise TypeError(f"{type(self).__name__} needs an arch.config.TransformerConfig, got "
                      f"{type(config).__name__}.")
    if isinstance(z_loss, bool) or not isinstance(z_loss, (int, float)) or not z_loss >= 0.0:
      raise ValueError(f"arch.models.get_model.z_loss = {z_loss!r} is invalid: expected a float "
                       f">= 0 (the paper's is {Z_LOSS}).")
    self.arch = registry.get(name)
    self.name = name
    self.config = config
    self.z_loss = float(z_loss)
    self._init_fns = {}

  @property
  def feature_converter_cls(self) -> type:
    """The seqio feature converter class this architecture's batches come from."""
    return self.arch.feature_converter_cls

  def for_platform(self, platform: str) -> "BaseModel":
    """This model with its config's 'auto' settings resolved for `platform` (self if none).

    `platform` is that of the mesh's devices: the trainer calls this before tracing, so the
    activation dtype and the attention kernel follow the devices the step compiles for rather
    than JAX's default backend. A kernel bound for another platform fails here.
    """
    impl = kernels.resolve(self.config.attention_impl, platform)
    problem = kernels.check_platform(impl, platform)
    if problem:
      raise config_lib.ConfigError(
          f"TransformerConfig.attention_impl = {self.config.attention_impl!r}: {problem}. Bind "
          f"TransformerConfig.attention_impl = 'auto' (or 'xla' / 'blockwise', which run "
          f"anywhere).")
    config = config_lib.resolve_for_platform(self.config, platform).replace(attention_impl=impl)
    return self if config == self.config else self.arch.build(config, z_loss=self.z_loss)

  # --- network call, per architecture -------------------------------------------------------
  def _call_kwargs(self, batch: Batch) -> dict:
    """The network's keyword arguments taken from a batch of converted features."""
    raise NotImplementedError

  def apply(self, params, batch: Batch, dropout_rng=None, mutable=False, extra_vars=None):
    """The network's logits on `batch`; extra_vars / mutable reach other flax collections."""
    variables = {"params": params, **(extra_vars or {})}
    rngs = None if dropout_rng is None else {"dropout": dropout_rng}
    return self.module.apply(variables, **self._call_kwargs(batch),
                             deterministic=dropout_rng is None, rngs=rngs, mutable=mutable)

  def _init_batch(self, input_shapes: Mapping[str, tuple]) -> dict:
    return {k: jnp.ones(tuple(s), jnp.int32) for k, s in input_shapes.items()}

  def logits(self, params, batch: Batch, dropout_rng=None):
    """float32 [B, L, padded vocab] logits (padded rows already masked to -1e9)."""
    return self.apply(params, batch, dropout_rng)

  # --- model API -----------------------------------------------------------------------------
  def input_shapes(self, batch_size: int, task_feature_lengths: Mapping[str, int],
                   pack: bool = True) -> dict[str, tuple]:
    """Shapes of the converted model features for this batch size and task feature lengths."""
    converter = self.feature_converter_cls(pack=pack)
    lengths = converter.get_model_feature_lengths(dict(task_feature_lengths))
    return {k: (batch_size, int(v)) for k, v in lengths.items()}

  def get_initial_variables(self, rng, input_shapes: Mapping[str, tuple]) -> dict:
    """{'params': float32 arrays}, logical-axis boxes removed (see `param_logical_axes`)."""
    shapes = tuple(sorted((k, tuple(v)) for k, v in input_shapes.items()))
    # Jitted (eager init dispatches hundreds of tiny ops one by one) and kept per shapes, so a
    # second call (eval_shape first, then the real thing) does not compile again.
    if shapes not in self._init_fns:
      self._init_fns[shapes] = jax.jit(
          lambda r: {"params": nn.unbox(self._init(r, dict(shapes))["params"])})
    return self._init_fns[shapes](rng)

  def param_logical_axes(self, input_shapes: Mapping[str, tuple]):
    """A PartitionSpec of logical axis names per parameter, same tree as the params."""
    boxed = jax.eval_shape(lambda: self._init(jax.random.PRNGKey(0), input_shapes))
    return nn.get_partition_spec(boxed["params"])

  def loss_fn(self, params, batch: Batch, dropout_rng=None):
    """Summed weighted cross-entropy + z_loss * summed weighted logsumexp^2, and scalar metrics."""
    logits_BxLxV = self.apply(params, batch, dropout_rng)
    targets_BxL = batch["decoder_target_tokens"]
    weights_BxL = batch["decoder_loss_weights"].astype(jnp.float32)
    ce_BxL, lse_BxL, correct_BxL = _weighted_token_stats(logits_BxLxV, targets_BxL,
                                                         self.config.attention_impl)
    cross_ent = jnp.sum(ce_BxL * weights_BxL)
    z_loss = self.z_loss * jnp.sum(jnp.square(lse_BxL) * weights_BxL)
    num_tokens = jnp.sum(weights_BxL)
    num_correct = jnp.sum(correct_BxL * weights_BxL)
    loss = cross_ent + z_loss
    metrics = {
        "loss": loss,
        "cross_ent_loss": cross_ent,
        "z_loss": z_loss,
        "accuracy": num_correct / jnp.maximum(num_tokens, 1.0),
        "num_tokens": num_tokens,
        "num_correct": num_correct,
    }
    return loss, metrics

  def token_log_probs(self, params, batch: Batch):
    """float32 [B, L] log p(target token), zero where decoder_loss_weights == 0."""
    logits_BxLxV = self.apply(params, batch, None)
    targets_BxL = batch["decoder_target_tokens"]
    ce_BxL, _, _ = _weighted_token_stats(logits_BxLxV, targets_BxL)
    return jnp.where(batch["decoder_loss_weights"] != 0, -ce_BxL, 0.0)

  def score_batch(self, params, batch: Batch):
    """float32 [B]: summed target log-probability (z-loss excluded), for rank classification."""
    return jnp.sum(self.token_log_probs(params, batch), axis=-1)

  def predict_batch(self, params, batch: Batch, rng=None, **kwargs):
    """int32 [B, max_new_tokens] continuations of batch['inputs'] by cached decoding.

    Keywords (arch/decoding.py: predict_batch): max_new_tokens, temperature, top_k, eos_id,
    cache_length.
    """
    return decoding.predict_batch(self, params, batch, rng, **kwargs)

  def _init(self, rng, input_shapes):
    batch = self._init_batch(input_shapes)
    return self.module.init({"params": rng}, **self._call_kwargs(batch), deterministic=True)


class DecoderOnlyModel(BaseModel):
  """CD or ND over one decoder-only network: the architecture's bidirectional_prefix chooses."""

  def __init__(self, config: config_lib.TransformerConfig, z_loss: float = Z_LOSS, *,
               name: str = "causal_decoder"):
    super().__init__(config, z_loss, name=name)
    if self.arch.encoder_decoder:
      raise ValueError(f"DecoderOnlyModel cannot be built as {name!r}, an encoder-decoder "
                       f"architecture.")
    self.module = DecoderOnlyNetwork(config, prefix=self.arch.bidirectional_prefix)

  def _call_kwargs(self, batch: Batch) -> dict:
    return dict(
        decoder_input_tokens=batch["decoder_input_tokens"],
        decoder_target_tokens=batch["decoder_target_tokens"],
        decoder_segment_ids=batch.get("decoder_segment_ids"),
        decoder_positions=batch.get("decoder_positions"),
        decoder_causal_attention=batch.get("decoder_causal_attention"),
    )


class EncoderDecoderModel(BaseModel):
  """ED; token_log_probs / score_batch accept 'encoder_row' to encode each prompt once."""

  def __init__(self, config: config_lib.TransformerConfig, z_loss: float = Z_LOSS, *,
               name: str = "encoder_decoder"):
    super().__init__(config, z_loss, name=name)
    if not self.arch.encoder_decoder:
      raise ValueError(f"EncoderDecoderModel cannot be built as {name!r}, a decoder-only "
                       f"architecture.")
    self.module = EncoderDecoderNetwork(config)

  @staticmethod
  def _call_kwargs(batch: Batch) -> dict:
    return dict(
        encoder_input_tokens=batch["encoder_input_tokens"],
        decoder_input_tokens=batch["decoder_input_tokens"],
        decoder_target_tokens=batch["decoder_target_tokens"],
        encoder_segment_ids=batch.get("encoder_segment_ids"),
        encoder_positions=batch.get("encoder_positions"),
        decoder_segment_ids=batch.get("decoder_segment_ids"),
        decoder_positions=batch.get("decoder_positions"),
        encoder_row=batch.get("encoder_row"),
    )


def _register_builtin(model_cls: type, name: str, short: str, **properties) -> None:
  registry.register(registry.Architecture(
      name=name, short=short, build=functools.partial(model_cls, name=name), **properties))


# The paper's three. CD and ND are one network (a checkpoint of one loads as the other); the
# decoder converter (seqio's, arch/converters.py) puts the loss on the targets only and, with an
# 'inputs' feature, marks the prefix in decoder_causal_attention, which only ND reads;
# TASK_FEATURE_LENGTHS['decoder_length'] sets its row (the paper's 626-token ND prefix-LM rows).
_register_builtin(DecoderOnlyModel, "causal_decoder", "CD", encoder_decoder=False,
                  bidirectional_prefix=False,
                  feature_converter_cls=converters.DecoderFeatureConverter,
                  flop_rule=flops.decoder_only, default_feature_lengths={"targets": 626})
_register_builtin(DecoderOnlyModel, "non_causal_decoder", "ND", encoder_decoder=False,
                  bidirectional_prefix=True,
                  feature_converter_cls=converters.DecoderFeatureConverter,
                  flop_rule=flops.decoder_only,
                  default_feature_lengths={"inputs": 512, "targets": 114})
_register_builtin(EncoderDecoderModel, "encoder_decoder", "ED", encoder_decoder=True,
                  bidirectional_prefix=False,
                  feature_converter_cls=seqio.EncDecFeatureConverter,
                  flop_rule=flops.encoder_decoder,
                  default_feature_lengths={"inputs": 512, "targets": 114})


@gin.configurable(module="arch.models")
def get_model(name: str = gin.REQUIRED, config: Optional[config_lib.TransformerConfig] = None,
              vocabulary: Any = None, z_loss: float = Z_LOSS) -> BaseModel:
  """Builds the registered architecture `name` (MODEL = @get_model(), name set by the arch file)."""
  try:
    arch = registry.get(name)
  except registry.UnknownArchitectureError as e:
    raise registry.UnknownArchitectureError(
        f"arch.models.get_model.name = {e} Set by gin_configs/arch/*.gin; a new architecture "
        f"registers itself with arch.registry.register.") from None
  config = config_lib.TransformerConfig() if config is None else config
  config_lib.check_vocabulary(config, vocabulary)
  return arch.build(config, z_loss=z_loss)
