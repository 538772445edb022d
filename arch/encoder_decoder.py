"""The encoder-decoder network: bidirectional encoder, causal decoder with cross-attention.

Each stack owns one relative-bias table (T5), bucketed bidirectionally in the encoder and causally
in the decoder; each builds its [1, H, L, L] bias once and every layer of the stack adds it.
Cross-attention takes no position bias (T5), only the padding / packing mask. `decode` takes an optional `encoder_row` so eval can encode each prompt once and
score many continuations against it.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from arch import layers
from arch import masks
from arch import positions
from arch import stack
from arch.config import TransformerConfig


def _self_bias(cfg, length, *, bidirectional, name):
  """Additive position bias [1, H, L, L] of one stack (called inside the stack's compact).

  Built from index distances once for every row and layer of the stack (arch/positions.py).
  """
  if cfg.position_scheme == "relative":
    onehot_RxN = positions.relative_onehot(
        length, length, bidirectional=bidirectional, num_buckets=cfg.relative_num_buckets,
        max_distance=cfg.relative_max_distance)
    return positions.RelativePositionBias(cfg.num_heads, cfg.relative_num_buckets,
                                          name=name)(onehot_RxN, length)
  if cfg.position_scheme == "alibi":
    index_1xL = positions.default_positions(length)
    return positions.alibi_bias(index_1xL, index_1xL, cfg.num_heads)
  return None


class Encoder(nn.Module):
  """Bidirectional stack over encoder_input_tokens."""

  config: TransformerConfig
  embedder: nn.Module

  @nn.compact
  def __call__(self, tokens_BxS, segment_ids_BxS=None, positions_BxS=None, *, deterministic):
    cfg = self.config
    x_BxSxD = self.embedder(tokens_BxS)
    x_BxSxD = self.perturb("embedded_inputs", x_BxSxD)
    x_BxSxD = layers.dropout(cfg.dropout_rate, x_BxSxD, deterministic)
    valid_BxS = tokens_BxS > 0
    mask = masks.AttentionMask(valid_BxS, valid_BxS, segment_ids_BxS, segment_ids_BxS)
    pos_BxS = (positions.default_positions(tokens_BxS.shape[-1]) if positions_BxS is None
               else positions_BxS)
    pos_bias = _self_bias(cfg, tokens_BxS.shape[-1], bidirectional=True, name="relpos_bias")
    x_BxSxD = stack.run_stack(cfg, cfg.num_encoder_layers, x_BxSxD, mask, pos_bias, None, pos_BxS,
                              deterministic=deterministic)
    y_BxSxD = layers.RMSNorm(cfg.norm_epsilon, cfg.activation_dtype, name="encoder_norm")(x_BxSxD)
    return layers.dropout(cfg.dropout_rate, y_BxSxD, deterministic)


class Decoder(nn.Module):
  """Causal stack over decoder_input_tokens, cross-attending to the encoder output."""

  config: TransformerConfig
  embedder: nn.Module

  @nn.compact
  def __call__(self, encoded_BxSxD, encoder_valid_BxS, encoder_segment_ids_BxS, input_tokens_BxT,
               target_tokens_BxT, segment_ids_BxT=None, positions_BxT=None, *, deterministic):
    cfg = self.config
    x_BxTxD = self.embedder(input_tokens_BxT)
    x_BxTxD = self.perturb("embedded_inputs", x_BxTxD)
    x_BxTxD = layers.dropout(cfg.dropout_rate, x_BxTxD, deterministic)
    self_mask = masks.decoder_only_attention_mask(target_tokens_BxT, segment_ids_BxT, None,
                                                  prefix=False)
    pos_BxT = (positions.default_positions(input_tokens_BxT.shape[-1]) if positions_BxT is None
               else positions_BxT)
    pos_bias = _self_bias(cfg, input_tokens_BxT.shape[-1], bidirectional=False,
                          name="relpos_bias")
    packed = segment_ids_BxT is not None and encoder_segment_ids_BxS is not None
    cross_mask = masks.AttentionMask(target_tokens_BxT > 0, encoder_valid_BxS,
                                     segment_ids_BxT if packed else None,
                                     encoder_segment_ids_BxS if packed else None)
    x_BxTxD = stack.run_stack(cfg, cfg.num_decoder_layers, x_BxTxD, self_mask, pos_bias, None,
                              pos_BxT, deterministic=deterministic, cross_attention=True,
                              encoded_BxSxD=encoded_BxSxD, cross_mask=cross_mask)
    y_BxTxD = layers.RMSNorm(cfg.norm_epsilon, cfg.activation_dtype, name="decoder_norm")(x_BxTxD)
    return layers.dropout(cfg.dropout_rate, y_BxTxD, deterministic)


class EncoderDecoderNetwork(nn.Module):
  """Shared (tied) token embedding, encoder, decoder, logits."""

  config: TransformerConfig

  def setup(self):
    cfg = self.config
    self.token_embedder = layers.Embed(cfg.padded_vocab_size, cfg.emb_dim, cfg.activation_dtype)
    self.encoder = Encoder(cfg, self.token_embedder)
    self.decoder = Decoder(cfg, self.token_embedder)
    if not cfg.tie_embeddings:
      self.logits_dense = layers.LogitsDense(cfg.padded_vocab_size, cfg.activation_dtype)

  def encode(self, encoder_input_tokens, encoder_segment_ids=None, encoder_positions=None, *,
             deterministic=True):
    """[B_enc, S, D] encoder output."""
    return self.encoder(encoder_input_tokens, encoder_segment_ids, encoder_positions,
                        deterministic=deterministic)

  def decode(self, encoded_BxSxD, encoder_input_tokens, decoder_input_tokens,
             decoder_target_tokens, encoder_segment_ids=None, decoder_segment_ids=None,
             decoder_positions=None, encoder_row=None, *, deterministic=True):
    """float32 logits [B_dec, T, padded vocab]; decoder row i reads encoder row encoder_row[i]."""
    if encoder_row is not None:
      encoded_BxSxD = jnp.take(encoded_BxSxD, encoder_row, axis=0)
      encoder_input_tokens = jnp.take(encoder_input_tokens, encoder_row, axis=0)
      if encoder_segment_ids is not None:
        encoder_segment_ids = jnp.take(encoder_segment_ids, encoder_row, axis=0)
    y_BxTxD = self.decoder(encoded_BxSxD, encoder_input_tokens > 0, encoder_segment_ids,
                           decoder_input_tokens, decoder_target_tokens, decoder_segment_ids,
                           decoder_positions, deterministic=deterministic)
    return layers.output_logits(self.config, self.token_embedder,
                                None if self.config.tie_embeddings else self.logits_dense,
                                y_BxTxD)

  def __call__(self, encoder_input_tokens, decoder_input_tokens, decoder_target_tokens,
               encoder_segment_ids=None, encoder_positions=None, decoder_segment_ids=None,
               decoder_positions=None, encoder_row=None, *, deterministic=True):
    encoded_BxSxD = self.encode(encoder_input_tokens, encoder_segment_ids, encoder_positions,
                                deterministic=deterministic)
    return self.decode(encoded_BxSxD, encoder_input_tokens, decoder_input_tokens,
                       decoder_target_tokens, encoder_segment_ids, decoder_segment_ids,
                       decoder_positions, encoder_row, deterministic=deterministic)
