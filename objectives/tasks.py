"""seqio tasks '{corpus}_{objective}' for every registered pair, and the gin face of the registries.

Each task: corpus source -> 'text' becomes 'targets' -> tokenize (no EOS) -> [seqio cache boundary]
-> the objective's preprocessor. Objectives are post-cache because they are random (every epoch
draws new splits / masks). The sources shuffle documents and the objectives shuffle their examples,
so the tasks disable seqio's final example shuffle (it would split the prefix-LM row pairs; see
objectives/prefix_lm.py).

Tasks follow the registries: this module registers the task of every pair already registered and
subscribes to later registrations, so `objectives.register(...)` from a user's module (after
`import objectives`) adds that objective's task on every corpus.

Vocabulary: one per run. The data gin file binds `objectives.corpus_vocabulary.vocabulary =
%VOCABULARY`, and every task (and the MTF mixtures) is tokenized with it; unbound, each corpus
falls back to its registered default. It is resolved when a dataset is built, so the tasks can be
registered on import, before gin is parsed.
"""

from __future__ import annotations

from typing import Optional

import gin
import seqio

from objectives import common
from objectives import registry


class UnknownTaskError(registry.ConfigError):
  """A task name that is not '{corpus}_{objective}' of registered names; lists them."""


@gin.configurable(module="objectives")
def corpus_vocabulary(corpus: str,
                      vocabulary: Optional[seqio.Vocabulary] = None) -> seqio.Vocabulary:
  """The run's vocabulary (gin: `vocabulary = %VOCABULARY`), else the corpus's default one."""
  default = registry.get_corpus(corpus).vocabulary
  return vocabulary if vocabulary is not None else default()


@gin.configurable(module="objectives")
def task_name(corpus: str = gin.REQUIRED, objective: str = gin.REQUIRED) -> str:
  """'{corpus}_{objective}' of registered names: gin's MIXTURE_OR_TASK_NAME."""
  registry.get_corpus(corpus)
  registry.get(objective)
  return _join(corpus, objective)


@gin.configurable(module="objectives")
def tiny_feature_lengths(objective: str = gin.REQUIRED) -> dict[str, int]:
  """The objective's tiny TASK_FEATURE_LENGTHS: gin's TINY_FEATURE_LENGTHS (CPU runs, tests)."""
  return dict(registry.get(objective).tiny_lengths)


def _join(corpus: str, objective: str) -> str:
  return f"{corpus}_{objective}"


def task_names() -> tuple[str, ...]:
  """Every registered task, corpus-major, in registration order."""
  return tuple(_join(c, o) for c in registry.corpus_names() for o in registry.names())


def parse_task_name(name: str) -> tuple[str, str]:
  """(corpus, objective) of a task name; an unknown name raises listing the registered ones."""
  for corpus in registry.corpus_names():
    for objective in registry.names():
      if name == _join(corpus, objective):
        return corpus, objective
  raise UnknownTaskError(
      f"Unknown task {name!r} (MIXTURE_OR_TASK_NAME); registered tasks: {', '.join(task_names())}. "
      f"Corpora: {', '.join(registry.corpus_names())}; objectives: {', '.join(registry.names())}."
  )


class CorpusVocabulary(seqio.Vocabulary):
  """The vocabulary of a corpus under gin, looked up on each use (tasks register before gin)."""

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


def _register_task(corpus: registry.Corpus, objective: registry.Objective) -> None:
  """(Re)registers one task: a re-registered objective or corpus replaces its tasks."""
  name = _join(corpus.name, objective.name)
  vocabulary = CorpusVocabulary(corpus.name)
  seqio.TaskRegistry.remove(name)
  seqio.TaskRegistry.add(
      name,
      source=corpus.source(),
      output_features={
          k: seqio.Feature(vocabulary=vocabulary, add_eos=objective.eos[k])
          for k in objective.features
      },
      preprocessors=[
          common.rekey_text,
          common.tokenize,
          seqio.CacheDatasetPlaceholder(),
          objective.preprocessor,
      ],
      shuffle_buffer_size=None,
  )


def _on_objective(objective: registry.Objective) -> None:
  for corpus in registry.corpus_names():
    _register_task(registry.get_corpus(corpus), objective)


def _on_corpus(corpus: registry.Corpus) -> None:
  for objective in registry.names():
    _register_task(corpus, registry.get(objective))


registry.subscribe(_on_objective, _on_corpus)
