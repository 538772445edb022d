"""lm-evaluation-harness's model interface over the harness's scorer, for CD, ND and ED alike.

`HarnessLM(scorer)` is an `lm_eval.api.model.LM`: lm-eval builds the requests from its own task
definitions (prompts, few-shot formatting, metrics) and this class answers them with
eval/rank_classification.py's ModelScorer, so the requests are batched and packed as our suites'
pairs are, an encoder-decoder encodes each context once and a non-causal decoder reads the context
bidirectionally (prefix + 1 position, as prefix-LM training).

- loglikelihood: (summed log p(continuation | context), greedy flag); no EOS on either side, as
  lm-eval. The greedy flag costs a second forward pass, so it is computed only for the tasks whose
  metrics read it (`greedy_tasks`, default: every task); the others get False.
- loglikelihood_rolling: lm-eval's disjoint rolling windows (lm_eval.utils) of at most
  max_length - 1 tokens (decoders: the first token is read from the start token) or
  max_target_length tokens (ED: the window is the decoder side, the preceding context the encoder's,
  one EOS before a document's first window); the sum over windows per document.
- generate_until: eval.generate.generate_texts (model.predict_batch), imported when first needed.

Only the `lm_eval` extra needs this module (`pip install -e '.[lm_eval]'`): import it lazily.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any, Collection, Sequence

import lm_eval.api.model
import lm_eval.utils
import numpy as np

from eval import rank_classification as rc
from experiments.runtime.errors import ConfigError

# lm-eval's generate_until default when a task sets no max_gen_toks.
DEFAULT_MAX_GEN_TOKS = 256


class GenerationUnavailable(ConfigError):
  """A generate_until task without the harness's generation function (eval.generate)."""


def generation_function():
  """eval.generate.generate_texts, or GenerationUnavailable naming what is missing."""
  try:  # import_module honours a module set aside in sys.modules (from-import would not)
    generate = importlib.import_module("eval.generate")
  except ImportError as e:
    raise GenerationUnavailable(
        "generate_until tasks need eval.generate (generate_texts over model.predict_batch), "
        f"which this checkout lacks ({e}); choose loglikelihood / multiple_choice tasks.") from e
  fn = getattr(generate, "generate_texts", None)
  if fn is None:
    raise GenerationUnavailable("generate_until tasks need eval.generate.generate_texts; "
                                "eval/generate.py has no such function.")
  return fn


class HarnessLM(lm_eval.api.model.LM):
  """lm-eval's LM answered by a ModelScorer (any architecture of arch/registry.py)."""

  def __init__(self, scorer: rc.ModelScorer, *, greedy_tasks: Collection[str] | None = None,
               generate_kwargs: dict | None = None):
    super().__init__()
    self.scorer = scorer
    self.greedy_tasks = None if greedy_tasks is None else frozenset(greedy_tasks)
    self.generate_kwargs = dict(generate_kwargs or {})
    self.requests_seen = {"loglikelihood": 0, "loglikelihood_rolling": 0, "generate_until": 0}

  @property
  def vocabulary(self) -> Any:
    return self.scorer.vocabulary

  def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
    pairs = [(str(r.args[0]), str(r.args[1]), False, False) for r in requests]
    self.requests_seen["loglikelihood"] += len(pairs)
    if not pairs:
      return []
    scores = self.scorer.score(pairs)
    greedy = np.zeros(len(pairs), bool)
    wanted = [i for i, r in enumerate(requests)
              if self.greedy_tasks is None or r.task_name in self.greedy_tasks]
    if wanted:
      greedy[wanted] = self.scorer.greedy_match([pairs[i] for i in wanted])
    return [(float(s), bool(g)) for s, g in zip(scores, greedy)]

  def rolling_windows(self, text: str) -> list[tuple[list[int], list[int]]]:
    """(context ids, scored ids) windows that together score every token of `text` once."""
    ids = list(self.scorer.vocabulary.encode(text)) if text else []
    cfg, ed = self.scorer.config, self.scorer.is_encoder_decoder
    width = cfg.max_target_length if ed else cfg.max_length - 1
    start = [self.scorer.vocabulary.eos_id] if ed else []
    out = []
    for ctx, cont in map(lm_eval.utils.make_disjoint_window,
                         lm_eval.utils.get_rolling_token_windows(ids, -1, width, 1)):
      out.append((start if ctx == [-1] else ctx, cont))
    return out

  def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
    self.requests_seen["loglikelihood_rolling"] += len(requests)
    windows = [self.rolling_windows(str(r.args[0])) for r in requests]
    flat = [w for doc in windows for w in doc]
    sums = self.scorer.score_token_pairs(flat)[0] if flat else np.zeros(0)
    out, i = [], 0
    for doc in windows:
      out.append(float(np.sum(sums[i:i + len(doc)])))
      i += len(doc)
    return out

  def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
    self.requests_seen["generate_until"] += len(requests)
    generate_texts = generation_function()
    accepted = inspect.signature(generate_texts).parameters
    out: list[str | None] = [None] * len(requests)
    groups: dict[tuple, list[int]] = {}
    for i, r in enumerate(requests):
      kwargs = dict(r.args[1]) if len(r.args) > 1 and r.args[1] else {}
      until = kwargs.pop("until", None) or []
      until = [until] if isinstance(until, str) else list(until)
      max_new = int(kwargs.pop("max_gen_toks", DEFAULT_MAX_GEN_TOKS))
      sample = bool(kwargs.pop("do_sample", False)) and float(kwargs.get("temperature", 1.0)) > 0
      extra = {k: v for k, v in kwargs.items() if k in ("temperature", "top_k", "seed")} if (
          sample) else {}
      key = (tuple(until), max_new, tuple(sorted(extra.items())))
      groups.setdefault(key, []).append(i)
    for (until, max_new, extra), idx in groups.items():
      kwargs = {k: v for k, v in dict(extra).items() if k in accepted}
      kwargs.update({k: v for k, v in self.generate_kwargs.items() if k in accepted})
      texts = generate_texts(self.scorer.model, self.scorer.params,
                             [str(requests[i].args[0]) for i in idx], until=list(until),
                             max_new_tokens=max_new, vocabulary=self.scorer.vocabulary, **kwargs)
      for i, text in zip(idx, texts):
        out[i] = _cut_at(text, until)
    return [t or "" for t in out]


def _cut_at(text: str, until: Sequence[str]) -> str:
  """The text before the first stop string (lm-eval's own models cut there too)."""
  for stop in until:
    if stop and stop in text:
      text = text[:text.index(stop)]
  return text

