"""Pretraining corpora, vocabularies and objectives as seqio tasks, registered on import.

Registries: every objective and every corpus is named once, in objectives/registry.py (registered by
its own module: full_lm.py, prefix_lm.py, span_corruption.py, ul2.py; corpora.py). The seqio tasks
'{corpus}_{objective}' follow from both, also for an objective or corpus that a user registers after
`import objectives`. The trainer calls `objectives.validate(...)` at config time and
`objectives.get_dataset(...)` for batches; gin reads `@objectives.task_name()`,
`@objectives.tiny_feature_lengths()` and `objectives.corpus_vocabulary.vocabulary`.

Imports run one way. objectives/ sits below eval/ and experiments/ and beside arch/: it imports
neither arch/ (an architecture reaches it duck-typed, as `.name` and `.encoder_decoder`), nor eval/
(which imports it: the prompt-template engine of eval/templates.py lives in objectives/prompts.py,
so the MTF mixtures render with it), nor experiments/ beyond experiments.runtime, the shared layer of
flags, gin and the ConfigError every bad setting raises.
"""

from objectives.registry import (Corpus, ConfigError, Objective, UnknownCorpusError,
                                 UnknownObjectiveError, corpus_names, get, get_corpus, names,
                                 register, register_corpus)
# tasks first: it subscribes to the registries, so the built-ins below get their seqio tasks.
from objectives.tasks import (CorpusVocabulary, UnknownTaskError, corpus_vocabulary,
                              parse_task_name, task_name, task_names, tiny_feature_lengths)
from objectives import corpora, full_lm, prefix_lm, span_corruption, ul2  # noqa: F401 (register)
from objectives.pipeline import BatchIterator, get_dataset
from objectives.validation import validate, validate_offline

__all__ = [
    "BatchIterator",
    "ConfigError",
    "Corpus",
    "CorpusVocabulary",
    "Objective",
    "UnknownCorpusError",
    "UnknownObjectiveError",
    "UnknownTaskError",
    "corpus_names",
    "corpus_vocabulary",
    "get",
    "get_corpus",
    "get_dataset",
    "names",
    "parse_task_name",
    "register",
    "register_corpus",
    "task_name",
    "task_names",
    "tiny_feature_lengths",
    "validate",
    "validate_offline",
]
