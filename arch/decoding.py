"""Cached autoregressive decoding (the model API's `predict_batch`) and its no-cache reference.

Prompts arrive as the task's 'inputs' feature: [B, P] token ids, right-padded with 0 (seqio's pad).

- Decoder-only (CD, ND): each row is [BOS=0, prompt ids] as the feature converter builds it, laid
  out LEFT-padded in a block of W = P + 1 cache slots, so every row's last prompt token sits in slot
  W - 1 and every generated token of a step goes into one shared slot (one dynamic_update_slice per
  layer, no per-row scatter). Positions are per row: slot minus the row's padding, so BOS is
  position 0 as in training and the relative bias, ALiBi and rotary see the true distances. The
  prompt block is prefilled in one call; ND attends bidirectionally over it (the converter's
  `decoder_causal_attention`: prompt plus BOS), then generated tokens attend causally.
- Encoder-decoder: the encoder runs once on the prompt; the decoder starts from BOS at position 0
  and caches its self-attention; cross-attention keys and values are recomputed from the encoder
  output at each step (as t5x's decoders do).

The networks here reuse arch/'s layers and stack under the parameter names of DecoderOnlyNetwork
and EncoderDecoderNetwork (the checkpoint's tree, unrolled); tests/test_arch_decoding.py holds
them to the networks by comparing cached greedy decoding with full recomputation, token for token.
A layer keeps its cache in the flax 'cache' collection (arch/layers.py: _update_kv_cache). The
whole generation is one jitted lax.while_loop over a cache of fixed size; it stops early once every
row has produced EOS.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from arch import layers
from arch import masks
from arch import positions
from arch import stack
from arch.config import TransformerConfig
from experiments.runtime import errors

BOS_ID = 0  # seqio's decoder start token (its pad id)


class DecodeInputError(errors.ConfigError):
  """A predict_batch request that cannot run (prompt layout, lengths, sampling settings)."""


# --- networks with a cache (parameter names as arch/decoder.py and arch/encoder_decoder.py) -------


class CachedDecoderOnly(nn.Module):
  """DecoderOnlyNetwork's layers over Q new tokens; attention reads the cache (Q x C)."""

  config: TransformerConfig

  @nn.compact
  def __call__(self, tokens_BxQ, mask, pos_bias, onehot_RxN, pos_BxQ):
    cfg = self.config
    embedder = layers.Embed(cfg.padded_vocab_size, cfg.emb_dim, cfg.activation_dtype,
                            name="token_embedder")
    x_BxQxD = stack.run_stack(cfg, cfg.num_layers, embedder(tokens_BxQ), mask, pos_bias,
                              onehot_RxN, pos_BxQ, deterministic=True,
                              own_relpos_table=cfg.position_scheme == "relative")
    y_BxQxD = layers.RMSNorm(cfg.norm_epsilon, cfg.activation_dtype, name="decoder_norm")(x_BxQxD)
    logits_dense = (None if cfg.tie_embeddings else
                    layers.LogitsDense(cfg.padded_vocab_size, cfg.activation_dtype,
                                       name="logits_dense"))
    return layers.output_logits(cfg, embedder, logits_dense, y_BxQxD)


class _CachedDecoderStack(nn.Module):
  """encoder_decoder.Decoder's stack with a cache: one relative-bias table, cross-attention."""

  config: TransformerConfig
  embedder: nn.Module

  @nn.compact
  def __call__(self, tokens_BxQ, mask, pos_bias, onehot_RxN, pos_BxQ, encoded_BxSxD,
               cross_mask):
    cfg = self.config
    if onehot_RxN is not None:  # the stack's one table, as encoder_decoder._self_bias builds it
      pos_bias = positions.RelativePositionBias(
          cfg.num_heads, cfg.relative_num_buckets, name="relpos_bias")(
              onehot_RxN, tokens_BxQ.shape[-1])
    x_BxQxD = stack.run_stack(cfg, cfg.num_decoder_layers, self.embedder(tokens_BxQ), mask,
                              pos_bias, None, pos_BxQ, deterministic=True,
                              cross_attention=True, encoded_BxSxD=encoded_BxSxD,
                              cross_mask=cross_mask)
    return layers.RMSNorm(cfg.norm_epsilon, cfg.activation_dtype, name="decoder_norm")(x_BxQxD)


