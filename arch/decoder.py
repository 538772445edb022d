"""The decoder-only network shared by CD and ND: only the attention policy differs.

`prefix=False` (CD) is fully causal; `prefix=True` (ND) also lets the positions seqio marks in
`decoder_causal_attention` (the inputs plus one) attend to each other. The parameter tree does not
depend on the policy, so a CD checkpoint loads as ND and back.
"""

from __future__ import annotations

import flax.linen as nn

from arch import layers
from arch import masks
from arch import positions
from arch import stack
from arch.config import TransformerConfig


class DecoderOnlyNetwork(nn.Module):
  """Embed -> N pre-norm layers (each with its own relative-bias table) -> norm -> logits."""

  config: TransformerConfig
  prefix: bool = False

  @nn.compact
  def __call__(self, decoder_input_tokens, decoder_target_tokens, decoder_segment_ids=None,
               decoder_positions=None, decoder_causal_attention=None, *, deterministic=True):
    """Returns float32 logits [B, L, padded vocab]."""
    cfg = self.config
    dtype = cfg.activation_dtype
    length = decoder_input_tokens.shape[-1]
    embedder = layers.Embed(cfg.padded_vocab_size, cfg.emb_dim, dtype, name="token_embedder")
    x_BxLxD = embedder(decoder_input_tokens)
    # A zero 'perturbations' entry (absent unless asked for): tests take gradients w.r.t. it.
    x_BxLxD = self.perturb("embedded_inputs", x_BxLxD)
    x_BxLxD = layers.dropout(cfg.dropout_rate, x_BxLxD, deterministic)

    mask = masks.decoder_only_attention_mask(decoder_target_tokens, decoder_segment_ids,
                                             decoder_causal_attention, prefix=self.prefix)
    pos_BxL = (positions.default_positions(length) if decoder_positions is None
               else decoder_positions)
    # Position biases depend on index distances only (arch/positions.py), so they are built
    # once for every row: [1, H, L, L] (ALiBi here; relative: each layer contracts its own table
    # with the one-hot below). 'bidirectional' prefix bucketing does not depend on the row's
    # prefix either: it buckets both directions over the whole row whenever the prefix is fed.
    pos_bias, onehot_RxN = None, None
    if cfg.position_scheme == "relative":
      bidirectional = (self.prefix and decoder_causal_attention is not None
                       and cfg.prefix_bucketing == "bidirectional")
      onehot_RxN = positions.relative_onehot(
          length, length, bidirectional=bidirectional, num_buckets=cfg.relative_num_buckets,
          max_distance=cfg.relative_max_distance)
    elif cfg.position_scheme == "alibi":
      index_1xL = positions.default_positions(length)
      pos_bias = positions.alibi_bias(index_1xL, index_1xL, cfg.num_heads)  # [1, H, L, L]

    x_BxLxD = stack.run_stack(cfg, cfg.num_layers, x_BxLxD, mask, pos_bias, onehot_RxN, pos_BxL,
                              deterministic=deterministic,
                              own_relpos_table=cfg.position_scheme == "relative")
    y_BxLxD = layers.RMSNorm(cfg.norm_epsilon, dtype, name="decoder_norm")(x_BxLxD)
    y_BxLxD = layers.dropout(cfg.dropout_rate, y_BxLxD, deterministic)
    logits_dense = (None if cfg.tie_embeddings
                    else layers.LogitsDense(cfg.padded_vocab_size, dtype, name="logits_dense"))
    return layers.output_logits(cfg, embedder, logits_dense, y_BxLxD)
