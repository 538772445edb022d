"""The objective and corpus registries: every table of objectives or corpora derives from these.

An Objective is a seqio post-cache preprocessor plus what the rest of the harness needs to know
about it: the features it emits, the raw stream tokens one example consumes (the length check),
whether each feature ends in EOS, its tiny test lengths, and on which architectures it is defined.
A Corpus is a seqio source factory, its default vocabulary and a readability check. Each built-in
registers itself once, in its own module (full_lm.py, ..., corpora.py). seqio tasks
'{corpus}_{objective}' follow from both registries (objectives/tasks.py subscribes to them), so an
objective a user registers after `import objectives` gets its tasks too.

Architectures are duck-typed (`.name`, `.encoder_decoder`): objectives never import arch/.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Generic, Mapping, Optional, TypeVar

from experiments.runtime import errors


class ConfigError(errors.ConfigError):
  """An objective/corpus/architecture/length/vocabulary combination that cannot train."""


class UnknownObjectiveError(ConfigError):
  """An objective name that is not registered; the message lists the registered ones."""


class UnknownCorpusError(ConfigError):
  """A corpus name that is not registered; the message lists the registered ones."""


@dataclasses.dataclass(frozen=True)
class Objective:
  """A pretraining objective: tokenized documents {'targets'} -> examples of `features`."""

  name: str                      # 'span_corruption'
  short: str                     # 'MLM' (grid cell names, tables)
  # seqio post-cache preprocessor: (ds, sequence_length, output_features) -> ds.
  preprocessor: Callable[..., Any]
  features: tuple[str, ...]      # ('targets',) or ('inputs', 'targets')
  # raw_length(task_feature_lengths, vocabulary) -> raw stream tokens per example; ValueError if the
  # lengths (or the vocabulary's extra ids) cannot hold the objective's output.
  raw_length: Callable[[Mapping[str, int], Any], int]
  eos: Mapping[str, bool]        # per feature: the objective ends it with EOS
  tiny_lengths: Mapping[str, int]  # TASK_FEATURE_LENGTHS of tests and CPU smoke runs
  architectures: Optional[tuple[str, ...]] = None  # None: every architecture whose shape fits

  def __post_init__(self):
    if not self.name.isidentifier():
      raise ValueError(f"Objective name {self.name!r} must be an identifier (it is part of task "
                       "names and gin files).")
    for what, mapping in (("eos", self.eos), ("tiny_lengths", self.tiny_lengths)):
      if set(mapping) != set(self.features):
        raise ValueError(f"Objective {self.name!r}: {what} keys {sorted(mapping)} must be its "
                         f"features {sorted(self.features)}.")

  def defined_on(self, architecture) -> bool:
    """Whether this objective can train `architecture` (duck-typed: .name, .encoder_decoder)."""
    if self.architectures is not None and architecture.name not in self.architectures:
      return False
    # An encoder-decoder encodes 'inputs': an objective without them leaves the encoder nothing.
    return not architecture.encoder_decoder or "inputs" in self.features

  def why_undefined(self, architecture) -> str:
    """The reason `defined_on(architecture)` is False, for error messages."""
    if self.architectures is not None and architecture.name not in self.architectures:
      return f"it is registered for {', '.join(self.architectures)} only"
    return (f"it has no 'inputs' feature for the encoder (features: {', '.join(self.features)})")


@dataclasses.dataclass(frozen=True)
class Corpus:
  """A raw-text corpus: a seqio source of {'text'} documents, its default vocabulary, its check."""

  name: str                                   # 'embedded'
  source: Callable[[], Any]                   # () -> seqio.DataSource; splits 'train', 'validation'
  vocabulary: Callable[[], Any]               # () -> seqio.Vocabulary when gin binds none
  check: Callable[[str], Any]                 # check(split) raises if the corpus cannot be read

  def __post_init__(self):
    if not self.name.isidentifier():
      raise ValueError(f"Corpus name {self.name!r} must be an identifier (it is part of task "
                       "names and gin files).")


Entry = TypeVar("Entry", Objective, Corpus)


class _Registry(Generic[Entry]):
  """Name -> entry, in registration order; listeners hear of every registration."""

  def __init__(self, kind: str, error: type[ConfigError], gin_macro: str):
    self._kind, self._error, self._macro = kind, error, gin_macro
    self._entries: dict[str, Entry] = {}
    self._listeners: list[Callable[[Entry], None]] = []

  def register(self, entry: Entry, *, replace: bool = False) -> Entry:
    if entry.name in self._entries and not replace:
      raise ValueError(f"The {self._kind} {entry.name!r} is already registered; pass replace=True "
                       "to redefine it.")
    self._entries[entry.name] = entry
    for listener in self._listeners:
      listener(entry)
    return entry

  def get(self, name: str) -> Entry:
    try:
      return self._entries[name]
    except KeyError:
      raise self._error(f"Unknown {self._kind} {name!r} ({self._macro}); registered: "
                        f"{', '.join(self._entries)}.") from None

  def names(self) -> tuple[str, ...]:
    return tuple(self._entries)

  def subscribe(self, listener: Callable[[Entry], None]) -> None:
    self._listeners.append(listener)


_OBJECTIVES: _Registry[Objective] = _Registry("objective", UnknownObjectiveError, "OBJECTIVE")
_CORPORA: _Registry[Corpus] = _Registry("corpus", UnknownCorpusError, "CORPUS")


def register(objective: Objective, *, replace: bool = False) -> Objective:
  """Registers an objective (and, through objectives/tasks.py, its task on every corpus)."""
  return _OBJECTIVES.register(objective, replace=replace)


def get(name: str) -> Objective:
  """The objective `name`; UnknownObjectiveError lists the registered ones."""
  return _OBJECTIVES.get(name)


def names() -> tuple[str, ...]:
  """Registered objectives, in registration order."""
  return _OBJECTIVES.names()


def register_corpus(corpus: Corpus, *, replace: bool = False) -> Corpus:
  """Registers a corpus (and, through objectives/tasks.py, its task for every objective)."""
  return _CORPORA.register(corpus, replace=replace)


def get_corpus(name: str) -> Corpus:
  """The corpus `name`; UnknownCorpusError lists the registered ones."""
  return _CORPORA.get(name)


def corpus_names() -> tuple[str, ...]:
  """Registered corpora, in registration order."""
  return _CORPORA.names()


def subscribe(on_objective: Callable[[Objective], None],
              on_corpus: Callable[[Corpus], None]) -> None:
  """Calls the listeners on every registration, past ones included (objectives/tasks.py)."""
  _OBJECTIVES.subscribe(on_objective)
  _CORPORA.subscribe(on_corpus)
  # on_corpus of each corpus so far sees every objective so far: every existing pair, once.
  for name in corpus_names():
    on_corpus(get_corpus(name))