class CachedEncoderDecoder(nn.Module):
  """EncoderDecoderNetwork's decoder side (shared embedding, decoder, logits) with a cache."""

  config: TransformerConfig

  def setup(self):
    cfg = self.config
    self.token_embedder = layers.Embed(cfg.padded_vocab_size, cfg.emb_dim, cfg.activation_dtype)
    self.decoder = _CachedDecoderStack(cfg, self.token_embedder)
    if not cfg.tie_embeddings:
      self.logits_dense = layers.LogitsDense(cfg.padded_vocab_size, cfg.activation_dtype)

  def __call__(self, tokens_BxQ, mask, pos_bias, onehot_RxN, pos_BxQ, encoded_BxSxD,
               cross_mask):
    y_BxQxD = self.decoder(tokens_BxQ, mask, pos_bias, onehot_RxN, pos_BxQ, encoded_BxSxD,
                           cross_mask)
    return layers.output_logits(self.config, self.token_embedder,
                                None if self.config.tie_embeddings else self.logits_dense,
                                y_BxQxD)


def empty_cache(params_tree, batch: int, length: int, config: TransformerConfig) -> dict:
  """Zero keys/values [B, C, H, Dh] and index 0 for every self-attention under `params_tree`."""
  out = {}
  for name, sub in params_tree.items():
    if name == "self_attention":
      shape = (batch, length, config.num_heads, config.head_dim)
      out[name] = {"cached_key": jnp.zeros(shape, config.activation_dtype),
                   "cached_value": jnp.zeros(shape, config.activation_dtype),
                   "cache_index": jnp.zeros((), jnp.int32)}
    elif isinstance(sub, Mapping):
      inner = empty_cache(sub, batch, length, config)
      if inner:
        out[name] = inner
  return out


# --- masks and position biases of cached steps ----------------------------------------------------


def _step_bias(config, start, q_len: int, k_valid_BxC, *, prefix_slots: int,
               bidirectional: bool):
  """(AttentionMask, ALiBi bias [1, H, Q, C] or None, relative one-hot [Q + C - 1, N] or None).

  Queries are the cache slots start .. start + Q - 1. A query sees written slots at or before its
  own; with prefix_slots > 0 (ND) the slots of the prompt block also see each other. Left padding
  is masked by k_valid. Biases are built from slot indices: for every pair the mask allows, the
  slot distance is the position distance (a row's positions are its slots minus its padding), so
  one [1, H, Q, C] bias serves every row, as in training.
  """
  c = k_valid_BxC.shape[-1]
  q_slot_Q = start + jnp.arange(q_len)
  k_slot_C = jnp.arange(c)
  marked = None
  if prefix_slots:
    marked = ((q_slot_Q < prefix_slots)[None, :], (k_slot_C < prefix_slots)[None, :])
  mask = masks.AttentionMask(jnp.ones((1, q_len), bool), k_valid_BxC,
                             q_marked_BxQ=None if marked is None else marked[0],
                             k_marked_BxK=None if marked is None else marked[1],
                             causal=True, q_offset=start)
  pos_bias, onehot_RxN = None, None
  if config.position_scheme == "relative":
    onehot_RxN = positions.relative_onehot(
        q_len, c, bidirectional=bidirectional, num_buckets=config.relative_num_buckets,
        max_distance=config.relative_max_distance, q_offset=start)
  elif config.position_scheme == "alibi":
    pos_bias = positions.alibi_bias(q_slot_Q[None, :], k_slot_C[None, :], config.num_heads)
  return mask, pos_bias, onehot_RxN


