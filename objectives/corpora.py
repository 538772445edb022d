"""Raw-text corpora as seqio data sources: embedded plays, TFDS c4/en, local UTF-8 text files.

Each is registered once, at the end of this file, with its default vocabulary and its check
(objectives/registry.py); a new corpus is one more `registry.register_corpus(...)`.

Every source yields examples {'text': tf.string}, one document each, and shuffles whole documents
itself when asked (seeded, reshuffled every epoch), so the tasks need no example-level shuffle after
the objective (which would separate the prefix-LM row pairs, see objectives/prefix_lm.py).

Splits: 'train' and 'validation'. Embedded: the training plays / the held-out plays (the held-out
plays are only ever used for validation loss and the evaluation families, never trained on). Text:
the files of `validation_files`, or, with `validation_share`, every k-th document of the train files
(left out of 'train'). c4: TFDS's validation split.

Settings that depend on the user's machine (c4 version and data dir, the text files) are read from
gin when a dataset is built, not when the tasks are registered on `import objectives`, so a gin file
parsed after the import still applies.
"""

from __future__ import annotations

import functools
import glob
import os
from typing import Optional, Sequence

import gin
import seqio
import tensorflow as tf

from objectives import registry
from objectives import vocab

SPLITS = ("train", "validation")
# Documents held in the shuffle buffer of a streamed corpus (c4); in-memory corpora shuffle fully.
STREAM_SHUFFLE_BUFFER = 10_000


class CorpusError(registry.ConfigError):
  """A corpus that cannot be read: names the file, binding or setting at fault."""


def _check_split(corpus: str, split: str) -> None:
  if split not in SPLITS:
    raise CorpusError(f"Corpus {corpus!r} has no split {split!r}; valid splits: {', '.join(SPLITS)}.")


def _documents_dataset(docs: Sequence[str], shuffle: bool, seed: Optional[int]) -> tf.data.Dataset:
  ds = tf.data.Dataset.from_tensor_slices({"text": tf.constant(list(docs), dtype=tf.string)})
  if shuffle:
    ds = ds.shuffle(len(docs), seed=seed, reshuffle_each_iteration=True)
  return ds


# ------------------------------------------------------------------------------------- embedded


@functools.lru_cache(maxsize=None)
def embedded_documents(split: str) -> tuple[str, ...]:
  """Scenes of the training plays ('train') or of the held-out plays ('validation')."""
  from objectives import plays

  _check_split("embedded", split)
  docs = tuple(plays.documents("train" if split == "train" else "heldout"))
  if not docs:
    raise CorpusError(f"The embedded corpus has no documents in split {split!r}.")
  return docs


def _embedded_dataset_fn(split: str, shuffle_files: bool, seed: Optional[int] = None):
  return _documents_dataset(embedded_documents(split), shuffle_files, seed)


# ----------------------------------------------------------------------------------------- text


@gin.configurable(module="objectives.corpora")
def text_files(
    train_files: Sequence[str] = (),
    validation_files: Sequence[str] = (),
    document_per: str = "file",
    validation_share: float = 0.0,
) -> dict:
  """The text corpus settings: file paths or globs per split; one document per 'file' or 'line'.

  validation_share in (0, 1) takes the 'validation' split from the train files instead of
  validation_files: an evenly spread share of their documents, left out of 'train'.
  """
  if document_per not in ("file", "line"):
    raise CorpusError(
        f"objectives.corpora.text_files.document_per={document_per!r}; valid values: 'file', 'line'."
    )
  share = validation_share
  if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 <= share < 1:
    raise CorpusError(f"objectives.corpora.text_files.validation_share = {share!r}; expected a "
                      f"fraction in [0, 1) (e.g. 0.05; 0 = use validation_files).")
  if share and validation_files:
    raise CorpusError(
        "objectives.corpora.text_files binds both validation_files and validation_share = "
        f"{share!r}; the 'validation' split comes from one of them: unbind the other.")
  return {"train": tuple(train_files), "validation": tuple(validation_files), "per": document_per,
          "share": float(share)}


