"""Pretraining corpora, vocabularies and objectives as seqio tasks, registered on import.

Tasks: {corpus}_{objective} for corpus in (embedded, c4, text) and objective in (full_lm, prefix_lm,
span_corruption, ul2). The trainer calls `objectives.validate(...)` at config time and
`objectives.get_dataset(...)` for batches.
"""

from objectives.pipeline import BatchIterator, get_dataset
from objectives.tasks import OBJECTIVES, corpus_vocabulary, parse_task_name, register_all
from objectives.corpora import CORPORA
from objectives.validation import ARCHITECTURES, ConfigError, validate

TASK_NAMES = tuple(register_all())

__all__ = [
    "ARCHITECTURES",
    "BatchIterator",
    "CORPORA",
    "ConfigError",
    "OBJECTIVES",
    "TASK_NAMES",
    "corpus_vocabulary",
    "get_dataset",
    "parse_task_name",
    "register_all",
    "validate",
]