def _choose(logits_BxV, key, temperature: float, top_k: int):
  """Greedy (temperature 0) or a sample from softmax(logits / temperature) over the top k."""
  if temperature == 0.0:
    return jnp.argmax(logits_BxV, axis=-1).astype(jnp.int32)
  logits_BxV = logits_BxV / temperature
  if top_k:
    kth_Bx1 = jax.lax.top_k(logits_BxV, top_k)[0][:, -1:]
    logits_BxV = jnp.where(logits_BxV < kth_Bx1, -jnp.inf, logits_BxV)
  return jax.random.categorical(key, logits_BxV, axis=-1).astype(jnp.int32)


def _generate(step_fn, cache, first_logits_BxV, rng, *, max_new_tokens: int, eos_id: int,
              temperature: float, top_k: int, feed_slot0: int):
  """The shared while_loop: token i comes from the logits of the token fed at feed_slot0 + i - 1."""
  batch = first_logits_BxV.shape[0]
  tok_B = _choose(first_logits_BxV, jax.random.fold_in(rng, 0), temperature, top_k)
  out_BxN = jnp.zeros((batch, max_new_tokens), jnp.int32).at[:, 0].set(tok_B)
  done_B = tok_B == eos_id

  def cond(state):
    i, _, _, done_B, _ = state
    return (i < max_new_tokens) & ~jnp.all(done_B)

  def body(state):
    i, out_BxN, tok_B, done_B, cache = state
    logits_Bx1xV, cache = step_fn(cache, tok_B[:, None], feed_slot0 + i - 1)
    new_B = _choose(logits_Bx1xV[:, -1], jax.random.fold_in(rng, i), temperature, top_k)
    new_B = jnp.where(done_B, 0, new_B)  # a finished row pads with 0, as seqio's outputs
    out_BxN = jax.lax.dynamic_update_slice(out_BxN, new_B[:, None], (0, i))
    return i + 1, out_BxN, new_B, done_B | (new_B == eos_id), cache

  state = (jnp.int32(1), out_BxN, tok_B, done_B, cache)
  return jax.lax.while_loop(cond, body, state)[1]


# --- the jitted programs --------------------------------------------------------------------------


def _decoder_only_start(model, params, block_BxW, pad_B, cache_length: int):
  """(step, cache after the prompt block's prefill, its last logits [B, V], first fed slot)."""
  cfg = _decoding_config(model.config)
  net = CachedDecoderOnly(cfg)
  prefix = bool(model.arch.bidirectional_prefix)
  bidirectional = prefix and cfg.prefix_bucketing == "bidirectional"
  batch, width = block_BxW.shape
  k_pos_BxC = jnp.arange(cache_length)[None, :] - pad_B[:, None]
  k_valid_BxC = k_pos_BxC >= 0

  def step(cache, tokens_BxQ, start):
    q_pos_BxQ = (start + jnp.arange(tokens_BxQ.shape[1]))[None, :] - pad_B[:, None]
    mask, pos_bias, onehot = _step_bias(cfg, start, tokens_BxQ.shape[1], k_valid_BxC,
                                        prefix_slots=width if prefix else 0,
                                        bidirectional=bidirectional)
    logits, mutated = net.apply({"params": params, "cache": cache}, tokens_BxQ, mask, pos_bias,
                                onehot, q_pos_BxQ, mutable=["cache"])
    return logits, mutated["cache"]

  logits_BxWxV, cache = step(empty_cache(params, batch, cache_length, cfg), block_BxW, 0)
  return step, cache, logits_BxWxV[:, -1], width


def _encoder_decoder_start(model, params, inputs_BxS, cache_length: int):
  """(step, cache after BOS, the logits BOS gives [B, V], first fed slot); encodes once."""
  cfg = _decoding_config(model.config)
  net = CachedEncoderDecoder(cfg)
  batch = inputs_BxS.shape[0]
  encoded_BxSxD = type(model.module)(cfg).apply({"params": params}, inputs_BxS, method="encode")
  cross_mask = masks.AttentionMask(jnp.ones((1, 1), bool), inputs_BxS > 0)
  k_valid_1xC = jnp.ones((1, cache_length), bool)

  def step(cache, tokens_Bx1, start):
    mask, pos_bias, onehot = _step_bias(cfg, start, 1, k_valid_1xC, prefix_slots=0,
                                        bidirectional=False)
    logits, mutated = net.apply({"params": params, "cache": cache}, tokens_Bx1, mask, pos_bias,
                                onehot, (start + jnp.arange(1))[None, :], encoded_BxSxD,
                                cross_mask, mutable=["cache"])
    return logits, mutated["cache"]

  cache = {"decoder": empty_cache(params["decoder"], batch, cache_length, cfg)}
  logits_Bx1xV, cache = step(cache, jnp.full((batch, 1), BOS_ID, jnp.int32), 0)
  return step, cache, logits_Bx1xV[:, -1], 1