def held_out(num_documents: int, share: float) -> list[bool]:
  """True for the documents a validation share holds out: document i when floor((i+1) * share)
  passes an integer, so floor(n * share) documents spread evenly (every 20th for 0.05)."""
  # Spread rather than the last documents: a corpus of files sorted by name (often by date or
  # source) gives a validation split drawn from all of it.
  return [int((i + 1) * share) > int(i * share) for i in range(num_documents)]


def _expand(patterns: Sequence[str], binding: str) -> list[str]:
  if isinstance(patterns, str):
    patterns = (patterns,)
  files: list[str] = []
  for pattern in patterns:
    matched = sorted(glob.glob(os.path.expanduser(pattern)))
    if not matched:
      raise CorpusError(f"{binding}: {pattern!r} matches no file.")
    if not any(os.path.isfile(m) for m in matched) and all(os.path.isdir(m) for m in matched):
      raise CorpusError(
          f"{binding}: {pattern!r} is a folder; give its files, e.g. "
          f"'{os.path.join(pattern.rstrip('/'), '*.txt')}'.")
    files.extend(m for m in matched if os.path.isfile(m))
  return files


def read_utf8(path: str) -> str:
  """The text of a file; a non-UTF-8 file raises naming the file and the byte offset."""
  data = open(path, "rb").read()
  try:
    return data.decode("utf-8")
  except UnicodeDecodeError as e:
    raise CorpusError(
        f"{path} is not UTF-8: byte offset {e.start} (0x{data[e.start]:02x}) cannot be decoded "
        f"({e.reason}). Convert the file to UTF-8 (e.g. iconv -t UTF-8)."
    ) from None


@functools.lru_cache(maxsize=8)
def _read_text_corpus(files: tuple, per: str, binding: str) -> tuple[str, ...]:
  """Documents of (path, mtime, size) files; the stat in the key drops edited files from the cache."""
  docs: list[str] = []
  for path, _, _ in files:
    text = read_utf8(path)
    if per == "file":
      docs.append(text.strip())
    else:
      docs.extend(line.strip() for line in text.splitlines())
  docs = [d for d in docs if d]
  if not docs:
    names = [f[0] for f in files]
    raise CorpusError(f"{binding}: the text corpus is empty (files {names} hold no text).")
  return tuple(docs)


def text_documents(split: str) -> tuple[str, ...]:
  """The documents of the text corpus for a split, as bound in gin (objectives.corpora.text_files)."""
  _check_split("text", split)
  settings = text_files()
  share = settings["share"]
  source = "train" if share else split
  binding = f"objectives.corpora.text_files.{source}_files"
  if not settings[source]:
    hint = (" or objectives.corpora.text_files.validation_share to a fraction of the train files'"
            " documents (e.g. 0.05)" if split == "validation" else "")
    raise CorpusError(f"{binding} is empty: bind it to the text files of the {split!r} split"
                      f"{hint}.")
  files = _expand(settings[source], binding)
  if not files:
    raise CorpusError(f"{binding}: the text corpus is empty (no files).")
  stats = tuple((f, os.stat(f).st_mtime_ns, os.stat(f).st_size) for f in files)
  docs = _read_text_corpus(stats, settings["per"], binding)
  if not share:
    return docs
  mask = held_out(len(docs), share)
  if not any(mask):
    raise CorpusError(
        f"objectives.corpora.text_files.validation_share = {share!r} holds out no document of "
        f"the {len(docs)} in {binding}; it needs at least {1 / share:.0f} documents, or a larger "
        f"share, or validation_files.")
  kept = tuple(d for d, held in zip(docs, mask) if held == (split == "validation"))
  if not kept:
    raise CorpusError(f"objectives.corpora.text_files.validation_share = {share!r} leaves no "
                      f"training document of the {len(docs)} in {binding}.")
  return kept


def _text_dataset_fn(split: str, shuffle_files: bool, seed: Optional[int] = None):
  return _documents_dataset(text_documents(split), shuffle_files, seed)


# ------------------------------------------------------------------------------------------- c4


