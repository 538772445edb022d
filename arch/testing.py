"""Test and smoke-run helpers: a tiny config, synthetic seqio-style batches, input gradients."""

from __future__ import annotations

from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from arch.config import TransformerConfig


def tiny_config(**overrides) -> TransformerConfig:
  """D=32, 4 heads x 8, F=64, 2 layers (2 + 2), vocab 200 (padded to 256 rows)."""
  base = dict(vocab_size=200, emb_dim=32, num_heads=4, head_dim=8, mlp_dim=64, num_layers=2,
              num_encoder_layers=2, num_decoder_layers=2)
  base.update(overrides)
  return TransformerConfig(**base)


def _shift_right(targets_BxL, segment_ids_BxL=None):
  """seqio's autoregressive inputs: targets shifted right with 0 (BOS) at each segment start."""
  inputs = np.zeros_like(targets_BxL)
  inputs[:, 1:] = targets_BxL[:, :-1]
  if segment_ids_BxL is not None:
    starts = np.ones_like(segment_ids_BxL, dtype=bool)
    starts[:, 1:] = segment_ids_BxL[:, 1:] != segment_ids_BxL[:, :-1]
    inputs[starts] = 0
  return inputs


def _positions(segment_ids_BxL):
  pos = np.zeros_like(segment_ids_BxL)
  for b in range(segment_ids_BxL.shape[0]):
    for t in range(1, segment_ids_BxL.shape[1]):
      same = segment_ids_BxL[b, t] == segment_ids_BxL[b, t - 1]
      pos[b, t] = pos[b, t - 1] + 1 if same else 0
  return pos


def decoder_batch(rng: np.random.RandomState, batch: int, length: int, vocab: int,
                  prefix_lengths: Optional[Sequence[int]] = None,
                  segment_ids: Optional[np.ndarray] = None, pad_from: Optional[int] = None):
  """A decoder-only batch like seqio's (Prefix)LM converters produce.

  prefix_lengths: inputs length per row (ND); decoder_causal_attention marks it plus one position
  and the loss weights cover the rest. segment_ids: packed rows (0 = padding). pad_from: the first
  padding position of every unpacked row.
  """
  targets = rng.randint(2, vocab, size=(batch, length)).astype(np.int32)
  if pad_from is not None:
    targets[:, pad_from:] = 0
  if segment_ids is not None:
    segment_ids = np.asarray(segment_ids, np.int32)
    targets[segment_ids == 0] = 0
  weights = (targets > 0).astype(np.int32)
  out = {"decoder_target_tokens": targets,
         "decoder_input_tokens": _shift_right(targets, segment_ids)}
  if prefix_lengths is not None:
    causal = np.zeros_like(targets)
    for b, p in enumerate(prefix_lengths):
      causal[b, :p + 1] = 1
      weights[b, :p] = 0
    out["decoder_causal_attention"] = causal
  out["decoder_loss_weights"] = weights
  if segment_ids is not None:
    out["decoder_segment_ids"] = segment_ids
    out["decoder_positions"] = _positions(segment_ids) * (segment_ids > 0)
  return {k: jnp.asarray(v) for k, v in out.items()}


def encdec_batch(rng: np.random.RandomState, batch: int, in_length: int, out_length: int,
                 vocab: int, encoder_segment_ids=None, decoder_segment_ids=None,
                 pad_from: Optional[tuple[int, int]] = None):
  """An encoder-decoder batch like seqio's EncDecFeatureConverter produces.

  pad_from: (first encoder padding position, first decoder padding position) of the last row.
  """
  enc = rng.randint(2, vocab, size=(batch, in_length)).astype(np.int32)
  targets = rng.randint(2, vocab, size=(batch, out_length)).astype(np.int32)
  if pad_from is not None:
    enc[-1, pad_from[0]:] = 0
    targets[-1, pad_from[1]:] = 0
  if encoder_segment_ids is not None:
    encoder_segment_ids = np.asarray(encoder_segment_ids, np.int32)
    decoder_segment_ids = np.asarray(decoder_segment_ids, np.int32)
    enc[encoder_segment_ids == 0] = 0
    targets[decoder_segment_ids == 0] = 0
  out = {"encoder_input_tokens": enc, "decoder_target_tokens": targets,
         "decoder_input_tokens": _shift_right(targets, decoder_segment_ids),
         "decoder_loss_weights": (targets > 0).astype(np.int32)}
  if encoder_segment_ids is not None:
    out.update(encoder_segment_ids=encoder_segment_ids, decoder_segment_ids=decoder_segment_ids,
               encoder_positions=_positions(encoder_segment_ids) * (encoder_segment_ids > 0),
               decoder_positions=_positions(decoder_segment_ids) * (decoder_segment_ids > 0))
  return {k: jnp.asarray(v) for k, v in out.items()}


