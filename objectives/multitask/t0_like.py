"""Readers for the real T0-training-cluster sets kept locally (LOCAL_DATA_DIR/t0_train_like/).

AG News (topic classification), TREC (question type) and SST-2 (sentiment): one dataset from each of
three of T0's training clusters, in their published file formats (see ../shared/data/README.md).
Each reader returns example dicts for templates/t0_train_like.yaml; a malformed row raises an error
naming the file, the line and what was expected.
"""

from __future__ import annotations

import csv
import pathlib
from typing import Any, Callable

SUBDIR = "t0_train_like"
AG_NEWS_TOPICS = ("World", "Sports", "Business", "Science and technology")
TREC_TYPES = {"ABBR": "abbreviation", "DESC": "description", "ENTY": "entity", "HUM": "person",
              "LOC": "location", "NUM": "number"}
SST2_LABELS = ("negative", "positive")

Example = dict[str, Any]


class LocalDataError(ValueError):
  """A local data file that is malformed."""


def _ag_news(path: pathlib.Path) -> list[Example]:
  out = []
  with path.open(encoding="utf-8", newline="") as f:
    reader = csv.reader(f)
    header = next(reader, None)
    if header is None or header[0] != "Class Index":
      raise LocalDataError(f"{path.name}: line 1: expected the header 'Class Index,Title,"
                           f"Description', got {header!r}.")
    for row in reader:
      line = reader.line_num
      if len(row) != 3 or row[0] not in ("1", "2", "3", "4"):
        raise LocalDataError(f"{path.name}: line {line}: expected 'class (1-4),title,description',"
                             f" got {row!r}.")
      out.append(dict(title=row[1].strip(), text=row[2].replace("\\", " ").strip(),
                      candidates=list(AG_NEWS_TOPICS), label=int(row[0]) - 1))
  return out


def _trec(path: pathlib.Path) -> list[Example]:
  names = sorted(TREC_TYPES.values())
  out = []
  for i, line in enumerate(path.read_text(encoding="latin-1").splitlines(), start=1):
    if not line.strip():
      continue
    label, _, question = line.partition(" ")
    coarse = label.split(":")[0]
    if coarse not in TREC_TYPES or not question:
      raise LocalDataError(f"{path.name}: line {i}: expected 'COARSE:fine question' with COARSE "
                           f"in {sorted(TREC_TYPES)}, got {line[:60]!r}.")
    out.append(dict(question=question.strip(), candidates=names,
                    label=names.index(TREC_TYPES[coarse])))
  return out


def _sst2(path: pathlib.Path) -> list[Example]:
  out = []
  for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
    if not line.strip():
      continue
    label, _, sentence = line.partition(" ")
    if label not in ("0", "1") or not sentence:
      raise LocalDataError(f"{path.name}: line {i}: expected 'label sentence' with label 0 or 1, "
                           f"got {line[:60]!r}.")
    out.append(dict(sentence=sentence.strip(), candidates=list(SST2_LABELS), label=int(label)))
  return out


# dataset -> (file under SUBDIR, reader). T0 trains on training splits; AG News ships only its
# test split here, which is not part of any evaluation suite of this harness.
DATASETS: dict[str, tuple[str, Callable[[pathlib.Path], list[Example]]]] = {
    "ag_news": ("ag_news_test.csv", _ag_news),
    "trec": ("trec_train.txt", _trec),
    "sst2": ("sst2_train.txt", _sst2),
}


def path_of(dataset: str, local_data_dir: str | pathlib.Path | None) -> pathlib.Path | None:
  """The file of `dataset` under local_data_dir, or None when the folder or file is absent."""
  if local_data_dir is None:
    return None
  path = pathlib.Path(local_data_dir) / SUBDIR / DATASETS[dataset][0]
  return path if path.is_file() else None


def load(dataset: str, local_data_dir: str | pathlib.Path) -> list[Example]:
  """The examples of one dataset; FileNotFoundError names the file a user must provide."""
  if dataset not in DATASETS:
    raise ValueError(f"Unknown T0-like dataset {dataset!r}; valid: {', '.join(DATASETS)}.")
  path = path_of(dataset, local_data_dir)
  if path is None:
    raise FileNotFoundError(f"{dataset}: expected {SUBDIR}/{DATASETS[dataset][0]} under "
                            f"LOCAL_DATA_DIR={local_data_dir!s}.")
  return DATASETS[dataset][1](path)