def _start(model, params, prompt, cache_length):
  if model.arch.encoder_decoder:
    return _encoder_decoder_start(model, params, prompt["inputs"], cache_length)
  return _decoder_only_start(model, params, prompt["block"], prompt["pad"], cache_length)


def _generate_program(model, cache_length: int, max_new_tokens: int, temperature: float,
                      top_k: int, eos_id: int):
  def run(params, prompt, rng):
    step, cache, logits_BxV, feed_slot0 = _start(model, params, prompt, cache_length)
    return _generate(step, cache, logits_BxV, rng, max_new_tokens=max_new_tokens, eos_id=eos_id,
                     temperature=temperature, top_k=top_k, feed_slot0=feed_slot0)

  return jax.jit(run)


def _forced_program(model, cache_length: int):
  def run(params, prompt, forced_BxN):
    step, cache, logits_BxV, feed_slot0 = _start(model, params, prompt, cache_length)

    def body(cache, i_tok):
      i, tok_B = i_tok
      logits_Bx1xV, cache = step(cache, tok_B[:, None], feed_slot0 + i)
      return cache, logits_Bx1xV[:, 0]

    n = forced_BxN.shape[1]
    _, rest_NxBxV = jax.lax.scan(body, cache, (jnp.arange(n - 1), forced_BxN[:, :-1].T))
    return jnp.concatenate([logits_BxV[:, None], jnp.swapaxes(rest_NxBxV, 0, 1)], axis=1)

  return jax.jit(run)


def _decoding_config(config: TransformerConfig) -> TransformerConfig:
  # Decoding runs the layers unrolled (params converted from the scan layout) and without remat:
  # a step is tiny, and the cache collection then needs no scan axis.
  return config.replace(scan_layers=False, remat_policy="none", dropout_rate=0.0)


def _unrolled(model, params):
  return stack.scanned_to_unrolled(params) if model.config.scan_layers else params


# --- the model API --------------------------------------------------------------------------------


def check_prompts(inputs_BxP) -> np.ndarray:
  """Prompt lengths [B] of right-padded 'inputs'; a clear error for anything else."""
  inputs_BxP = np.asarray(inputs_BxP)
  if inputs_BxP.ndim != 2 or not np.issubdtype(inputs_BxP.dtype, np.integer):
    raise DecodeInputError(f"predict_batch: batch['inputs'] must be integer token ids [batch, "
                           f"length], got {inputs_BxP.dtype} {inputs_BxP.shape}.")
  if inputs_BxP.shape[0] == 0:
    raise DecodeInputError("predict_batch: batch['inputs'] has no rows.")
  if (inputs_BxP < 0).any():
    raise DecodeInputError("predict_batch: batch['inputs'] holds negative token ids.")
  lengths_B = (inputs_BxP > 0).sum(axis=1)
  inside_B = inputs_BxP.shape[1] - np.argmax(inputs_BxP[:, ::-1] > 0, axis=1)
  inside_B = np.where(lengths_B > 0, inside_B, 0)
  bad = np.flatnonzero(inside_B != lengths_B)
  if bad.size:
    raise DecodeInputError(
        f"predict_batch: row {int(bad[0])} of batch['inputs'] has a 0 (padding) inside its prompt; "
        f"prompts must be right-padded with 0 and hold no 0 token.")
  return lengths_B


