"""A grid folder made of stub scorers of known quality, with per-example records: fast to build,
for the statistics, the summary and the notebook (no training)."""

import json
import pathlib

import numpy as np

from eval import aggregation
from eval import records
from experiments import results

# (cell, arch, objective, source) and each cell's chance of being right per phase.
CELLS = (("CD:FLM", "causal_decoder", "full_lm", None),
         ("ND:PLM", "non_causal_decoder", "prefix_lm", None),
         ("ED:MLM", "encoder_decoder", "span_corruption", None),
         ("ND:MLM", "non_causal_decoder", "span_corruption", None),
         ("CD:FLM->ND:MLM", "non_causal_decoder", "span_corruption", "CD:FLM"),
         ("CONST", "causal_decoder", "full_lm", None))
QUALITY = {"CD:FLM": (0.75, 0.55), "ND:PLM": (0.45, 0.6), "ED:MLM": (0.45, 0.85),
           "ND:MLM": (0.45, 0.8), "CD:FLM->ND:MLM": (0.5, 0.8), "CONST": (None, None)}
TASKS = {"four": 4, "two": 2}  # task -> options
PROMPTS = ("p1", "p2", "p3")


def _cell_eval(rng, quality, n, difficulty):
  """results.json-like tasks and the records of one evaluation."""
  book = records.Recorder()
  tasks = {}
  for task, k in TASKS.items():
    # "four": gold positions balanced; "two": 3 of 4 golds are option 0 (majority 0.75).
    gold = np.arange(n) % k if k != 2 else (np.arange(n) % 4 == 3).astype(int)
    per_prompt = {}
    for prompt in PROMPTS:
      exs, scores = [], []
      for i in range(n):
        choices = tuple(f"{task}-{prompt}-option{j}" for j in range(k))
        exs.append(aggregation.RankedExample((f"{task} {prompt} {i}",) * k, choices,
                                             int(gold[i]), example_id=i))
        s = rng.normal(size=k) - 5
        if quality is None:  # the constant answerer: option 0, always
          s[0] = 0.0
        else:
          right = 0.6 * difficulty[task][i] + 0.4 * rng.random() < quality
          best = gold[i] if right else (gold[i] + 1 + rng.integers(k - 1)) % k
          s[best] = 0.0
        scores.append(s)
      book.add(task, prompt, exs, scores)
      per_prompt[prompt] = aggregation.prompt_metrics(exs, scores)
    tasks[task] = aggregation.task_summary(per_prompt)
  return {"suite": "fake", "tasks": tasks}, book


def build(root: pathlib.Path, n: int = 60, seed: int = 0, quality=None,
          eval_dirs: bool = True) -> pathlib.Path:
  """GRID_DIR with grid.json, results.csv and each evaluation's records; returns it.

  eval_dirs=False leaves results.csv without its eval_dir column (the grid's folder layout then
  says where the records are).
  """
  quality = quality or QUALITY
  rng = np.random.default_rng(seed)
  difficulty = {t: rng.random(n) for t in TASKS}  # shared by every cell: the same examples
  rows = []
  for cell, arch, objective, source in CELLS:
    for k, (stage, phase) in enumerate(((("adapt" if source else "pretrain"), "zero_shot"),
                                        ("mtf", "post_mtf"))):
      slug = "-".join(part.lower().replace(":", "_") for part in cell.split("->"))
      rel = f"cells/{slug}/eval_{stage}/fake"
      out = root / rel
      out.mkdir(parents=True)
      res, book = _cell_eval(rng, quality[cell][k], n, difficulty)
      book.write(out)
      (out / "results.json").write_text(json.dumps(res))
      rows += results.rows_from_results(res, grid="fake", cell=cell, arch=arch,
                                        objective=objective, stage=stage, phase=phase,
                                        step=10 * (k + 1), **({"eval_dir": rel} if eval_dirs else {}))
  results.write_csv(rows, str(root / results.RESULTS_CSV))
  cells = [dict(name=c, arch=a, objective=o, **({"source": s} if s else {}))
           for c, a, o, s in CELLS]
  (root / "grid.json").write_text(json.dumps({"name": "fake", "fingerprint": "0",
                                              "definition": {"name": "fake", "cells": cells}}))
  return root
