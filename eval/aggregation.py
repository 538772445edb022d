"""From option scores to results: per-prompt accuracy, per-task median, per-suite means.

- accuracy: the gold option has the highest summed log-probability. Ties share the credit
  (1 / number of tied best options), the expectation of a random tie-break, so a degenerate model
  scoring every option equally earns exactly the random baseline, never the gold-first bonus an
  argmax would give.
- acc_norm: the same on log-probability divided by the option's length in characters, a leading
  space not counted (lm-evaluation-harness's acc_norm: the choice's length, without the space it
  puts before the continuation).
- acc_all: examples that share a `group` (MultiRC: the answers of one question) count once, right
  only when all of them are (lm-evaluation-harness's acc_all); a group's credit is the product of
  its examples' credits, so ties again earn the expected random tie-break.
- random_baseline: mean over examples (acc_all: groups) of the chance of being right.
- per task: median over prompts (T0) of the task's metric and the spread (min, max); per suite: mean
  of the task medians and the random-baseline-normalised mean of (median - rb) / (1 - rb) (EAI
  style).
"""

from __future__ import annotations

import dataclasses
import statistics
from typing import Hashable, Mapping, Sequence

import numpy as np


@dataclasses.dataclass(frozen=True)
class RankedExample:
  """One rendered example: a prompt per option (the same one unless partial scoring)."""

  prompts: tuple[str, ...]
  choices: tuple[str, ...]
  gold: int
  group: Hashable | None = None  # examples scored together under acc_all (None: alone)
  example_id: int | None = None  # position in the data set: names the example across cells

  def __post_init__(self):
    if len(self.prompts) != len(self.choices) or not self.choices:
      raise ValueError(f"RankedExample needs one prompt per choice, got {len(self.prompts)} "
                       f"prompts and {len(self.choices)} choices.")


def _credit(scores: np.ndarray, gold: int) -> float:
  best = scores.max()
  tied = np.flatnonzero(scores == best)
  return 1.0 / len(tied) if gold in tied else 0.0


def _length(choice: str) -> int:
  return max(1, len(choice[1:] if choice.startswith(" ") else choice))


def prompt_metrics(examples: Sequence[RankedExample],
                   scores: Sequence[Sequence[float]]) -> dict:
  """{'accuracy', 'acc_norm', 'n', 'random_baseline'} of one prompt's examples.

  When the examples carry groups, also 'acc_all', 'n_groups' and 'acc_all_random_baseline'.
  """
  if len(examples) != len(scores):
    raise ValueError(f"{len(examples)} examples but {len(scores)} score lists.")
  if not examples:
    raise ValueError("prompt_metrics needs at least one example.")
  acc, acc_norm, rb = 0.0, 0.0, 0.0
  groups: dict[Hashable, list[float]] = {}  # group -> [credit, chance], products over members
  for i, (ex, s) in enumerate(zip(examples, scores)):
    s = np.asarray(s, np.float64)
    if s.shape != (len(ex.choices),):
      raise ValueError(f"{len(ex.choices)} choices but scores of shape {s.shape}.")
    lengths = np.array([_length(c) for c in ex.choices], np.float64)
    credit = _credit(s, ex.gold)
    acc += credit
    acc_norm += _credit(s / lengths, ex.gold)
    rb += 1.0 / len(ex.choices)
    g = groups.setdefault(("__alone__", i) if ex.group is None else ex.group, [1.0, 1.0])
    g[0] *= credit
    g[1] *= 1.0 / len(ex.choices)
  n = len(examples)
  out = {"accuracy": acc / n, "acc_norm": acc_norm / n, "n": n, "random_baseline": rb / n}
  if any(ex.group is not None for ex in examples):
    out.update(acc_all=float(np.mean([c for c, _ in groups.values()])), n_groups=len(groups),
               acc_all_random_baseline=float(np.mean([r for _, r in groups.values()])))
  return out


def greedy_metrics(matches: Sequence[bool]) -> dict:
  """Generative tasks scored by greedy match (LAMBADA): accuracy = acc_norm, baseline 0."""
  n = len(matches)
  if not n:
    raise ValueError("greedy_metrics needs at least one example.")
  acc = float(np.mean(np.asarray(matches, np.float64)))
  return {"accuracy": acc, "acc_norm": acc, "n": n, "random_baseline": 0.0}


def task_summary(prompts: Mapping[str, dict], metric: str = "accuracy") -> dict:
  """Median over prompts of `metric`, its spread, and the task's n and random baseline.

  With metric 'acc_all', n counts groups and the baseline is acc_all's.
  """
  if not prompts:
    raise ValueError("task_summary needs at least one prompt.")
  if any(metric not in p for p in prompts.values()):
    raise ValueError(f"metric {metric!r} is missing from the prompt metrics (acc_all needs "
                     "examples with groups).")
  grouped = metric == "acc_all"
  n_key, rb_key = ("n_groups", "acc_all_random_baseline") if grouped else ("n", "random_baseline")
  values = [p[metric] for p in prompts.values()]
  return {
      "prompts": dict(prompts),
      "metric": metric,
      "median": float(statistics.median(values)),
      "spread": {"min": float(min(values)), "max": float(max(values))},
      "n": int(max(p[n_key] for p in prompts.values())),
      "random_baseline": float(statistics.mean(p[rb_key] for p in prompts.values())),
  }


def normalized(value: float, baseline: float) -> float:
  """(value - baseline) / (1 - baseline): 0 at chance, 1 at perfect."""
  return (value - baseline) / (1.0 - baseline) if baseline < 1.0 else 0.0


def suite_aggregate(tasks: Mapping[str, dict]) -> dict:
  """Mean over tasks of the medians, and of the random-baseline-normalised medians."""
  if not tasks:
    return {"mean_of_medians": None, "normalized_mean": None, "n_tasks": 0}  # JSON null
  medians = [t["median"] for t in tasks.values()]
  norms = [normalized(t["median"], t["random_baseline"]) for t in tasks.values()]
  return {"mean_of_medians": float(np.mean(medians)), "normalized_mean": float(np.mean(norms)),
          "n_tasks": len(tasks)}
