"""seqio Task registration: one task per (corpus, objective), named {corpus}_{objective}.

Each task: source (objectives/corpora.py) -> 'text' becomes 'targets' -> tokenize (no EOS) ->
[seqio cache boundary] -> objective preprocessor. Objectives are post-cache because they are random
(every epoch draws new splits / masks). The sources shuffle documents and the objectives shuffle
their examples, so the tasks disable seqio's final example shuffle (it would split the prefix-LM
row pairs; see objectives/prefix_lm.py).

The vocabulary of a corpus is chosen in gin (gin_configs/data/*.gin bind the corpus's entry of
objectives.tasks.corpus_vocabularies to %VOCABULARY) and resolved when a dataset is built, so the
tasks can be registered on import, before gin is parsed.
"""

from __future__ import annotations

from typing import Optional

import gin
import seqio

from objectives import corpora
from objectives import common
from objectives import full_lm
from objectives import prefix_lm
from objectives import span_corruption
from objectives import ul2
from objectives import vocab as vocab_lib

OBJECTIVES = ("full_lm", "prefix_lm", "span_corruption", "ul2")
OBJECTIVE_FNS = {
    "full_lm": full_lm.full_lm,
    "prefix_lm": prefix_lm.prefix_lm,
    "span_corruption": span_corruption.span_corruption,
    "ul2": ul2.ul2,
}
# Whether the objective appends EOS to its features (informational for seqio; the objective adds it).
_ADDS_EOS = {"full_lm": False, "prefix_lm": False, "span_corruption": True, "ul2": True}


@gin.configurable(module="objectives.tasks")
def corpus_vocabularies(
    embedded: Optional[seqio.Vocabulary] = None,
    c4: Optional[seqio.Vocabulary] = None,
    text: Optional[seqio.Vocabulary] = None,
) -> dict:
  """The vocabulary bound to each corpus in gin (None: the default of _DEFAULT_VOCABULARIES)."""
  return {"embedded": embedded, "c4": c4, "text": text}


# Factories, called only for the corpus in use (the T5 default needs its model file to exist).
_DEFAULT_VOCABULARIES = {
    "embedded": vocab_lib.embedded_vocabulary,
    "c4": vocab_lib.sentencepiece_vocabulary,
    "text": vocab_lib.embedded_vocabulary,
}


def corpus_vocabulary(corpus: str) -> seqio.Vocabulary:
  """The vocabulary of a corpus under the current gin config."""
  if corpus not in corpora.CORPORA:
    raise ValueError(f"Unknown corpus {corpus!r}; valid corpora: {', '.join(corpora.CORPORA)}.")
  bound = corpus_vocabularies()[corpus]
  return bound if bound is not None else _DEFAULT_VOCABULARIES[corpus]()


class CorpusVocabulary(seqio.Vocabulary):
  """The vocabulary gin assigns to a corpus, looked up on each use (tasks register before gin)."""

  def __init__(self, corpus: str):
    self._corpus = corpus
    super().__init__(extra_ids=0)

  @property
  def resolved(self) -> seqio.Vocabulary:
    return corpus_vocabulary(self._corpus)

  @property
  def eos_id(self):
    return self.resolved.eos_id

  @property
  def pad_id(self):
    return self.resolved.pad_id

  @property
  def unk_id(self):
    return self.resolved.unk_id

  @property
  def extra_ids(self):
    return self.resolved.extra_ids

  @property
  def vocab_size(self):
    return self.resolved.vocab_size

  @property
  def _base_vocab_size(self):
    return self.resolved.vocab_size - self.resolved.extra_ids

  def encode(self, s):
    return self.resolved.encode(s)

  def decode(self, ids):
    return self.resolved.decode(ids)

  def encode_tf(self, s):
    return self.resolved.encode_tf(s)

  def decode_tf(self, ids):
    return self.resolved.decode_tf(ids)

  def _encode(self, s):
    return self.resolved.encode(s)

  def _decode(self, ids):
    return self.resolved.decode(ids)

  def _encode_tf(self, s):
    return self.resolved.encode_tf(s)

  def _decode_tf(self, ids):
    return self.resolved.decode_tf(ids)

  def __eq__(self, other):
    other = other.resolved if isinstance(other, CorpusVocabulary) else other
    return self.resolved == other

  def __hash__(self):
    return hash(("CorpusVocabulary", self._corpus))

  def __repr__(self):
    return f"CorpusVocabulary({self._corpus!r})"


def task_name(corpus: str, objective: str) -> str:
  return f"{corpus}_{objective}"


def parse_task_name(name: str) -> tuple[str, str]:
  """(corpus, objective) of a task name; unknown names raise listing the valid ones."""
  for corpus in corpora.CORPORA:
    for objective in OBJECTIVES:
      if name == task_name(corpus, objective):
        return corpus, objective
  valid = [task_name(c, o) for c in corpora.CORPORA for o in OBJECTIVES]
  raise ValueError(
      f"Unknown task {name!r} (MIXTURE_OR_TASK_NAME); valid tasks: {', '.join(valid)}. "
      f"Corpora: {', '.join(corpora.CORPORA)}; objectives: {', '.join(OBJECTIVES)}."
  )


def output_features(corpus: str, objective: str) -> dict[str, seqio.Feature]:
  vocabulary = CorpusVocabulary(corpus)
  eos = _ADDS_EOS[objective]
  keys = ("targets",) if objective == "full_lm" else ("inputs", "targets")
  return {k: seqio.Feature(vocabulary=vocabulary, add_eos=eos) for k in keys}


def register_all() -> list[str]:
  """Registers the 12 tasks (idempotent); returns their names."""
  names = []
  for corpus in corpora.CORPORA:
    for objective in OBJECTIVES:
      name = task_name(corpus, objective)
      names.append(name)
      if name in seqio.TaskRegistry.names():
        continue
      seqio.TaskRegistry.add(
          name,
          source=corpora.make_source(corpus),
          output_features=output_features(corpus, objective),
          preprocessors=[
              common.rekey_text,
              common.tokenize,
              seqio.CacheDatasetPlaceholder(),
              OBJECTIVE_FNS[objective],
          ],
          shuffle_buffer_size=None,
      )
  return names
