"""Rank classification through the model API: log p(option | prompt) for many (prompt, option) pairs.

The batches are built here with exactly the features seqio's converters give the model in training
(tests/test_eval_rank.py checks them against seqio), so scoring needs nothing objective-specific:

- decoder-only (CD and ND): one segment per pair, prompt tokens then option tokens; loss weights on
  the option tokens; `decoder_causal_attention` over the prompt plus one position, so ND reads the
  prompt bidirectionally as in prefix-LM training (CD ignores the feature). Pairs are packed several
  to a row with segment ids and positions; each pair's score is the sum over its own segment.
- encoder-decoder: every distinct prompt is encoded once. Prompts are packed into encoder rows;
  decoder row j of an encoder row holds at most one option of each prompt there (segment id = the
  prompt's segment), and the `encoder_row` feature names the encoder row each decoder row reads.

Each distinct padded shape (a length bucket) is compiled once; rows are padded to a fixed count.
Every batch holds at most `batch_tokens` decoder positions (and as many encoder positions), whatever
the prompt/option structure: a prompt's options spill over several batches, each with its encoding.
Prompts too long for `max_length` (or `max_prompt_length`, when set) lose their beginning (the
question usually sits at the end).
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import time
from typing import Any, Callable, Iterable, Protocol, Sequence

import jax
import numpy as np
import tqdm

_PACK_WINDOW = 16
# (prompt, option, EOS after the prompt, EOS after the option); each suite sets the two flags
# (eval/suites.py: T0-Eval scores the option's EOS and gives the prompt none). The option's EOS is a
# scored target token (decoder side for every architecture); the prompt's EOS, when asked, is the
# last input token. Encoder-decoder prompts that would be empty always get the EOS: an encoder row
# with no token has nothing to attend to.
Pair = tuple[str, str, bool, bool]
# (prefix ids, continuation ids): scored exactly as given (eval/continuation.py).
TokenPair = tuple[Sequence[int], Sequence[int]]


class Scorer(Protocol):
  """Anything that returns log p(option [+EOS] | prompt) for each pair."""

  def score(self, pairs: Sequence[Pair]) -> np.ndarray:
    ...

  def greedy_match(self, pairs: Sequence[Pair]) -> np.ndarray:
    ...


def _next_pow2(n: int) -> int:
  return 1 << max(0, (int(n) - 1).bit_length())


@dataclasses.dataclass
class _Item:
  index: int  # position in the deduplicated pair list
  prompt: list[int]
  option: list[int]

  @property
  def length(self) -> int:
    return len(self.prompt) + len(self.option)


@dataclasses.dataclass(frozen=True)
class ScoringConfig:
  """Packing and truncation knobs of rank classification."""

  pack: bool = True
  row_length: int = 128  # minimum row length; pairs up to this long share rows
  batch_tokens: int = 8192  # rows per batch = max(1, batch_tokens // row length)
  max_length: int = 1024  # decoder-only rows / encoder inputs
  max_target_length: int = 256  # encoder-decoder options
  max_prompt_length: int | None = None  # prompt tokens kept, the last ones (a suite may set it)
  progress: bool | None = None  # a tqdm bar; None: only on a terminal


class ModelScorer:
  """Scores (prompt, option) pairs with any model of the model API (arch/models.py)."""

  def __init__(self, model: Any, params: Any, vocabulary: Any,
               config: ScoringConfig = ScoringConfig()):
    self.model, self.params, self.vocabulary, self.config = model, params, vocabulary, config
    self.is_encoder_decoder = _is_encoder_decoder(model)
    self._token_log_probs = jax.jit(model.token_log_probs)
    self._greedy = jax.jit(_per_row_greedy(model)) if hasattr(model, "logits") else None
    self._cache: dict[str, list[int]] = {}
    self._warned_truncation = False
    self.shapes_compiled: set[tuple] = set()
    # Where the time goes (benchmarks/eval_throughput.py prints these): decoder positions run
    # through the network, those holding a real token, those scored, and seconds spent waiting for
    # the forward passes.
    self.stats = dict(batches=0, decoder_positions=0, decoder_tokens=0, scored_tokens=0,
                      forward_s=0.0, truncated_prompts=0)

  def _encode(self, text: str) -> list[int]:
    ids = self._cache.get(text)
    if ids is None:
      ids = self._cache[text] = list(self.vocabulary.encode(text)) if text else []
    return ids

  def _items(self, pairs: Sequence[Pair]) -> list[_Item]:
    eos, cfg = self.vocabulary.eos_id, self.config
    max_option = cfg.max_target_length if self.is_encoder_decoder else cfg.max_length - 1
    items, cut = [], 0
    for i, (prompt, option, prompt_eos, option_eos) in enumerate(pairs):
      o = (self._encode(option) + ([eos] if option_eos else []))[:max_option]
      p = full = self._encode(prompt)
      if cfg.max_prompt_length is not None:  # from the left, as lm-evaluation-harness cuts
        p = p[max(0, len(p) - cfg.max_prompt_length):]
      prompt_eos = prompt_eos or (self.is_encoder_decoder and not p)
      budget = cfg.max_length - int(prompt_eos) - (0 if self.is_encoder_decoder else len(o))
      p = p[len(p) - budget:] if len(p) > budget else list(p)  # keep the end of the prompt
      cut += len(p) < len(full)
      items.append(_Item(i, p + [eos] if prompt_eos else p, o))
    self.stats["truncated_prompts"] += cut
    if cut and not self._warned_truncation:  # once per scorer: a long-context suite cuts many
      self._warned_truncation = True
      logging.warning("eval: %d of %d prompts are longer than the model's budget (max_length %d, "
                      "max_prompt_length %s) and keep only their last tokens (cut from the left); "
                      "the count is in the scorer's stats['truncated_prompts'].", cut, len(pairs),
                      cfg.max_length, cfg.max_prompt_length)
    return items

  def score(self, pairs: Sequence[Pair]) -> np.ndarray:
    """Summed log-probabilities of each option (EOS included when asked), in the pairs' order."""
    return self._run(pairs, self._token_log_probs,
                     lambda logp_L, target_L: logp_L.astype(np.float64).sum())

  def greedy_match(self, pairs: Sequence[Pair]) -> np.ndarray:
    """Whether greedy decoding from the prompt reproduces each option exactly (LAMBADA's acc)."""
    if self._greedy is None:
      raise TypeError(f"{type(self.model).__name__} has no logits(params, batch): greedy-match "
                      "tasks (LAMBADA, TriviaQA, WebQuestions) need it.")
    return self._run(pairs, self._greedy,
                     lambda argmax_L, target_L: bool(np.all(argmax_L == target_L))
                     ).astype(bool)

  def score_token_pairs(self, pairs: Sequence[TokenPair]) -> tuple[np.ndarray, np.ndarray]:
    """(summed log p(continuation | prefix), continuation length) per pair of token-id lists.

    The ids are scored as given, through the same batches as `score`: no EOS is added and nothing
    is cut; a pair that does not fit max_length / max_target_length raises ValueError.
    """
    keyed = [(tuple(int(t) for t in p), tuple(int(t) for t in c)) for p, c in pairs]
    cfg = self.config
    for i, (p, c) in enumerate(keyed):
      fits = (len(p) <= cfg.max_length and len(c) <= cfg.max_target_length
              if self.is_encoder_decoder else len(p) + len(c) <= cfg.max_length)
      if not c or (self.is_encoder_decoder and not p) or not fits:
        raise ValueError(
            f"token pair {i}: prefix {len(p)} + continuation {len(c)} tokens cannot be scored "
            f"as given (ScoringConfig.max_length = {cfg.max_length}, max_target_length = "
            f"{cfg.max_target_length}; an encoder-decoder prefix must not be empty).")
    sums = self._run(keyed, self._token_log_probs,
                     lambda logp_L, target_L: logp_L.astype(np.float64).sum(),
                     items_fn=lambda unique: [_Item(i, list(p), list(c))
                                              for i, (p, c) in enumerate(unique)])
    return sums, np.array([len(c) for _, c in keyed], np.int64)

  def _run(self, pairs: Sequence, fn: Callable, reduce: Callable,
           items_fn: Callable[[list], list[_Item]] | None = None) -> np.ndarray:
    unique = list(dict.fromkeys(pairs))
    where = {p: i for i, p in enumerate(unique)}
    items = (items_fn or self._items)(unique)
    out = np.zeros(len(unique), np.float64)
    build = self._ed_batches if self.is_encoder_decoder else self._decoder_batches
    batches = list(build(items))
    hosts, host = jax.process_count(), jax.process_index()
    show = self.config.progress if self.config.progress is not None else sys.stderr.isatty()
    # Several hosts: each scores every hosts-th batch (all build the same list) and one gather
    # puts the scores together, so the result is the one host's, bit for bit.
    for batch, spans in tqdm.tqdm(batches[host::hosts], desc="scoring", unit="batch",
                                  disable=not show or host != 0, leave=False):
      self.shapes_compiled.add(tuple(sorted((k, v.shape) for k, v in batch.items())))
      start = time.perf_counter()
      per_token_BxL = np.asarray(jax.device_get(fn(self.params, batch)))
      targets_BxL = batch["decoder_target_tokens"]
      self.stats["forward_s"] += time.perf_counter() - start
      self.stats["batches"] += 1
      self.stats["decoder_positions"] += targets_BxL.size
      self.stats["decoder_tokens"] += int(np.count_nonzero(targets_BxL))
      self.stats["scored_tokens"] += int(np.count_nonzero(batch["decoder_loss_weights"]))
      for index, row, start, end in spans:
        out[index] = reduce(per_token_BxL[row, start:end], targets_BxL[row, start:end])
    if hosts > 1:
      out = _gather_scores(out, batches, hosts)
    return out[[where[p] for p in pairs]]

  def _rows_per_batch(self, length: int) -> int:
    return max(1, self.config.batch_tokens // length)

  def _decoder_batches(self, items: list[_Item]) -> Iterable[tuple[dict, list]]:
    """Packed decoder-only batches: (features, [(item index, row, start, end)])."""
    for length, rows in _pack_by_bucket(items, self.config, lambda it: it.length):
      per_batch = self._rows_per_batch(length)
      for b in range(0, len(rows), per_batch):
        chunk = rows[b:b + per_batch]
        feats = _zeros(per_batch, length, _decoder_keys(self.config.pack))
        spans = []
        for r, row in enumerate(chunk):
          pos = 0
          for seg, it in enumerate(row, start=1):
            seq = it.prompt + it.option
            n, np_ = len(seq), len(it.prompt)
            sl = slice(pos, pos + n)
            feats["decoder_target_tokens"][r, sl] = seq
            feats["decoder_input_tokens"][r, pos + 1:pos + n] = seq[:-1]
            feats["decoder_loss_weights"][r, pos + np_:pos + n] = 1
            feats["decoder_causal_attention"][r, pos:pos + min(np_ + 1, n)] = 1
            if self.config.pack:
              feats["decoder_segment_ids"][r, sl] = seg
              feats["decoder_positions"][r, sl] = np.arange(n)
            spans.append((it.index, r, pos + np_, pos + n))
            pos += n
        yield feats, spans

  def _decoder_rows_of(self, enc_row: list[_Item], by_prompt: dict,
                       dec_len: int) -> list[list[tuple[int, _Item]]]:
    """Options of an encoder row's prompts packed first-fit into decoder rows of dec_len."""
    rows: list[list[tuple[int, _Item]]] = []
    room: list[int] = []
    segs: list[set[int]] = []
    for seg, p in enumerate(enc_row, start=1):
      for it in by_prompt[tuple(p.prompt)]:
        n = len(it.option)
        for r in range(len(rows) if self.config.pack else 0):
          if room[r] >= n and seg not in segs[r]:
            rows[r].append((seg, it))
            room[r] -= n
            segs[r].add(seg)
            break
        else:
          rows.append([(seg, it)])
          room.append(dec_len - n)
          segs.append({seg})
    return rows

  def _ed_batches(self, items: list[_Item]) -> Iterable[tuple[dict, list]]:
    """Encoder-decoder batches that encode every distinct prompt once."""
    by_prompt: dict[tuple, list[_Item]] = {}
    for it in items:
      by_prompt.setdefault(tuple(it.prompt), []).append(it)
    prompts = [_Item(-1, list(p), []) for p in by_prompt]
    pack = self.config.pack
    for enc_len, enc_rows in _pack_by_bucket(prompts, self.config, lambda it: it.length):
      # Decoder rows of length dec_len, each tied to one encoder row and holding at most one
      # option per prompt (segment) of it, so options never attend to each other. A decoder row
      # can hold about one average option per prompt of its encoder row: sizing it to that (not
      # to the encoder row) keeps padding low, and every decoder position pays for the full
      # vocabulary's logits while encoder positions do not.
      options = [[len(it.option) for it in by_prompt[tuple(p.prompt)]] for row in enc_rows
                 for p in row]
      longest = max(max(o) for o in options)
      fill = np.mean([sum(np.mean([len(it.option) for it in by_prompt[tuple(p.prompt)]])
                          for p in row) for row in enc_rows])
      dec_len = max(8, _next_pow2(max(longest, int(fill)))) if pack else max(
          16, _next_pow2(longest))
      enc_per_batch = self._rows_per_batch(enc_len)
      dec_per_batch = self._rows_per_batch(dec_len)
      # An encoder row whose options need more decoder rows than a batch holds (BLiMP: one empty
      # prompt, thousands of options) is split: each piece repeats the encoder row in its batch,
      # so both sides of every batch stay within batch_tokens whatever the prompt/option shape.
      groups = [(e, piece) for e, enc_row in enumerate(enc_rows)
                for piece in _split(self._decoder_rows_of(enc_row, by_prompt, dec_len),
                                    dec_per_batch)]
      for batch_groups in _chunk_groups(groups, enc_per_batch, dec_per_batch):
        feats = {**_zeros(enc_per_batch, enc_len, _encoder_keys(pack)),
                 **_zeros(dec_per_batch, dec_len, _decoder_keys(pack, causal=False))}
        feats["encoder_row"] = np.zeros((dec_per_batch,), np.int32)
        spans, d = [], 0
        for e, (g_index, dec_rows) in enumerate(batch_groups):
          pos = 0
          for seg, p in enumerate(enc_rows[g_index], start=1):
            n = len(p.prompt)
            feats["encoder_input_tokens"][e, pos:pos + n] = p.prompt
            if pack:
              feats["encoder_segment_ids"][e, pos:pos + n] = seg
              feats["encoder_positions"][e, pos:pos + n] = np.arange(n)
            pos += n
          for row in dec_rows:
            feats["encoder_row"][d] = e
            pos = 0
            for seg, it in row:
              n = len(it.option)
              sl = slice(pos, pos + n)
              feats["decoder_target_tokens"][d, sl] = it.option
              feats["decoder_input_tokens"][d, pos + 1:pos + n] = it.option[:-1]
              feats["decoder_loss_weights"][d, sl] = 1
              if pack:
                feats["decoder_segment_ids"][d, sl] = seg
                feats["decoder_positions"][d, sl] = np.arange(n)
              spans.append((it.index, d, pos, pos + n))
              pos += n
            d += 1
        yield feats, spans


def _gather_scores(out: np.ndarray, batches: list, hosts: int) -> np.ndarray:
  """Every host's scores of its own batches (batch b is host b % hosts's), on every host.

  The float64 scores travel as raw bits (JAX's arrays are 32-bit without x64), so each host ends
  with exactly the numbers the scoring host computed.
  """
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  owner = np.zeros(len(out), np.int64)
  for b, (_, spans) in enumerate(batches):
    for index, _, _, _ in spans:
      owner[index] = b % hosts
  bits_HxN = np.asarray(multihost_utils.process_allgather(out.view(np.uint32)))
  every_HxN = bits_HxN.reshape(hosts, -1).view(np.float64)
  return every_HxN[owner, np.arange(len(out))]


def _per_row_greedy(model: Any) -> Callable:
  """(params, batch) -> [B, L] argmax token ids (greedy predictions under teacher forcing)."""
  logits = model.logits
  return lambda params, batch: jax.numpy.argmax(logits(params, batch), axis=-1)


def _is_encoder_decoder(model: Any) -> bool:
  """From the model's architecture (arch.registry), by its feature converter for other models."""
  arch = getattr(model, "arch", None)
  if arch is not None:
    return bool(arch.encoder_decoder)
  import seqio  # pylint: disable=g-import-not-at-top
  cls = getattr(model, "feature_converter_cls", None)
  return isinstance(cls, type) and issubclass(cls, seqio.EncDecFeatureConverter)


def _decoder_keys(pack: bool, causal: bool = True) -> list[str]:
  keys = ["decoder_target_tokens", "decoder_input_tokens", "decoder_loss_weights"]
  if causal:
    keys.append("decoder_causal_attention")
  if pack:
    keys += ["decoder_segment_ids", "decoder_positions"]
  return keys


def _encoder_keys(pack: bool) -> list[str]:
  return ["encoder_input_tokens"] + (["encoder_segment_ids", "encoder_positions"] if pack else [])


def _zeros(rows: int, length: int, keys: Sequence[str]) -> dict[str, np.ndarray]:
  return {k: np.zeros((rows, length), np.int32) for k in keys}


def _pack_by_bucket(items: Sequence[_Item], config: ScoringConfig,
                    length_fn: Callable[[_Item], int]) -> list[tuple[int, list[list[_Item]]]]:
  """Groups items by padded row length and packs each group first-fit-decreasing."""
  buckets: dict[int, list[_Item]] = {}
  for it in items:
    n = max(1, length_fn(it))
    buckets.setdefault(max(config.row_length, _next_pow2(n)), []).append(it)
  out = []
  for length in sorted(buckets):
    group = sorted(buckets[length], key=length_fn, reverse=True)
    if not config.pack:
      out.append((length, [[it] for it in group]))
      continue
    rows: list[list[_Item]] = []
    room: list[int] = []
    for it in group:
      n = length_fn(it)
      # Items come longest first, so only the few newest rows can still have room: looking at a
      # window keeps packing linear in the number of pairs.
      for r in range(max(0, len(rows) - _PACK_WINDOW), len(rows)):
        if room[r] >= n:
          rows[r].append(it)
          room[r] -= n
          break
      else:
        rows.append([it])
        room.append(length - n)
    out.append((length, rows))
  return out


def _split(rows: list, size: int) -> list[list]:
  return [rows[i:i + size] for i in range(0, len(rows), size)]


def _chunk_groups(groups: list[tuple[int, list]], max_enc: int,
                  max_dec: int) -> Iterable[list[tuple[int, list]]]:
  """Splits (encoder row, its decoder rows) groups into batches within both row budgets."""
  batch, n_dec = [], 0
  for e, g in groups:
    if batch and (len(batch) == max_enc or n_dec + len(g) > max_dec):
      yield batch
      batch, n_dec = [], 0
    batch.append((e, g))
    n_dec += len(g)
  if batch:
    yield batch
