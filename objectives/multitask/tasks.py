"""seqio tasks and mixtures for multitask finetuning (MTF), registered on `import objectives.multitask`.

- `embedded_mtf_<family>_<template>`: one task per prompt of each embedded family (families.py),
  from the training plays; `t0like_<dataset>_<template>`: one per prompt of the local AG News / TREC
  / SST-2 sets (t0_like.py), present when LOCAL_DATA_DIR holds them.
- `embedded_mtf`: the mixture of all of these, T0's sampling rule (rate of a prompt = min(examples,
  500,000) / prompts of its dataset); a local set that is absent gets rate 0 and is logged.
- `t0_train`: T0's training mixture from a local folder of P3 examples (p3.py documents the layout).

Features: 'inputs' = the rendered prompt, 'targets' = the gold choice, both EOS-terminated, in the
corpus's vocabulary. Splits: 'train', and 'validation' = every 20th example (never trained on).
"""

from __future__ import annotations

import functools
import logging
import pathlib

import gin
import seqio
import tensorflow as tf

from eval import templates as templates_lib
from objectives.multitask import families, p3, t0_like

TEMPLATES_DIR = pathlib.Path(__file__).resolve().parent / "templates"
EMBEDDED_MIXTURE = "embedded_mtf"
T0_MIXTURE = "t0_train"
_VALIDATION_EVERY = 20
_SPLITS = ("train", "validation")


@gin.configurable(module="objectives.multitask")
def mtf_options(local_data_dir=None, p3_dir=None, max_examples_per_family=None, seed=0):
  """Data locations and sizes of the MTF tasks, read when a dataset is built (bind by gin)."""
  return dict(local_data_dir=local_data_dir, p3_dir=p3_dir,
              max_examples_per_family=max_examples_per_family, seed=seed)


@functools.lru_cache(maxsize=None)
def mtf_templates() -> dict[str, list[templates_lib.Template]]:
  """The training prompts of every MTF family and local set, by family name."""
  return templates_lib.load_templates(TEMPLATES_DIR)


@functools.lru_cache(maxsize=None)
def _family_examples(family: str, seed: int, max_examples: int | None) -> tuple[dict, ...]:
  return tuple(families.build(family, seed=seed, max_examples=max_examples))


@functools.lru_cache(maxsize=None)
def _local_examples(dataset: str, local_data_dir: str | None) -> tuple[dict, ...]:
  if t0_like.path_of(dataset, local_data_dir) is None:
    return ()
  return tuple(t0_like.load(dataset, local_data_dir))


def _options_key(source: str) -> tuple:
  opts = mtf_options()
  if source in families.FAMILIES:
    return (opts["seed"], opts["max_examples_per_family"])
  return (None if opts["local_data_dir"] is None else str(opts["local_data_dir"]),)


def examples(source: str) -> tuple[dict, ...]:
  """The raw examples of a family or local dataset under the current gin options."""
  if source in families.FAMILIES:
    return _family_examples(source, *_options_key(source))
  return _local_examples(source, *_options_key(source))


@functools.lru_cache(maxsize=None)
def _render(source: str, template_name: str, key: tuple, split: str):
  del key  # Part of the cache key: the options the examples were built with.
  template = {t.name: t for t in mtf_templates()[source]}[template_name]
  inputs, targets = [], []
  for i, ex in enumerate(examples(source)):
    if (i % _VALIDATION_EVERY == 0) != (split == "validation"):
      continue
    prompt, choices, gold = template.render(ex)
    inputs.append(prompt)
    targets.append(choices[gold])
  return inputs, targets


def rendered(source: str, template_name: str, split: str) -> tuple[list[str], list[str]]:
  """(inputs, targets) strings of one prompt of one source for a split."""
  return _render(source, template_name, _options_key(source), split)


def _dataset_fn(split, shuffle_files, seed=None, *, source, template):
  del shuffle_files, seed  # In-memory, fixed order; the task's shuffle buffer shuffles.
  inputs, targets = rendered(source, template, split)
  return tf.data.Dataset.from_tensor_slices(
      {"inputs": tf.constant(inputs, tf.string, shape=[len(inputs)]),
       "targets": tf.constant(targets, tf.string, shape=[len(targets)])})


def _rate(source: str, num_templates: int, first: bool):
  def rate(task: seqio.Task) -> float:
    del task
    n = len(examples(source))
    if n == 0 and first:
      logging.warning("MTF: %s is absent (objectives.multitask.mtf_options.local_data_dir = %r); "
                      "it gets rate 0.", source, mtf_options()["local_data_dir"])
    return min(n, p3.MAX_EXAMPLES_PER_DATASET) / num_templates
  return rate


def _p3_dataset_fn(split, shuffle_files, seed=None):
  del shuffle_files
  path = mtf_options()["p3_dir"]
  if path is None:
    raise ValueError("t0_train needs objectives.multitask.mtf_options.p3_dir bound to a local "
                     "folder of P3 examples (see objectives/multitask/p3.py for the layout).")
  return p3.dataset(path, split, seed=seed)


def _output_features(vocabulary: seqio.Vocabulary) -> dict[str, seqio.Feature]:
  return {"inputs": seqio.Feature(vocabulary, add_eos=True),
          "targets": seqio.Feature(vocabulary, add_eos=True)}


_PREPROCESSORS = (seqio.preprocessors.tokenize, seqio.preprocessors.append_eos_after_trim)


def task_names(source: str) -> list[str]:
  """The seqio task names of one family or local dataset, one per template."""
  prefix = EMBEDDED_MIXTURE if source in families.FAMILIES else "t0like"
  return [f"{prefix}_{source}_{t.name}" for t in mtf_templates()[source]]


def register(embedded_vocabulary: seqio.Vocabulary, t0_vocabulary: seqio.Vocabulary | None):
  """Registers every MTF task and the two mixtures (idempotent)."""
  members = []
  for source in list(families.FAMILIES) + list(t0_like.DATASETS):
    temps = mtf_templates()[source]
    for k, (template, name) in enumerate(zip(temps, task_names(source))):
      seqio.TaskRegistry.remove(name)
      seqio.TaskRegistry.add(
          name,
          source=seqio.FunctionDataSource(
              functools.partial(_dataset_fn, source=source, template=template.name), _SPLITS),
          preprocessors=list(_PREPROCESSORS),
          output_features=_output_features(embedded_vocabulary))
      members.append((name, _rate(source, len(temps), first=k == 0)))
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
