"""Config-time checks of (task, architecture, feature lengths, vocabulary), before any model is built.

The trainer calls `objectives.validate(...)` right after parsing gin; every error names the gin
macro or binding at fault and the values that would work.
"""

from __future__ import annotations

from typing import Mapping, Optional

import seqio

from objectives import corpora
from objectives import prefix_lm
from objectives import span_corruption
from objectives import tasks
from objectives import ul2

ARCHITECTURES = ("causal_decoder", "non_causal_decoder", "encoder_decoder")


class ConfigError(ValueError):
  """An objective/architecture/length/vocabulary combination that cannot train."""


def validate(
    task_name: str,
    architecture: str,
    task_feature_lengths: Mapping[str, int],
    vocabulary: Optional[seqio.Vocabulary] = None,
    vocab_size: Optional[int] = None,
    check_corpus: bool = True,
) -> dict:
  """Raises ConfigError for a combination that cannot train; returns facts about a valid one.

  Args:
    task_name: MIXTURE_OR_TASK_NAME, '{corpus}_{objective}'.
    architecture: 'causal_decoder', 'non_causal_decoder' or 'encoder_decoder'.
    task_feature_lengths: TASK_FEATURE_LENGTHS.
    vocabulary: VOCABULARY (the model's); defaults to the task corpus's vocabulary.
    vocab_size: VOCAB_SIZE (ids the model embeds); must cover the vocabulary.
    check_corpus: also open the corpus (reads text files; checks the TFDS c4 preparation).

  Returns:
    {'corpus', 'objective', 'raw_length'}: raw tokens of the stream consumed per example.
  """
  try:
    corpus, objective = tasks.parse_task_name(task_name)
  except ValueError as e:
    raise ConfigError(str(e)) from None
  if architecture not in ARCHITECTURES:
    raise ConfigError(
        f"Unknown architecture {architecture!r}; valid architectures: {', '.join(ARCHITECTURES)}."
    )
  if objective == "full_lm" and architecture == "encoder_decoder":
    raise ConfigError(
        f"(objective full_lm, architecture encoder_decoder) is undefined: full language modeling "
        f"has no inputs for the encoder. Use prefix_lm, span_corruption or ul2 with the "
        f"encoder-decoder, or a decoder architecture with full_lm (task {task_name!r})."
    )
  lengths = dict(task_feature_lengths or {})
  bad = [k for k, v in lengths.items() if not isinstance(v, int) or v < 1]
  if bad:
    raise ConfigError(f"TASK_FEATURE_LENGTHS={lengths}: {bad} must be positive integers.")
  expected = {"targets"} if objective == "full_lm" else {"inputs", "targets"}
  if set(lengths) != expected:
    raise ConfigError(
        f"TASK_FEATURE_LENGTHS={lengths} does not fit {objective}: expected exactly the keys "
        f"{sorted(expected)} (see gin_configs/objectives/{objective}.gin)."
    )

  try:
    task_vocabulary = tasks.corpus_vocabulary(corpus)
  except (ValueError, OSError) as e:
    raise ConfigError(f"{task_name}: the vocabulary of corpus {corpus!r} is unusable: {e}") from None
  if vocabulary is None:
    vocabulary = task_vocabulary
  elif vocabulary != task_vocabulary:
    raise ConfigError(
        f"VOCABULARY ({vocabulary!r}) differs from the vocabulary the {corpus!r} corpus is "
        f"tokenized with ({task_vocabulary!r}); bind "
        f"objectives.tasks.corpus_vocabularies.{corpus} = %VOCABULARY (gin_configs/data/{corpus}.gin)."
    )
  if vocab_size is not None and vocab_size < vocabulary.vocab_size:
    raise ConfigError(
        f"VOCAB_SIZE={vocab_size} is smaller than the vocabulary's {vocabulary.vocab_size} ids "
        f"(pieces + extra ids); bind VOCAB_SIZE = {vocabulary.vocab_size} (gin_configs/data/)."
    )

  try:
    if objective == "full_lm":
      if lengths["targets"] < 2:
        raise ValueError(f"TASK_FEATURE_LENGTHS['targets']={lengths['targets']}: need >= 2.")
      raw = lengths["targets"]
    elif objective == "prefix_lm":
      raw = prefix_lm.chunk_length(lengths)
    elif objective == "span_corruption":
      raw = span_corruption.lengths_for(lengths, vocabulary.extra_ids).raw
    else:
      raw = ul2.validate_lengths(lengths, vocabulary.extra_ids)
      ul2.paradigm_ids(vocabulary, ul2.settings())
  except ValueError as e:
    raise ConfigError(f"{task_name} on {architecture}: {e}") from None

  if check_corpus:
    try:
      corpora.check_corpus(corpus)
    except (ValueError, OSError) as e:
      raise ConfigError(f"{task_name}: {e}") from None
  return {"corpus": corpus, "objective": objective, "raw_length": raw}
