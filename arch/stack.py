"""One Transformer layer and the stacking of N of them (plain loop, nn.scan, optional remat).

Unscanned layers are named `layers_0..layers_{N-1}`; scanned ones share the name `layers` with a
leading 'layers' axis on every parameter. Both give the same numbers (tests/test_arch_stack.py).
"""

from __future__ import annotations

from typing import Optional

import flax.linen as nn
import jax
from jax.ad_checkpoint import checkpoint_name

from arch import layers
from arch import positions
from arch.config import TransformerConfig

# Activations named with checkpoint_name (q/k/v and MLP input projections in arch/layers.py, the
# sublayer outputs below): policies that save by name keep working when a fused attention kernel
# or another matmul layout replaces the dots that 'dots_no_batch' recognises.
QKV_NAMES = ("query_proj", "key_proj", "value_proj")
PROJECTION_NAMES = QKV_NAMES + ("attention_out", "mlp_wi", "mlp_out")

_cp = jax.checkpoint_policies
# TransformerConfig.remat_policy -> what the backward pass keeps of each layer's forward pass
# (anything else is recomputed from the layer's input). Ordered from most memory kept to least;
# tests/test_arch_stack.py checks that order on XLA's compiled temporary memory.
REMAT_POLICIES = {
    # every matmul output, attention's [B, H, Q, K] scores included
    "dots": _cp.dots_saveable,
    # MaxText's name: matmuls without batch dimensions, i.e. the projections (= 'dots_no_batch')
    "minimal": _cp.dots_with_no_batch_dims_saveable,
    "dots_no_batch": _cp.dots_with_no_batch_dims_saveable,
    # q, k, v, attention output, MLP input and output projections; attention is recomputed
    "save_projections": _cp.save_only_these_names(*PROJECTION_NAMES),
    # q, k, v only: attention's and the MLP's matmuls are recomputed
    "save_qkv": _cp.save_only_these_names(*QKV_NAMES),
    # nothing: the whole layer is recomputed from its input
    "full": _cp.nothing_saveable,
}


class TransformerLayer(nn.Module):
  """Pre-norm residual layer: self-attention, [cross-attention], gated MLP.

  self_mask / cross_mask are arch.masks.AttentionMask; pos_bias is the stack's additive [1, H, L, L]
  position bias (or None). A layer that owns a relative-bias table (decoder-only) builds its own
  bias from the stack's distance one-hot relpos_onehot_RxN (arch/positions.py).
  """

  config: TransformerConfig
  deterministic: bool = True
  own_relpos_table: bool = False  # decoder-only: one relative-bias table per layer (paper's code)
  cross_attention: bool = False
  scanned: bool = False

  @nn.compact
  def __call__(self, x_BxLxD, self_mask, pos_bias=None, relpos_onehot_RxN=None, pos_BxL=None,
               encoded_BxSxD=None, cross_mask=None):
    cfg = self.config
    dtype = cfg.activation_dtype
    drop = lambda y: nn.Dropout(cfg.dropout_rate, broadcast_dims=(-2,))(  # noqa: E731
        y, deterministic=self.deterministic)
    norm = lambda name: layers.RMSNorm(cfg.norm_epsilon, dtype, name=name)  # noqa: E731
    use_rotary = cfg.position_scheme == "rotary"

    if self.own_relpos_table:
      pos_bias = positions.RelativePositionBias(
          cfg.num_heads, cfg.relative_num_buckets, name="relpos_bias")(
              relpos_onehot_RxN, x_BxLxD.shape[-2])
    h_BxLxD = norm("pre_self_attention_norm")(x_BxLxD)
    h_BxLxD = layers.MultiHeadAttention(cfg, self.deterministic, use_rotary, name="self_attention")(
        h_BxLxD, h_BxLxD, pos_bias, pos_BxL, pos_BxL, mask=self_mask)
    h_BxLxD = checkpoint_name(h_BxLxD, "attention_out")
    x_BxLxD = x_BxLxD + drop(h_BxLxD)

    if self.cross_attention:
      h_BxLxD = norm("pre_cross_attention_norm")(x_BxLxD)
      h_BxLxD = layers.MultiHeadAttention(cfg, self.deterministic, False,
                                          name="encoder_decoder_attention")(
                                              h_BxLxD, encoded_BxSxD, None, mask=cross_mask)
      h_BxLxD = checkpoint_name(h_BxLxD, "attention_out")
      x_BxLxD = x_BxLxD + drop(h_BxLxD)

    h_BxLxD = norm("pre_mlp_norm")(x_BxLxD)
    h_BxLxD = checkpoint_name(layers.MlpBlock(cfg, self.deterministic, name="mlp")(h_BxLxD),
                              "mlp_out")
    x_BxLxD = x_BxLxD + drop(h_BxLxD)
    x_BxLxD = nn.with_logical_constraint(x_BxLxD, ("batch", "length", "embed"))
    return (x_BxLxD, None) if self.scanned else x_BxLxD


def run_stack(config: TransformerConfig, num_layers: int, x_BxLxD, *args,
              deterministic: bool, name: str = "layers", own_relpos_table: bool = False,
              cross_attention: bool = False, encoded_BxSxD: Optional[jax.Array] = None,
              cross_mask=None):
  """Applies num_layers TransformerLayers; must be called inside a parent's @nn.compact method."""
  layer_cls = TransformerLayer
  if config.remat_policy != "none":
    layer_cls = nn.remat(layer_cls, policy=REMAT_POLICIES[config.remat_policy],
                         prevent_cse=not config.scan_layers)
  attrs = dict(config=config, deterministic=deterministic, own_relpos_table=own_relpos_table,
               cross_attention=cross_attention)
  call_args = tuple(args) + (encoded_BxSxD, cross_mask)
  if config.scan_layers:
    scanned_cls = nn.scan(
        layer_cls,
        variable_axes={"params": 0},
        split_rngs={"params": True, "dropout": True},
        in_axes=(nn.broadcast,) * len(call_args),
        length=num_layers,
        metadata_params={nn.PARTITION_NAME: "layers"},
    )
    x_BxLxD, _ = scanned_cls(**attrs, scanned=True, name=name)(x_BxLxD, *call_args)
    return x_BxLxD
  for i in range(num_layers):
    x_BxLxD = layer_cls(**attrs, name=f"{name}_{i}")(x_BxLxD, *call_args)
  return x_BxLxD


def _is_layer_key(key: str, name: str) -> bool:
  return key.startswith(name + "_") and key[len(name) + 1:].isdigit()


def unrolled_to_scanned(params, name: str = "layers"):
  """Turns `layers_0..N-1` subtrees into one `layers` subtree stacked on axis 0 (scan layout)."""
  if not isinstance(params, dict):
    return params
  keys = sorted((k for k in params if _is_layer_key(k, name)), key=lambda k: int(k.split("_")[-1]))
  out = {k: unrolled_to_scanned(v, name) for k, v in params.items() if k not in keys}
  if keys:
    out[name] = jax.tree_util.tree_map(lambda *xs: jax.numpy.stack(xs), *[params[k] for k in keys])
  return out


def scanned_to_unrolled(params, name: str = "layers"):
  """The inverse of `unrolled_to_scanned`."""
  if not isinstance(params, dict):
    return params
  out = {k: scanned_to_unrolled(v, name) for k, v in params.items() if k != name}
  if name in params:
    n = jax.tree_util.tree_leaves(params[name])[0].shape[0]
    for i in range(n):
      out[f"{name}_{i}"] = jax.tree_util.tree_map(lambda x, i=i: x[i], params[name])
  return out
