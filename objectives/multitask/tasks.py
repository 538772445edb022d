"""seqio tasks and mixtures for multitask finetuning (MTF), registered on `import objectives.multitask`.

- `embedded_mtf_<family>`: one task per embedded family (families.py), from the training plays;
  `t0like_<dataset>`: one per local AG News / TREC / SST-2 set (t0_like.py), present when
  mtf_options.local_data_dir holds them. Each task renders every example with every template of
  its source (templates/*.yaml), so its prompts are equally frequent.
- `embedded_mtf`: the mixture of all of these by T0's rule (p3.template_rate): each template of a
  dataset of n examples has rate n, or 500,000 // templates when n > 500,000; one task here holds
  all k templates of its source, so its rate is k times that. A local set that is absent gets rate 0
  and is logged.
- `t0_train`: T0's training mixture from a local folder of P3 examples (p3.py documents the layout).

Features: 'inputs' = the rendered prompt with no EOS, 'targets' = the gold choice ending in EOS, in
the corpus's vocabulary: T0's promptsource tasks (t-zero's seqio tasks: inputs add_eos=False, targets
add_eos=True), the same rule as the T0-Eval scoring. EOS is appended after trimming, so a truncated
target still ends in EOS. Splits: 'train', and 'validation' = every 20th example (never trained on).
"""

from __future__ import annotations

import functools
import logging
import pathlib
import random
import zlib

import gin
import seqio
import tensorflow as tf

from objectives import prompts
from objectives.multitask import families, p3, t0_like

TEMPLATES_DIR = pathlib.Path(__file__).resolve().parent / "templates"
EMBEDDED_MIXTURE = "embedded_mtf"
T0_MIXTURE = "t0_train"
_VALIDATION_EVERY = 20
_SPLITS = ("train", "validation")


@gin.configurable(module="objectives.multitask")
def mtf_options(local_data_dir=None, p3_dir=None, max_examples_per_dataset=None, seed=0):
  """Data locations and sizes of the MTF tasks, read when a dataset is built (bind by gin).

  max_examples_per_dataset keeps the first N examples (in a seeded order) of every embedded family
  and local set: for smoke runs; None keeps all (T0's 500,000 cap still applies to the rates).
  """
  return dict(local_data_dir=local_data_dir, p3_dir=p3_dir,
              max_examples_per_dataset=max_examples_per_dataset, seed=seed)


@functools.lru_cache(maxsize=None)
def mtf_templates() -> dict[str, list[prompts.Template]]:
  """The training prompts of every MTF family and local set, by family name."""
  return prompts.load_templates(TEMPLATES_DIR)


@functools.lru_cache(maxsize=None)
def _family_examples(family: str, seed: int, max_examples: int | None) -> tuple[dict, ...]:
  return tuple(families.build(family, seed=seed, max_examples=max_examples))


@functools.lru_cache(maxsize=None)
def _local_examples(dataset: str, seed: int, max_examples: int | None,
                    local_data_dir: str | None) -> tuple[dict, ...]:
  if t0_like.path_of(dataset, local_data_dir) is None:
    return ()
  exs = t0_like.load(dataset, local_data_dir)
  random.Random(zlib.crc32(dataset.encode()) ^ seed).shuffle(exs)
  return tuple(exs[:max_examples] if max_examples else exs)


def _options_key(source: str) -> tuple:
  opts = mtf_options()
  key = (opts["seed"], opts["max_examples_per_dataset"])
  if source in families.FAMILIES:
    return key
  return key + (None if opts["local_data_dir"] is None else str(opts["local_data_dir"]),)


def examples(source: str) -> tuple[dict, ...]:
  """The raw examples of a family or local dataset under the current gin options."""
  if source in families.FAMILIES:
    return _family_examples(source, *_options_key(source))
  return _local_examples(source, *_options_key(source))


