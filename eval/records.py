"""Per-example outcomes of an evaluation, written beside results.json as examples.jsonl.gz.

One JSON object per (task, prompt, example):

  {"task": "cb", "prompt": "gpt3_style", "id": 17, "gold": 1, "chosen": 0, "credit": 0.0,
   "chosen_text": "True", "scores": [-3.1, -4.2, -5.0], "key": "9f3a61c2", "kind": "rank"}

- id: the example's position in its data set as the loaders read it (files and TFDS splits in
  their fixed order, embedded families from fixed seeds), so it names the same example in every
  cell; key: a CRC-32 of the rendered prompts and options, which lets a paired comparison check
  that two cells really scored the same text.
- chosen: the first best-scoring option; credit: the example's share of the accuracy (ties share
  it, as eval/aggregation.py counts), so the mean credit of a prompt is its accuracy exactly.
- greedy-match tasks (kind "greedy"): scores are 1/0 per accepted answer, chosen the first match
  (-1: none).
- group: set on examples scored together under acc_all (MultiRC: the answers of one question);
  `by_group` folds them into one row per group for the statistics.

Why gzipped JSON lines: the option lists differ in length across tasks (2 to 5 options), which
JSON holds as it is while a columnar file would need padding or nesting; it needs nothing beyond
the standard library to write, `zcat | head` to inspect, and pandas reads it in one call. A T0-Eval
run (about 50,000 rows) takes a few MB.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import zlib
from typing import Any, Sequence

import numpy as np

from experiments.runtime import storage

RECORDS_FILE = "examples.jsonl.gz"
COLUMNS = ("task", "prompt", "id", "gold", "chosen", "credit", "chosen_text", "scores", "key",
           "kind", "group")


def _key(prompts: Sequence[str], choices: Sequence[str]) -> str:
  text = "\x1f".join(list(prompts) + ["\x1e"] + list(choices))
  return f"{zlib.crc32(text.encode('utf-8')):08x}"


class Recorder:
  """Collects the outcome of every scored example; `write` puts them beside results.json."""

  def __init__(self):
    self.rows: list[dict[str, Any]] = []

  def add(self, task: str, prompt: str, examples: Sequence[Any],
          scores: Sequence[Sequence[float]], greedy: bool = False) -> None:
    """One prompt's examples (aggregation.RankedExample) and their option scores."""
    for i, (ex, s) in enumerate(zip(examples, scores)):
      s = np.asarray(s, np.float64)
      example_id = getattr(ex, "example_id", None)
      row = {"task": task, "prompt": prompt, "id": i if example_id is None else int(example_id),
             "gold": int(ex.gold)}
      if greedy:
        hits = np.flatnonzero(s > 0)
        chosen = int(hits[0]) if len(hits) else -1
        credit = float(len(hits) > 0)
      else:
        tied = np.flatnonzero(s == s.max())
        chosen = int(tied[0])
        credit = 1.0 / len(tied) if ex.gold in tied else 0.0
      row.update(chosen=chosen, credit=credit,
                 chosen_text=ex.choices[chosen] if chosen >= 0 else None,
                 scores=[round(float(x), 5) for x in s], key=_key(ex.prompts, ex.choices),
                 kind="greedy" if greedy else "rank")
      group = getattr(ex, "group", None)
      if group is not None:  # scored together under acc_all (MultiRC: the answers of a question)
        row["group"] = str(group)
      self.rows.append(row)

  def write(self, output_dir: str | os.PathLike) -> storage.Path | None:
    """Writes output_dir/examples.jsonl.gz atomically; nothing (None) when no example was scored."""
    if not self.rows:
      return None  # an evaluation that scored nothing keeps any earlier records
    target = storage.as_path(output_dir) / RECORDS_FILE
    raw = io.BytesIO()
    # mtime=0: the same outcomes give the same bytes.
    with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as f:
      for row in self.rows:
        f.write((json.dumps(row, separators=(",", ":"), ensure_ascii=False) + "\n").encode())
    storage.write_bytes(target, raw.getvalue())  # atomically
    return target


def read(path: str | os.PathLike):
  """The records of an evaluation (its folder or the file) as a pandas DataFrame."""
  import pandas as pd  # pylint: disable=g-import-not-at-top

  path = storage.as_path(path)
  if path.is_dir():
    path = path / RECORDS_FILE
  if not path.is_file():
    raise FileNotFoundError(f"No per-example records at {path} (written by eval.zero_shot beside "
                            "results.json; an evaluation older than them has none).")
  text = gzip.decompress(path.read_bytes()).decode("utf-8")
  rows = [json.loads(line) for line in text.splitlines() if line.strip()]
  return pd.DataFrame(rows, columns=list(COLUMNS))


def by_group(rec):
  """Records with the rows of each acc_all group (task, prompt, group) folded into one row.

  The folded row's credit is the product of its members' (the group counts only when every member
  is right, ties sharing credit as aggregation.prompt_metrics counts), its id the smallest member
  id and its kind 'acc_all', so the statistics resample questions, not answers. Rows without a
  group pass unchanged.
  """
  import pandas as pd  # pylint: disable=g-import-not-at-top
  if "group" not in rec.columns or rec["group"].isna().all():
    return rec
  grouped = rec[rec["group"].notna()]
  folded = (grouped.groupby(["task", "prompt", "group"], sort=False)
            .agg(id=("id", "min"), credit=("credit", "prod"),
                 key=("key", lambda k: f"{zlib.crc32(''.join(sorted(k)).encode()):08x}"))
            .reset_index())
  folded = folded.assign(gold=-1, chosen=-1, chosen_text=None, scores=[[]] * len(folded),
                         kind="acc_all")
  return pd.concat([rec[rec["group"].isna()], folded[list(COLUMNS)]], ignore_index=True)
