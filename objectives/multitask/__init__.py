"""Multitask finetuning (MTF) mixtures, registered on import: `embedded_mtf` and `t0_train`.

See tasks.py for the task names and sampling, families.py for the embedded training families,
t0_like.py for the local T0-cluster sets and p3.py for what `t0_train` needs on disk. The
vocabulary is the run's (objectives.corpus_vocabulary: the data gin file's VOCABULARY, else the
embedded / c4 corpus's default), resolved from gin when a dataset is built, so registering here,
before gin is parsed, is safe.
"""

from objectives import tasks as _corpus_tasks
from objectives.multitask import tasks
from objectives.multitask.tasks import EMBEDDED_MIXTURE, T0_MIXTURE, mtf_options

tasks.register(_corpus_tasks.CorpusVocabulary("embedded"), _corpus_tasks.CorpusVocabulary("c4"))
