"""Held-out continuation loss: -log p(continuation | prefix) in nats per token, for any model.

The one loss comparable across architectures and objectives (a training loss is not: each
objective predicts different tokens). Windows of `prefix_length + continuation_length` token ids
come from the run's corpus's held-out split ('validation': the held-out plays for the embedded
corpus, c4/en's validation split, the text corpus's validation files) and are scored through rank
classification's batches (eval/rank_classification.py `score_token_pairs`): the encoder-decoder
reads the prefix with its encoder, the non-causal decoder reads it bidirectionally (plus one
position, as in prefix-LM training), the causal decoder causally. Only the continuation is scored.

Selection, fixed and independent of the model: documents are read in the split's stored order
(unshuffled) and tokenized with the run's vocabulary; those with at least one window's tokens are
kept until there are `windows` of them. Windows are non-overlapping, aligned at a document's
first token, and taken round-robin: the first window of every kept document in order, then the
second of each that has one, and so on, until `windows`. So a window never crosses documents,
holds no EOS (none is added after the prefix or the continuation: both are running text), and a
long document cannot crowd out the others. Too little text is an error, never fewer windows: every
run with the same settings scores exactly the same ids (`ids_sha256` in the results shows it).

Nats per token are comparable between runs that share the vocabulary (a grid does); across
vocabularies they are not.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from typing import Any, Iterable, Optional

import gin
import numpy as np

import objectives
from experiments.runtime.errors import ConfigError

SPLIT = "validation"
_CONFIG = "eval.continuation.ContinuationConfig"


class ContinuationConfigError(ConfigError):
  """Continuation-loss settings that cannot hold, or a corpus with too little held-out text."""


@gin.configurable(module="eval.continuation")
@dataclasses.dataclass(frozen=True)
class ContinuationConfig:
  """Window lengths (tokens) and how many windows; the corpus is the run's CORPUS."""

  prefix_length: int = 64
  continuation_length: int = 64
  # 256 x 64 = 16,384 scored tokens: a standard error near 1% of the loss for a trained model,
  # seconds of scoring; the embedded held-out plays hold 1,500 windows of 128 tokens (108 scenes).
  windows: int = 256

  def __post_init__(self):
    for field in dataclasses.fields(self):
      value = getattr(self, field.name)
      if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ContinuationConfigError(
            f"{_CONFIG}.{field.name} = {value!r}: expected an integer >= 1.")


@dataclasses.dataclass(frozen=True)
class Windows:
  """The (prefix, continuation) token ids of one corpus's held-out windows."""

  corpus: str
  config: ContinuationConfig
  pairs: tuple[tuple[tuple[int, ...], tuple[int, ...]], ...]
  documents_read: int

  def ids_sha256(self) -> str:
    """A fingerprint of every id in order: equal fingerprints, equal windows."""
    flat = np.asarray([t for p, c in self.pairs for t in p + c], np.int64)
    return hashlib.sha256(flat.tobytes()).hexdigest()


def corpus_documents(corpus: str, split: str = SPLIT) -> Iterable[str]:
  """The documents of a registered corpus's split, in stored order (the corpus's check first)."""
  entry = objectives.get_corpus(corpus)
  entry.check(split)
  dataset = entry.source().get_dataset(split=split, shuffle=False)
  for example in dataset.as_numpy_iterator():
    text = example["text"]
    yield text.decode("utf-8") if isinstance(text, bytes) else str(text)


def heldout_windows(corpus: str, vocabulary: Any, config: ContinuationConfig,
                    documents: Optional[Iterable[str]] = None) -> Windows:
  """The windows (see the module docstring); `documents` replaces the corpus's held-out split."""
  width = config.prefix_length + config.continuation_length
  docs = corpus_documents(corpus) if documents is None else documents
  kept, read, tokens = [], 0, 0
  for text in docs:
    read += 1
    ids = [int(t) for t in vocabulary.encode(text)] if text else []
    tokens += len(ids)
    if len(ids) >= width:
      kept.append(ids)
      if len(kept) == config.windows:  # round one alone gives enough windows: stop reading
        break
  windows: list[list[int]] = []
  for k in range(max((len(ids) // width for ids in kept), default=0)):
    windows.extend(ids[k * width:(k + 1) * width] for ids in kept if (k + 1) * width <= len(ids))
  if len(windows) < config.windows:
    raise ContinuationConfigError(
        f"{_CONFIG}.windows = {config.windows}: the {corpus!r} corpus's {SPLIT!r} split holds "
        f"only {len(windows)} windows of prefix_length + continuation_length = {width} tokens "
        f"({read} documents, {tokens} tokens{_where(corpus)}). Lower {_CONFIG}.windows or the "
        "lengths, or give the corpus more held-out text.")
  p = config.prefix_length
  pairs = tuple((tuple(w[:p]), tuple(w[p:])) for w in windows[:config.windows])
  return Windows(corpus=corpus, config=config, pairs=pairs, documents_read=read)


def _where(corpus: str) -> str:
  if corpus == "text":
    return "; objectives.corpora.text_files.validation_files"
  return ""


def check_fits(config: ContinuationConfig, scoring: Any) -> None:
  """The windows fit the scoring rows of every architecture (checked before any restore)."""
  width = config.prefix_length + config.continuation_length
  if width > scoring.max_length or config.continuation_length > scoring.max_target_length:
    raise ContinuationConfigError(
        f"{_CONFIG}: prefix_length {config.prefix_length} + continuation_length "
        f"{config.continuation_length} do not fit eval.rank_classification.ScoringConfig "
        f"(max_length = {scoring.max_length} for prefix + continuation, max_target_length = "
        f"{scoring.max_target_length} for the continuation).")


def continuation_loss(scorer: Any, windows: Windows) -> dict:
  """Nats per continuation token over the windows, with n, a standard error and per-window values.

  Every window has the same number of scored tokens, so the loss is the mean of the per-window
  losses, and their spread gives the standard error (a normal 95% interval beside it).
  """
  sums, counts = scorer.score_token_pairs(list(windows.pairs))
  per_window = -np.asarray(sums, np.float64) / np.asarray(counts, np.float64)
  n, tokens = len(per_window), int(np.sum(counts))
  nats = float(-np.sum(sums) / tokens)
  stderr = float(np.std(per_window, ddof=1) / math.sqrt(n)) if n > 1 else None
  cfg = windows.config
  return {
      "nats_per_token": nats,
      "stderr": stderr,
      "ci95": [nats - 1.96 * stderr, nats + 1.96 * stderr] if stderr is not None else None,
      "perplexity": math.exp(nats),
      "tokens": tokens,
      "windows": n,
      "per_window": [float(v) for v in per_window],
      "corpus": windows.corpus,
      "split": SPLIT,
      "prefix_length": cfg.prefix_length,
      "continuation_length": cfg.continuation_length,
      "documents_read": windows.documents_read,
      "ids_sha256": windows.ids_sha256(),
  }


def run_windows(corpus: Optional[str], vocabulary: Any, config: Optional[ContinuationConfig],
                scoring: Any) -> Windows:
  """The evaluator's windows (CONTINUATION_LOSS = True), every setting checked before a restore."""
  if corpus is None:
    raise ContinuationConfigError(
        "CONTINUATION_LOSS = True needs CORPUS (bound by gin_configs/data/<corpus>.gin): the "
        f"held-out text is that corpus's {SPLIT!r} split.")
  config = ContinuationConfig() if config is None else config
  check_fits(config, scoring)
  return heldout_windows(corpus, vocabulary, config)
