"""FLOP rules: what one example of an architecture runs through its matmuls and its attention.

Each Architecture names its rule (`flop_rule`); arch/accounting.py counts the parameters of each
matmul role from the parameter tree and asks the rule for the rest:

  rule(config, input_shapes, task_feature_lengths, arch) -> Workload

input_shapes are the converted model features of one example ([1, length] each); arch is the
Architecture being counted (so one rule can serve several policies of one network). Roles:
'enc' (encoder matmuls, encoder tokens), 'dec' (decoder matmuls and the output projection,
decoder tokens) and 'cross_kv' (cross-attention keys and values, which project encoder tokens).
Attention pairs are counted by the real shape: a causal block halved, a bidirectional block (the
encoder, the ND prefix) in full, cross-attention S_targets x S_inputs, summed over layers.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping


@dataclasses.dataclass(frozen=True)
class Workload:
  """Per-example counts a FLOP rule returns."""

  tokens: Mapping[str, int]  # tokens through the matmul parameters of each role
  attention_pairs: float  # (query, key) pairs, summed over layers
  tokens_per_example: int  # token positions of one converted row (all stacks)
  attention_shape: Mapping[str, int]  # the lengths the pairs were counted from, for reports


def _length(input_shapes: Mapping[str, tuple], feature: str, arch) -> int:
  if feature not in input_shapes:
    raise ValueError(f"FLOP rule of {arch.name!r}: the converted features "
                     f"{sorted(input_shapes)} lack {feature!r}; register the architecture with a "
                     f"flop_rule for its own features (arch/flops.py).")
  return int(input_shapes[feature][1])


def decoder_only(config, input_shapes: Mapping[str, tuple],
                 task_feature_lengths: Mapping[str, int], arch: Any) -> Workload:
  """One stack over the whole row; with arch.bidirectional_prefix the 'inputs' block is full.

  The row is the converted length (inputs + targets, or TASK_FEATURE_LENGTHS['decoder_length']:
  626 for the paper's ND prefix-LM rows, not 1,252). The bidirectional block is the 'inputs'
  length capped at the row; where inputs + targets exceed the row, the split varies per example
  and the capped block is an upper bound (at 626 positions the difference from the mean of a
  uniform split is under 1% of the example's training FLOPs at the paper's size).
  """
  if "encoder_input_tokens" in input_shapes:
    raise ValueError(f"FLOP rule decoder_only cannot count {arch.name!r}: its features include "
                     f"encoder_input_tokens (use arch.flops.encoder_decoder or its own rule).")
  length = _length(input_shapes, "decoder_target_tokens", arch)
  prefix = min(task_feature_lengths.get("inputs", 0), length) if arch.bidirectional_prefix else 0
  pairs = config.num_layers * (prefix * prefix + (length * length - prefix * prefix) / 2)
  return Workload(tokens={"enc": 0, "dec": length, "cross_kv": 0}, attention_pairs=pairs,
                  tokens_per_example=length,
                  attention_shape={"length": length, "bidirectional_prefix": prefix})


def encoder_decoder(config, input_shapes: Mapping[str, tuple],
                    task_feature_lengths: Mapping[str, int], arch: Any) -> Workload:
  """Bidirectional encoder over the inputs, causal decoder over the targets, cross-attention."""
  del task_feature_lengths  # the converted shapes carry both lengths
  s_in = _length(input_shapes, "encoder_input_tokens", arch)
  s_t = _length(input_shapes, "decoder_target_tokens", arch)
  pairs = (config.num_encoder_layers * s_in * s_in + config.num_decoder_layers * s_t * s_t / 2
           + config.num_decoder_layers * s_t * s_in)
  return Workload(tokens={"enc": s_in, "dec": s_t, "cross_kv": s_in}, attention_pairs=pairs,
                  tokens_per_example=s_in + s_t,
                  attention_shape={"inputs": s_in, "targets": s_t})