def zero_perturbations(model, params, batch):
  """The zero 'perturbations' added to every embedded input (for input-gradient tests)."""
  apply = lambda p, b: model.apply(p, b, mutable=["perturbations"])[1]  # noqa: E731
  return jax.jit(apply)(params, batch)["perturbations"]


def input_dependence(model, params, batch, row: int = 0):
  """{perturbation path: [L_out, B, L_in]}: norms of d log p(target_t of `row`) / d embedded input.

  Entry [t, b, j] is exactly zero when output t of `row` cannot see input position j of row b.
  """
  perts = zero_perturbations(model, params, batch)

  def log_probs_L(p):
    logits_BxLxV = model.apply(params, batch, extra_vars={"perturbations": p})
    logp_BxLxV = jax.nn.log_softmax(logits_BxLxV, axis=-1)
    tgt = batch["decoder_target_tokens"]
    return jnp.take_along_axis(logp_BxLxV, tgt[..., None], axis=-1)[row, :, 0]

  jac = jax.jit(jax.jacrev(log_probs_L))(perts)
  flat = jax.tree_util.tree_flatten_with_path(jac)[0]
  out = {}
  for path, leaf in flat:
    name = "/".join(getattr(k, "key", str(k)) for k in path)
    out[name] = np.asarray(jnp.sqrt(jnp.sum(jnp.square(leaf), axis=-1)))
  return out


_PARAM_CACHE: dict = {}


def init_params(model, shapes, seed: int = 0):
  """get_initial_variables(...)['params'], memoised per (network, config, seed).

  Initialisation compiles one random-number kernel per parameter (~0.2 s each on CPU), so tests
  that need the same tiny network share one set of parameters (their shapes do not depend on the
  batch shapes). CD and ND share the decoder-only network, hence its parameters.
  """
  shapes = {k: tuple(v) for k, v in shapes.items()}
  cfg = model.config
  # Fields that leave the parameter tree unchanged share one entry.
  cfg = cfg.replace(prefix_bucketing="causal", remat_policy="none", dropout_rate=0.0,
                    attention_impl="auto",
                    dtype="float32",
                    position_scheme="relative" if cfg.position_scheme == "relative" else "none")
  key = (type(model.module).__name__, cfg, seed)
  if key not in _PARAM_CACHE:
    _PARAM_CACHE[key] = model.get_initial_variables(jax.random.PRNGKey(seed), shapes)["params"]
  return _PARAM_CACHE[key]


def gathered_relative_bias(table_HxN, q_pos_BxQ, k_pos_BxK, *, bidirectional: bool,
                           num_buckets: int, max_distance: int):
  """The per-row gathered [B, H, Q, K] relative bias the network used before the one-hot form.

  Kept as the test oracle of arch.positions.RelativePositionBias: buckets of every row's own
  positions, then a gather from the [H, buckets] table.
  """
  from arch import positions  # pylint: disable=g-import-not-at-top
  buckets_BxQxK = positions.relative_buckets(q_pos_BxQ, k_pos_BxK, bidirectional=bidirectional,
                                             num_buckets=num_buckets, max_distance=max_distance)
  return jnp.transpose(jnp.take(table_HxN, buckets_BxQxK, axis=1), (1, 0, 2, 3))
