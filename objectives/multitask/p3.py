"""T0's training mixture (d4_train) from a local folder of pre-rendered P3 examples.

What a user must have locally (P3_DIR, bound by gin as `objectives.multitask.mtf_options.p3_dir`):

  P3_DIR/<task>/train.jsonl                     one {"inputs": str, "targets": str} per line, or
  P3_DIR/<task>/train.tfrecord-00000-of-0000N   the layout of the bigscience/P3 release: tf.Example
                                                records with string features inputs_pretokenized
                                                and targets_pretokenized

where <task> is P3's name for one prompt of one dataset, `<dataset>[_<subset>]_<template>` (for
example `ag_news_classify_question_first`). The folders of the bigscience/P3 dataset repository
(its data/ folder) can be used as they are; folders of datasets outside T0's training list and P3's
`*_score_eval` variants are ignored. A `validation.*` file per task gives the validation split.

Sampling follows T0's d4_train mixture (t-zero, t0/seqio_tasks/tasks.py, `mixture_cap`): every
prompt of a dataset is one stream whose rate is the dataset's number of training examples n when
n <= 500,000, and 500,000 // (number of prompts of the dataset) above that (`template_rate`). So a
dataset of n <= 500,000 examples and k prompts weighs k * n in all, and only the large datasets are
split across their prompts. Each subset of a multi-subset dataset (adversarial_qa's
dbert/dbidaf/droberta, duorc's SelfRC/ParaphraseRC) counts as its own dataset, as the P3 folder
names do; its prompts are the P3 folders present for it.
"""

from __future__ import annotations

import collections
import json
import pathlib

import tensorflow as tf

MAX_EXAMPLES_PER_DATASET = 500_000

# T0's d4_train datasets as P3 spells their folder prefixes (T0 paper, Figure 2: multiple-choice QA,
# extractive QA, closed-book QA, structure-to-text, sentiment, summarization, topic classification,
# paraphrase identification).
T0_TRAIN_DATASETS = (
    "cos_e_v1.11", "dream", "quail", "quartz", "social_i_qa", "wiqa", "cosmos_qa", "qasc",
    "quarel", "sciq", "wiki_hop_original",
    "adversarial_qa_dbert", "adversarial_qa_dbidaf", "adversarial_qa_droberta", "quoref",
    "duorc_ParaphraseRC", "duorc_SelfRC", "ropes",
    "kilt_tasks_hotpotqa", "wiki_qa",
    "common_gen", "wiki_bio",
    "amazon_polarity", "app_reviews", "imdb", "rotten_tomatoes", "yelp_review_full",
    "cnn_dailymail_3.0.0", "gigaword", "multi_news", "samsum", "xsum",
    "ag_news", "dbpedia_14", "trec",
    "glue_mrpc", "glue_qqp", "paws_labeled_final",
)


def template_rate(examples: int, templates: int) -> int:
  """T0's mixing rate of one prompt of a dataset with `examples` examples and `templates` prompts."""
  if templates < 1:
    raise ValueError(f"A dataset needs at least one template, got {templates}.")
  if examples > MAX_EXAMPLES_PER_DATASET:
    return MAX_EXAMPLES_PER_DATASET // templates
  return int(examples)


def dataset_of(task: str) -> str | None:
  """The T0 training dataset a P3 task folder belongs to (longest prefix), or None."""
  if task.endswith("_score_eval"):
    return None
  best = None
  for ds in T0_TRAIN_DATASETS:
    if task.startswith(ds + "_") and (best is None or len(ds) > len(best)):
      best = ds
  return best


def _files(folder: pathlib.Path, split: str) -> tuple[str, list[pathlib.Path]]:
  jsonl = folder / f"{split}.jsonl"
  if jsonl.is_file():
    return "jsonl", [jsonl]
  records = sorted(folder.glob(f"{split}.tfrecord-*"))
  return ("tfrecord", records) if records else ("", [])