@functools.lru_cache(maxsize=None)
def _render(source: str, key: tuple, split: str) -> tuple[list[str], list[str]]:
  del key  # Part of the cache key: the options the examples were built with.
  inputs, targets = [], []
  temps = mtf_templates()[source]
  for i, ex in enumerate(examples(source)):
    if (i % _VALIDATION_EVERY == 0) != (split == "validation"):
      continue
    for template in temps:
      prompt, choices, gold = template.render(ex)
      inputs.append(prompt)
      targets.append(choices[gold])
  return inputs, targets


def rendered(source: str, split: str) -> tuple[list[str], list[str]]:
  """(inputs, targets) strings of a source for a split: every example under every template."""
  return _render(source, _options_key(source), split)


def _dataset_fn(split, shuffle_files, seed=None, *, source):
  del shuffle_files, seed  # In-memory, fixed order; the task's shuffle buffer shuffles.
  inputs, targets = rendered(source, split)
  return tf.data.Dataset.from_tensor_slices(
      {"inputs": tf.constant(inputs, tf.string, shape=[len(inputs)]),
       "targets": tf.constant(targets, tf.string, shape=[len(targets)])})


def _rate(source: str):
  def rate(task: seqio.Task) -> float:
    del task
    n = len(examples(source))
    if n == 0:
      logging.warning("MTF: %s is absent (objectives.multitask.mtf_options.local_data_dir = %r); "
                      "it gets rate 0.", source, mtf_options()["local_data_dir"])
      return 0.0
    k = len(mtf_templates()[source])
    return float(k * p3.template_rate(n, k))
  return rate


def _p3_dataset_fn(split, shuffle_files, seed=None):
  del shuffle_files
  path = mtf_options()["p3_dir"]
  if path is None:
    raise ValueError("t0_train needs objectives.multitask.mtf_options.p3_dir bound to a local "
                     "folder of P3 examples (see objectives/multitask/p3.py for the layout).")
  return p3.dataset(path, split, seed=seed)


def _output_features(vocabulary: seqio.Vocabulary) -> dict[str, seqio.Feature]:
  return {"inputs": seqio.Feature(vocabulary, add_eos=False),
          "targets": seqio.Feature(vocabulary, add_eos=True)}


_PREPROCESSORS = (seqio.preprocessors.tokenize, seqio.preprocessors.append_eos_after_trim)


def task_name(source: str) -> str:
  """The seqio task of one family or local dataset."""
  return f"{EMBEDDED_MIXTURE}_{source}" if source in families.FAMILIES else f"t0like_{source}"


def sources() -> list[str]:
  return list(families.FAMILIES) + list(t0_like.DATASETS)


def register(embedded_vocabulary: seqio.Vocabulary, t0_vocabulary: seqio.Vocabulary | None):
  """Registers every MTF task and the two mixtures (idempotent)."""
  members = []
  for source in sources():
    name = task_name(source)
    seqio.TaskRegistry.remove(name)
    seqio.TaskRegistry.add(
        name,
        source=seqio.FunctionDataSource(functools.partial(_dataset_fn, source=source), _SPLITS),
        preprocessors=list(_PREPROCESSORS),
        output_features=_output_features(embedded_vocabulary))
    members.append((name, _rate(source)))
  seqio.MixtureRegistry.remove(EMBEDDED_MIXTURE)
  seqio.MixtureRegistry.add(EMBEDDED_MIXTURE, members)
  if t0_vocabulary is not None:
    seqio.TaskRegistry.remove(T0_MIXTURE)
    seqio.TaskRegistry.add(
        T0_MIXTURE, source=seqio.FunctionDataSource(_p3_dataset_fn, _SPLITS,
                                                    caching_permitted=False),
        preprocessors=list(_PREPROCESSORS), output_features=_output_features(t0_vocabulary))


class _QuietUncachedWarning(logging.Filter):
  """Drops seqio's per-task 'uncached FunctionDataset' warning: these sources are in memory."""

  def filter(self, record: logging.LogRecord) -> bool:
    return "uncached FunctionDataset" not in record.getMessage()


logging.getLogger("absl").addFilter(_QuietUncachedWarning())
