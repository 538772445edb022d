"""Config-time checks of (task, feature lengths, vocabulary, architecture), before a model is built.

Everything objective-specific comes from the registries (objectives/registry.py): the features, the
raw-length rule and on which architectures the objective is defined. Every error names the gin
macro or binding at fault and the values that would work.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

import seqio

from objectives import registry
from objectives import tasks
from objectives import vocab as vocab_lib
from objectives.registry import ConfigError

# T5 rounds its 32,100 ids up to 32,128 embedding rows; VOCAB_SIZE may do the same, no more.
_VOCAB_SIZE_MULTIPLE = vocab_lib.EMBEDDING_ROW_MULTIPLE


def validate(
    task_name: str,
    task_feature_lengths: Mapping[str, int],
    *,
    architecture: Any = None,
    vocabulary: Optional[seqio.Vocabulary] = None,
    vocab_size: Optional[int] = None,
    check_corpus: bool = True,
) -> dict:
  """Raises ConfigError for a combination that cannot train; returns facts about a valid one.

  Args:
    task_name: MIXTURE_OR_TASK_NAME, '{corpus}_{objective}'.
    task_feature_lengths: TASK_FEATURE_LENGTHS.
    architecture: the model's architecture (duck-typed: .name, .encoder_decoder), or None to skip
      the objective/architecture check.
    vocabulary: VOCABULARY (the model's); defaults to the vocabulary the task is tokenized with.
    vocab_size: VOCAB_SIZE (ids the model embeds): the vocabulary's ids, rounded up to a multiple of
      128 at most.
    check_corpus: also open the corpus (reads text files; checks the TFDS c4 preparation).

  Returns:
    {'corpus', 'objective', 'raw_length', 'skipped'}: raw tokens of the stream consumed per example;
    'skipped' names the vocabulary checks an offline check could not make (else None).
  """
  corpus_name, objective_name = tasks.parse_task_name(task_name)
  objective = registry.get(objective_name)
  on = ""
  if architecture is not None:
    on = f" on {architecture.name}"
    if not objective.defined_on(architecture):
      defined = [n for n in registry.names() if registry.get(n).defined_on(architecture)]
      raise ConfigError(
          f"(objective {objective.name}, architecture {architecture.name}) is undefined: "
          f"{objective.why_undefined(architecture)}. Objectives defined on {architecture.name}: "
          f"{', '.join(defined) or 'none'}. Change OBJECTIVE (gin_configs/objectives/) or the "
          f"arch gin file (task {task_name!r})."
      )
  lengths = dict(task_feature_lengths or {})
  bad = [k for k, v in lengths.items() if isinstance(v, bool) or not isinstance(v, int) or v < 1]
  if bad:
    raise ConfigError(f"TASK_FEATURE_LENGTHS={lengths}: {bad} must be positive integers.")
  expected = set(objective.features)
  if set(lengths) != expected:
    raise ConfigError(
        f"TASK_FEATURE_LENGTHS={lengths} does not fit {objective.name}: expected exactly the keys "
        f"{sorted(expected)} (see gin_configs/objectives/{objective.name}.gin)."
    )

  try:
    task_vocabulary = tasks.corpus_vocabulary(corpus_name)
  except vocab_lib.RemoteVocabularyError as e:  # only under validate_offline
    return {"corpus": corpus_name, "objective": objective.name, "raw_length": None,
            "skipped": f"vocabulary checks (sentinels, UL2 paradigm ids, VOCAB_SIZE): {e}"}
  except (ValueError, OSError) as e:
    raise ConfigError(
        f"{task_name}: the vocabulary of corpus {corpus_name!r} is unusable: {e}"
    ) from None
  if vocabulary is None:
    vocabulary = task_vocabulary
  elif vocabulary != task_vocabulary:
    raise ConfigError(
        f"VOCABULARY ({_describe(vocabulary)}) differs from the vocabulary the {corpus_name!r} "
        f"corpus is tokenized with ({_describe(task_vocabulary)}); bind "
        f"objectives.corpus_vocabulary.vocabulary = %VOCABULARY (gin_configs/data/{corpus_name}.gin)."
    )
  if vocab_size is not None:
    _check_vocab_size(vocab_size, vocabulary, corpus_name)

  try:
    raw = objective.raw_length(lengths, vocabulary)
  except ValueError as e:
    raise ConfigError(f"{task_name}{on}: {e}") from None

  if check_corpus:
    try:
      registry.get_corpus(corpus_name).check("train")
    except (ValueError, OSError) as e:
      raise ConfigError(f"{task_name}: {e}") from None
  return {"corpus": corpus_name, "objective": objective.name, "raw_length": raw, "skipped": None}


def validate_offline(
    task_name: str,
    task_feature_lengths: Mapping[str, int],
    *,
    architecture: Any = None,
    vocab_size: Optional[int] = None,
) -> dict:
  """`validate` without data or network, for dry runs: the corpus is not opened, and a vocabulary
  file behind a URI (gs://) is not read: its checks are skipped and named in 'skipped'.

  Reads the current gin config (the run's vocabulary); a local vocabulary file is checked in full.
  """
  with vocab_lib.offline():
    return validate(task_name, task_feature_lengths, architecture=architecture,
                    vocab_size=vocab_size, check_corpus=False)


def _check_vocab_size(vocab_size: int, vocabulary: seqio.Vocabulary, corpus: str) -> None:
  """VOCAB_SIZE must hold every id of VOCABULARY and add no rows beyond T5-style padding."""
  ids = vocabulary.vocab_size
  padded = -(-ids // _VOCAB_SIZE_MULTIPLE) * _VOCAB_SIZE_MULTIPLE
  if vocab_size < ids:
    raise ConfigError(
        f"VOCAB_SIZE={vocab_size} is smaller than the vocabulary's {ids} ids (VOCABULARY = "
        f"{_describe(vocabulary)}); bind VOCAB_SIZE = {ids} (gin_configs/data/{corpus}.gin)."
    )
  if vocab_size > padded:
    raise ConfigError(
        f"VOCAB_SIZE={vocab_size} is larger than the vocabulary's {ids} ids (VOCABULARY = "
        f"{_describe(vocabulary)}): the model would embed {vocab_size - ids} ids the task never "
        f"produces. Bind VOCAB_SIZE = {ids} (up to {padded}, rounded up to a multiple of "
        f"{_VOCAB_SIZE_MULTIPLE}) beside VOCABULARY (gin_configs/data/{corpus}.gin)."
    )


def _describe(vocabulary: seqio.Vocabulary) -> str:
  """'SentencePieceVocabulary: 4,000 pieces + 100 extra ids' (no file paths in messages)."""
  extra = vocabulary.extra_ids
  return (f"{type(vocabulary).__name__}: {vocabulary.vocab_size - extra:,} pieces + {extra} "
          "extra ids")