def _check_settings(max_new_tokens, temperature, top_k, vocab_size):
  if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
    raise DecodeInputError(f"predict_batch: max_new_tokens = {max_new_tokens!r}; expected an "
                           f"integer >= 1.")
  if not float(temperature) >= 0.0:
    raise DecodeInputError(f"predict_batch: temperature = {temperature!r}; expected >= 0 "
                           f"(0 = greedy).")
  if isinstance(top_k, bool) or not isinstance(top_k, int) or not 0 <= top_k <= vocab_size:
    raise DecodeInputError(f"predict_batch: top_k = {top_k!r}; expected an integer in [0, "
                           f"{vocab_size}] (0 = the whole vocabulary).")


def _program(model, key, build):
  programs = model.__dict__.setdefault("_decode_programs", {})
  if key not in programs:
    programs[key] = build()
  return programs[key]


def predict_batch(model, params, batch: Mapping[str, Any], rng: Optional[jax.Array] = None, *,
                  max_new_tokens: int, temperature: float = 0.0, top_k: int = 0,
                  eos_id: Optional[int] = 1, cache_length: Optional[int] = None) -> jax.Array:
  """int32 [B, max_new_tokens] continuations of batch['inputs']; after EOS a row holds 0.

  cache_length: decoder positions the cache holds; decoder-only needs 1 + P + max_new_tokens - 1
  (BOS, the padded prompt width P, the fed tokens), encoder-decoder max_new_tokens. Default: that.
  One program is compiled per (batch shape, cache_length, settings) and serves every step; callers
  pad prompts to a few widths (eval/generate.py: powers of two) to keep compiles few.
  """
  if "inputs" not in batch:
    raise DecodeInputError(f"predict_batch needs batch['inputs'] (right-padded prompt ids); got "
                           f"keys {sorted(batch)}.")
  lengths_B = check_prompts(batch["inputs"])
  _check_settings(max_new_tokens, temperature, top_k, model.config.vocab_size)
  inputs_BxP = np.asarray(batch["inputs"], np.int32)
  width = inputs_BxP.shape[1]
  ed = bool(model.arch.encoder_decoder)
  needed = max_new_tokens if ed else width + max_new_tokens
  if cache_length is None:
    cache_length = needed
  if cache_length < needed:
    raise DecodeInputError(
        f"predict_batch: cache_length = {cache_length} is too short: "
        + (f"max_new_tokens = {max_new_tokens} decoder positions are needed."
           if ed else f"the prompt block (BOS + {width} prompt positions, longest prompt "
           f"{int(lengths_B.max())} tokens) plus max_new_tokens = {max_new_tokens} - 1 fed tokens "
           f"need {needed}."))
  rng = jax.random.PRNGKey(0) if rng is None else rng
  eos = -1 if eos_id is None else int(eos_id)
  key = ("generate", int(cache_length), max_new_tokens, float(temperature), int(top_k), eos)
  prog = _program(model, key, lambda: _generate_program(model, *key[1:]))
  return prog(_unrolled(model, params), _prompt_arrays(model, inputs_BxP, lengths_B), rng)


def _prompt_arrays(model, inputs_BxP, lengths_B) -> dict:
  """ED: the right-padded inputs; decoder-only: [BOS, prompt] flush right and each row's padding."""
  if model.arch.encoder_decoder:
    return {"inputs": jnp.asarray(inputs_BxP)}
  batch_size, width = inputs_BxP.shape
  pad_B = (width - lengths_B).astype(np.int32)
  block_BxW = np.zeros((batch_size, width + 1), np.int32)
  for b in range(batch_size):
    block_BxW[b, pad_B[b] + 1:] = inputs_BxP[b, :lengths_B[b]]
  return {"block": jnp.asarray(block_BxW), "pad": jnp.asarray(pad_B)}


