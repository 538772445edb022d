"""TransformerConfig: the one gin-configurable description of every network in arch/.

Bad values fail here, at construction, with the gin binding to fix and the values allowed, so a
mistyped size or activation never reaches jit compilation.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import gin
import jax
import jax.numpy as jnp

from experiments.runtime import errors

ACTIVATIONS = ("geglu", "swiglu", "reglu", "relu", "gelu")
GATED_ACTIVATIONS = ("geglu", "swiglu", "reglu")
POSITION_SCHEMES = ("relative", "rotary", "alibi", "none")
PREFIX_BUCKETING = ("bidirectional", "causal")
# Names of arch/stack.py's rematerialization policies, from most memory kept to least (see its
# table for what each saves); 'none' checkpoints nothing.
REMAT_POLICIES = ("none", "dots", "minimal", "dots_no_batch", "save_projections", "save_qkv",
                  "full")
# Kept in step with arch/kernels/__init__.py: IMPLS (tests/test_arch_kernels.py checks).
ATTENTION_IMPLS = ("auto", "xla", "cpu", "cudnn", "pallas_tpu", "blockwise")
DTYPES = ("auto", "float32", "bfloat16")
# What dtype='auto' means per platform: bfloat16 activations on accelerators (the MXU and tensor
# cores run bfloat16 matmuls at their peak); float32 on CPU, where bfloat16 is not faster.
AUTO_DTYPES = {"cpu": "float32", "gpu": "bfloat16", "cuda": "bfloat16", "rocm": "bfloat16",
               "tpu": "bfloat16"}
VOCAB_ROW_MULTIPLE = 128


class ConfigError(errors.ConfigError):
  """A TransformerConfig or vocabulary binding that cannot build a model."""


def _fail(field: str, value: Any, expected: str) -> None:
  raise ConfigError(
      f"TransformerConfig.{field} = {value!r} is invalid: expected {expected}. "
      f"Fix the gin binding `TransformerConfig.{field}` (usually in gin_configs/sizes/*.gin)."
  )


@gin.configurable
@dataclasses.dataclass(frozen=True)
class TransformerConfig:
  """Sizes and switches of a T5.1.1-style Transformer (decoder-only or encoder-decoder)."""

  vocab_size: int = 32128  # ids in use; embedding rows are padded up to a multiple of 128
  emb_dim: int = 512  # D
  num_heads: int = 8  # H
  head_dim: int = 64  # Dh
  mlp_dim: int = 2048  # F
  num_layers: int = 8  # decoder-only depth
  num_encoder_layers: int = 8  # encoder-decoder: encoder depth
  num_decoder_layers: int = 8  # encoder-decoder: decoder depth
  activations: str = "geglu"
  position_scheme: str = "relative"
  relative_num_buckets: int = 32
  relative_max_distance: int = 128
  # How ND buckets relative positions when a prefix is present. 'causal' (default) is the paper's
  # t5x decoder-only code: one-sided buckets, so keys ahead of the query inside the prefix share
  # bucket 0; ND with an empty prefix then equals CD exactly and CD checkpoints adapt to ND with
  # unchanged bias semantics. 'bidirectional' gives forward and backward distances separate
  # buckets over the whole sequence, as a T5 encoder, whenever decoder_causal_attention is fed.
  prefix_bucketing: str = "causal"
  rotary_max_wavelength: float = 10_000.0
  dropout_rate: float = 0.0
  tie_embeddings: bool = True
  # Activations; parameters, softmax, norms and the loss stay float32. 'auto' is resolved by
  # resolve_for_platform from the platform the step compiles for (AUTO_DTYPES).
  dtype: str = "auto"
  scan_layers: bool = False
  remat_policy: str = "none"
  norm_epsilon: float = 1e-6
  # The kernel set (arch/kernels): 'xla' the plain reference; 'cpu' the same numbers shaped for
  # XLA:CPU; 'cudnn' / 'pallas_tpu' fused attention on GPU / TPU; 'blockwise' portable
  # online-softmax attention without [B, H, L, L] residuals; 'auto' picks by the platform of the
  # mesh the step compiles for (cpu -> 'cpu', gpu -> 'cudnn', tpu -> 'pallas_tpu').
  attention_impl: str = "auto"

  def __post_init__(self):
    for name in ("vocab_size", "emb_dim", "num_heads", "head_dim", "mlp_dim", "num_layers",
                 "num_encoder_layers", "num_decoder_layers", "relative_num_buckets",
                 "relative_max_distance"):
      value = getattr(self, name)
      if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        _fail(name, value, "a positive integer")
    if self.emb_dim % self.num_heads:
      _fail("num_heads", self.num_heads,
            f"a divisor of TransformerConfig.emb_dim = {self.emb_dim} (d_model must split evenly "
            f"into heads)")
    if self.activations not in ACTIVATIONS:
      _fail("activations", self.activations, f"one of {ACTIVATIONS}")
    if self.position_scheme not in POSITION_SCHEMES:
      _fail("position_scheme", self.position_scheme, f"one of {POSITION_SCHEMES}")
    if self.prefix_bucketing not in PREFIX_BUCKETING:
      _fail("prefix_bucketing", self.prefix_bucketing, f"one of {PREFIX_BUCKETING}")
    if self.relative_num_buckets % 2:
      _fail("relative_num_buckets", self.relative_num_buckets,
            "an even number (bidirectional bucketing splits the buckets in two)")
    if self.position_scheme == "rotary" and self.head_dim % 2:
      _fail("head_dim", self.head_dim, "an even number when position_scheme = 'rotary'")
    if self.remat_policy not in REMAT_POLICIES:
      _fail("remat_policy", self.remat_policy, f"one of {REMAT_POLICIES}")
    if self.attention_impl not in ATTENTION_IMPLS:
      _fail("attention_impl", self.attention_impl, f"one of {ATTENTION_IMPLS}")
    if self.dtype not in DTYPES:
      _fail("dtype", self.dtype, f"one of {DTYPES}")
    if not 0.0 <= float(self.dropout_rate) < 1.0:
      _fail("dropout_rate", self.dropout_rate, "a float in [0, 1)")

  @property
  def padded_vocab_size(self) -> int:
    """Embedding rows: vocab_size rounded up to a multiple of 128 (TPU/GPU friendly tiles)."""
    return padded_rows(self.vocab_size)

  @property
  def activation_dtype(self):
    """The activations' dtype; 'auto' unresolved falls back to JAX's default backend."""
    if self.dtype == "auto":  # a caller that never resolved (eval on the default devices)
      return jnp.dtype(AUTO_DTYPES.get(jax.default_backend(), "float32"))
    return jnp.dtype(self.dtype)

  @property
  def gated(self) -> bool:
    return self.activations in GATED_ACTIVATIONS

  def replace(self, **changes) -> "TransformerConfig":
    return dataclasses.replace(self, **changes)


def resolve_for_platform(config: TransformerConfig, platform: str) -> TransformerConfig:
  """`config` with its 'auto' settings made concrete for a platform ('cpu', 'gpu', 'tpu').

  The platform is that of the mesh the step compiles for (experiments.partitioning.Partitioner
  .platform), not jax.default_backend(); explicit values are kept as given.
  """
  changes = {}
  if config.dtype == "auto":
    changes["dtype"] = AUTO_DTYPES.get(str(platform).lower(), "float32")
  return config.replace(**changes) if changes else config


def padded_rows(vocab_size: int) -> int:
  """Embedding rows for `vocab_size` ids: rounded up to a multiple of VOCAB_ROW_MULTIPLE."""
  m = VOCAB_ROW_MULTIPLE
  return (int(vocab_size) + m - 1) // m * m


def check_vocabulary(config: TransformerConfig, vocabulary, source: str = "VOCABULARY") -> None:
  """The model's embedding rows are exactly those of `vocabulary` (all ids, sentinels included).

  VOCAB_SIZE may exceed the vocabulary's ids only inside the row padding (T5's 32,100 ids on the
  paper's 32,128 rows); a larger table is a mistake, e.g. T5's rows on the embedded vocabulary.
  """
  if vocabulary is None:
    return
  needed = int(vocabulary.vocab_size)
  if config.vocab_size < needed or config.padded_vocab_size != padded_rows(needed):
    raise ConfigError(
        f"VOCAB_SIZE = {config.vocab_size:,} (bound to arch.config.TransformerConfig.vocab_size: "
        f"{config.padded_vocab_size:,} embedding rows) does not fit {source} ({needed:,} ids, "
        f"{padded_rows(needed):,} rows): bind VOCAB_SIZE = {needed} with that vocabulary; the data "
        f"file gin_configs/data/<corpus>.gin binds both VOCABULARY and VOCAB_SIZE.")