def _count(kind: str, files: list[pathlib.Path]) -> int:
  if kind == "jsonl":
    with files[0].open("rb") as f:
      return sum(1 for line in f if line.strip())
  ds = tf.data.TFRecordDataset([str(f) for f in files])
  return int(ds.reduce(tf.constant(0, tf.int64), lambda n, _: n + 1).numpy())


def scan(p3_dir: str | pathlib.Path, split: str = "train") -> dict[str, dict]:
  """{task: {'dataset', 'kind', 'files', 'examples', 'rate'}} for the T0 prompts under p3_dir."""
  root = pathlib.Path(p3_dir)
  if not root.is_dir():
    raise FileNotFoundError(
        f"t0_train needs a local folder of P3 examples; objectives.multitask.mtf_options.p3_dir = "
        f"{str(p3_dir)!r} is not a folder. See objectives/multitask/p3.py for the layout.")
  tasks = {}
  for folder in sorted(p for p in root.iterdir() if p.is_dir()):
    dataset = dataset_of(folder.name)
    if dataset is None:
      continue
    kind, files = _files(folder, split)
    if kind:
      tasks[folder.name] = dict(dataset=dataset, kind=kind, files=files,
                                examples=_count(kind, files))
  if not tasks:
    raise FileNotFoundError(
        f"No T0 training prompts with a {split!r} split under P3_DIR {p3_dir!s}: expected "
        f"<task>/{split}.jsonl or <task>/{split}.tfrecord-* folders named after T0's datasets "
        f"(for example ag_news_classify_question_first).")
  prompts = collections.Counter(t["dataset"] for t in tasks.values())
  sizes = collections.defaultdict(int)
  for t in tasks.values():
    # A dataset's size is the number of its examples: every prompt renders each example once.
    sizes[t["dataset"]] = max(sizes[t["dataset"]], t["examples"])
  for t in tasks.values():
    t["rate"] = template_rate(sizes[t["dataset"]], prompts[t["dataset"]])
  return tasks


def _read(kind: str, files: list[pathlib.Path]) -> tf.data.Dataset:
  if kind == "jsonl":
    def gen(path=str(files[0])):
      with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f, start=1):
          if not line.strip():
            continue
          try:
            row = json.loads(line)
            yield {"inputs": str(row["inputs"]), "targets": str(row["targets"])}
          except (json.JSONDecodeError, KeyError) as e:
            raise ValueError(f"{path}: line {i}: expected a JSON object with string fields "
                             f"'inputs' and 'targets' ({e}).") from e
    sig = {"inputs": tf.TensorSpec([], tf.string), "targets": tf.TensorSpec([], tf.string)}
    return tf.data.Dataset.from_generator(gen, output_signature=sig)
  spec = {"inputs_pretokenized": tf.io.FixedLenFeature([], tf.string),
          "targets_pretokenized": tf.io.FixedLenFeature([], tf.string)}
  ds = tf.data.TFRecordDataset([str(f) for f in files])
  return ds.map(lambda r: (lambda ex: {"inputs": ex["inputs_pretokenized"],
                                       "targets": ex["targets_pretokenized"]})(
                                           tf.io.parse_single_example(r, spec)))


def dataset(p3_dir: str | pathlib.Path, split: str, seed: int | None = None) -> tf.data.Dataset:
  """The T0 training stream: prompts sampled by their capped rates (train) or concatenated."""
  tasks = scan(p3_dir, split)
  parts = [_read(t["kind"], t["files"]) for t in tasks.values()]
  if split != "train":
    out = parts[0]
    for p in parts[1:]:
      out = out.concatenate(p)
    return out
  weights = [t["rate"] for t in tasks.values()]
  total = sum(weights)
  return tf.data.Dataset.sample_from_datasets(
      [p.repeat() for p in parts], weights=[w / total for w in weights], seed=seed)