@gin.configurable(module="objectives.corpora")
def c4_settings(version: str = "2.2.0", data_dir: Optional[str] = None) -> dict:
  """TFDS c4/en: the version (the paper used 2.2.0) and the TFDS data dir holding it."""
  return {"name": f"c4/en:{version}", "data_dir": data_dir}


@functools.lru_cache(maxsize=4)
def _c4_source(name: str, data_dir: Optional[str]) -> seqio.TfdsDataSource:
  return seqio.TfdsDataSource(
      tfds_name=name, tfds_data_dir=data_dir, splits={s: s for s in SPLITS}, read_only=True
  )


def check_c4(split: str = "train") -> None:
  """Raises a clear error if the configured c4/en version is not prepared in the TFDS data dir."""
  import tensorflow_datasets as tfds

  _check_split("c4", split)
  settings = c4_settings()
  # The folder the task reads: seqio's override (--tfds_data_dir) wins over c4_settings.data_dir.
  data_dir = _c4_source(settings["name"], settings["data_dir"]).tfds_dataset.data_dir
  try:
    builder = tfds.builder(settings["name"], data_dir=data_dir)
    prepared = tf.io.gfile.exists(os.path.join(builder.data_dir, "dataset_info.json"))
  except Exception as e:  # tfds raises many types for a missing dataset or version.
    raise CorpusError(f"TFDS {settings['name']} is not available: {e}") from None
  if not prepared:
    raise CorpusError(
        f"TFDS {settings['name']} is not prepared under {builder.data_dir}; prepare it with "
        "tfds (c4 needs a Beam pipeline) or give its TFDS data dir (--tfds_data_dir or "
        "objectives.corpora.c4_settings.data_dir)."
    )


class C4Source(seqio.DataSource):
  """TFDS c4/en, resolved from gin at dataset time; shuffles files and a document buffer."""

  def __init__(self):
    super().__init__(splits=SPLITS, caching_permitted=True)

  @property
  def performs_internal_shuffling(self) -> bool:
    return True

  @property
  def _source(self) -> seqio.TfdsDataSource:
    settings = c4_settings()
    return _c4_source(settings["name"], settings["data_dir"])

  @property
  def supports_arbitrary_sharding(self) -> bool:
    return False

  def list_shards(self, split: str) -> Sequence[str]:
    return self._source.list_shards(split)

  def num_input_examples(self, split: str) -> Optional[int]:
    return self._source.num_input_examples(split)

  def get_dataset(self, split="train", shuffle=True, seed=None, shard_info=None, **unused):
    _check_split("c4", split)
    ds = self._source.get_dataset(split=split, shuffle=shuffle, seed=seed, shard_info=shard_info)
    ds = ds.map(lambda x: {"text": x["text"]}, num_parallel_calls=tf.data.AUTOTUNE)
    if shuffle:
      ds = ds.shuffle(STREAM_SHUFFLE_BUFFER, seed=seed)
    return ds


class InMemorySource(seqio.FunctionDataSource):
  """A FunctionDataSource whose documents are shuffled by the source itself."""

  @property
  def performs_internal_shuffling(self) -> bool:
    return True

  def get_dataset(self, split="train", shuffle=True, seed=None, shard_info=None, **unused):
    # seqio's version warns that function sources shuffle poorly on restart; these shuffle every
    # document with the run's seed each epoch and resume exactly (objectives/pipeline.py).
    if shard_info and shard_info.num_shards > 1:
      raise ValueError("InMemorySource is sharded by seqio at the example level, not here.")
    return self._dataset_fn(split=split, shuffle_files=shuffle, seed=seed)


registry.register_corpus(registry.Corpus(
    name="embedded", source=lambda: InMemorySource(_embedded_dataset_fn, splits=SPLITS),
    vocabulary=vocab.embedded_vocabulary, check=embedded_documents,
))
registry.register_corpus(registry.Corpus(
    name="c4", source=C4Source, vocabulary=vocab.sentencepiece_vocabulary, check=check_c4,
))
registry.register_corpus(registry.Corpus(
    name="text", source=lambda: InMemorySource(_text_dataset_fn, splits=SPLITS),
    vocabulary=vocab.embedded_vocabulary, check=text_documents,
))
