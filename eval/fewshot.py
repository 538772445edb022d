"""Few-shot prompts for our own suites: k demonstrations before each scored prompt (NUM_FEWSHOT).

- Pool: the other examples of the evaluated data set. The harness's loaders read one split per
  task (the evaluated one: validation, or test where lm-evaluation-harness takes it), so there is no
  training split to draw from; the example itself is never its own demonstration.
- Draw: for example i, k distinct pool members from a generator seeded by (seed, task, i), so every
  model and every cell sees the same demonstrations, and every prompt of a task the same examples
  (each rendered with that prompt's template).
- Format: a demonstration is the gold option's prompt followed by the gold option (one space
  between them unless either side already has whitespace there, as lm-evaluation-harness's
  target_delimiter); demonstrations and the scored prompt are joined by a blank line (lm-eval's
  fewshot_delimiter "\\n\\n").
"""

from __future__ import annotations

import dataclasses
import random
from typing import Sequence

from eval import aggregation
from experiments.runtime.errors import ConfigError

DEFAULT_SEED = 1234  # lm-evaluation-harness's own default fewshot_random_seed
DELIMITER = "\n\n"


class FewshotError(ConfigError):
  """NUM_FEWSHOT that cannot be served (negative, or more than the pool of demonstrations)."""


def check_k(k: int) -> None:
  if not isinstance(k, int) or isinstance(k, bool) or k < 0:
    raise FewshotError(f"NUM_FEWSHOT = {k!r}: expected an integer >= 0.")


def protocol(k: int, seed: int) -> dict:
  """results.json's record of the few-shot set-up."""
  return {"k": k, "seed": seed,
          "pool": "other examples of the evaluated split, never the example itself",
          "format": "gold prompt + gold option per demonstration, joined by a blank line"}


def demonstration(ex: aggregation.RankedExample) -> str:
  prompt, answer = ex.prompts[ex.gold], ex.choices[ex.gold]
  sep = "" if not prompt or not answer or prompt[-1].isspace() or answer[0].isspace() else " "
  return f"{prompt}{sep}{answer}"


def draw(n_pool: int, position: int, k: int, seed: int, task: str, key: int) -> list[int]:
  """k distinct positions in range(n_pool) other than `position`, from a (seed, task, key) draw."""
  rng = random.Random(f"{seed}:{task}:{key}")
  picks = [j for j in rng.sample(range(n_pool), min(n_pool, k + 1)) if j != position]
  return picks[:k]


def with_demonstrations(rows: Sequence[aggregation.RankedExample], k: int, seed: int, task: str,
                        prompt_name: str = "", scored: int | None = None
                        ) -> list[aggregation.RankedExample]:
  """The rows whose example_id < scored (None: all), each prompt preceded by k demonstrations."""
  check_k(k)
  if k > len(rows) - 1:
    raise FewshotError(
        f"NUM_FEWSHOT = {k} but task {task!r} (prompt {prompt_name!r}) has {len(rows) - 1} other "
        "examples to draw demonstrations from; lower NUM_FEWSHOT.")
  out = []
  for i, ex in enumerate(rows):
    if scored is not None and ex.example_id is not None and ex.example_id >= scored:
      continue
    key = ex.example_id if ex.example_id is not None else i
    context = "".join(demonstration(rows[j]) + DELIMITER
                      for j in draw(len(rows), i, k, seed, task, key))
    out.append(dataclasses.replace(ex, prompts=tuple(context + p for p in ex.prompts)))
  return out