def forced_step_logits(model, params, batch: Mapping[str, Any], forced_BxN) -> jax.Array:
  """float32 [B, N, V] logits of the cached steps when forced_BxN is fed (teacher forcing).

  Entry i predicts forced token i from the prompt and forced tokens < i: the same numbers as the
  full network's logits at those positions, which tests/test_arch_decoding.py checks.
  """
  lengths_B = check_prompts(batch["inputs"])
  inputs_BxP = np.asarray(batch["inputs"], np.int32)
  forced_BxN = np.asarray(forced_BxN, np.int32)
  n = forced_BxN.shape[1]
  cache_length = n if model.arch.encoder_decoder else inputs_BxP.shape[1] + n
  prog = _program(model, ("forced", cache_length), lambda: _forced_program(model, cache_length))
  return prog(_unrolled(model, params), _prompt_arrays(model, inputs_BxP, lengths_B),
              jnp.asarray(forced_BxN))


# --- the reference: greedy decoding by full recomputation (no cache) ------------------------------


def greedy_no_cache(model, params, batch: Mapping[str, Any], *, max_new_tokens: int,
                    eos_id: Optional[int] = 1) -> jax.Array:
  """Greedy continuations computed by running the model's own network on the whole sequence at
  every step (the features of training: right-padded rows, BOS, decoder_causal_attention for ND).

  One jitted while_loop over a fixed-length buffer; the parity reference and the benchmark's
  no-cache baseline.
  """
  lengths_B = check_prompts(batch["inputs"])
  _check_settings(max_new_tokens, 0.0, 0, model.config.vocab_size)
  inputs_BxP = np.asarray(batch["inputs"], np.int32)
  eos = -1 if eos_id is None else int(eos_id)
  key = ("no_cache", max_new_tokens, eos)
  ed = bool(model.arch.encoder_decoder)

  def build():
    def run(params, inputs_BxP, lengths_B):
      batch_size, width = inputs_BxP.shape
      rows_B = jnp.arange(batch_size)
      if ed:
        length = max_new_tokens
        buf_BxL = jnp.zeros((batch_size, length), jnp.int32)
        start_B = jnp.zeros((batch_size,), jnp.int32)  # slot whose logits give token i, minus i
      else:
        length = width + max_new_tokens
        buf_BxL = jnp.zeros((batch_size, length), jnp.int32).at[:, 1:width + 1].set(inputs_BxP)
        start_B = lengths_B
      slots_L = jnp.arange(length)

      def logits_at(buf_BxL, i):
        last_B = start_B + i
        feats = {"decoder_input_tokens": buf_BxL,
                 "decoder_target_tokens": (slots_L[None, :] <= last_B[:, None]).astype(jnp.int32),
                 "decoder_loss_weights": jnp.zeros_like(buf_BxL)}
        if ed:
          feats["encoder_input_tokens"] = inputs_BxP
        else:
          feats["decoder_causal_attention"] = (
              slots_L[None, :] <= lengths_B[:, None]).astype(jnp.int32)
        logits_BxLxV = model.logits(params, feats)
        return logits_BxLxV[rows_B, last_B]

      def write(buf_BxL, tok_B, i):
        slot_B = jnp.minimum(start_B + i + 1, length - 1)
        return buf_BxL.at[rows_B, slot_B].set(tok_B)

      tok_B = jnp.argmax(logits_at(buf_BxL, 0), axis=-1).astype(jnp.int32)
      out_BxN = jnp.zeros((batch_size, max_new_tokens), jnp.int32).at[:, 0].set(tok_B)
      state = (jnp.int32(1), out_BxN, write(buf_BxL, tok_B, 0), tok_B == eos)

      def cond(state):
        return (state[0] < max_new_tokens) & ~jnp.all(state[3])

      def body(state):
        i, out_BxN, buf_BxL, done_B = state
        new_B = jnp.argmax(logits_at(buf_BxL, i), axis=-1).astype(jnp.int32)
        new_B = jnp.where(done_B, 0, new_B)
        out_BxN = jax.lax.dynamic_update_slice(out_BxN, new_B[:, None], (0, i))
        return i + 1, out_BxN, write(buf_BxL, new_B, i), done_B | (new_B == eos)

      return jax.lax.while_loop(cond, body, state)[1]

    return jax.jit(run)

  prog = _program(model, key, build)
  return prog(params, jnp.asarray(inputs_BxP), jnp.asarray(lengths_B.astype(np.int32)))
