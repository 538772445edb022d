"""Uncertainty of suite scores and of differences between cells (numpy only, seeded, vectorised).

The score is eval/aggregation.py's: per prompt, the mean credit over its examples (accuracy); per
task, the median over prompts; per suite, the mean over tasks. Every resample recomputes exactly
that, so the prompt structure is kept:

- `bootstrap`: percentile interval over examples. Each task's examples are resampled with
  replacement (tasks independently: they are different data sets); a resampled example brings its
  outcome under every prompt, then per-prompt accuracies, the median over prompts and the mean over
  tasks are recomputed in each resample.
- `paired`: two cells on the same examples, aligned by (task, prompt, example id). The interval of
  the difference is a paired bootstrap (the same resampled examples for both cells); the p-value is
  a paired permutation test (two-sided): under "the cells are exchangeable", swapping the two
  cells' outcomes of an example (under all its prompts at once) leaves the distribution unchanged,
  so p = (1 + #{|d_perm| >= |d_obs|}) / (1 + permutations), which is valid at any n. With one
  prompt and 0/1 credits it is the exact McNemar test (`mcnemar_exact`, the closed form).
- `holm`: Holm's step-down adjustment when many pairs are tested (family-wise error rate).
- `seed_interval`: mean over seeds and its Student t interval (seeds are few: a bootstrap over
  2-5 values has no useful percentiles).
- `wilson`: the closed-form binomial interval of one prompt's accuracy, for comparison.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from typing import Mapping, Sequence

import numpy as np

CONFIDENCE = 0.95
N_BOOT = 2000
N_PERM = 2000
_CHUNK = 256  # resamples per matmul: bounds memory on tasks with 10k examples (HellaSwag)


@dataclasses.dataclass(frozen=True)
class Outcomes:
  """One cell's credits in the suite's prompt structure: per task a [prompts, examples] matrix.

  NaN marks an example a prompt did not score (its template skipped it).
  """

  tasks: tuple[str, ...]
  prompts: tuple[tuple[str, ...], ...]
  ids: tuple[np.ndarray, ...]  # per task, the example ids (columns), sorted
  credit: tuple[np.ndarray, ...]  # per task, [P, N] float64
  keys: tuple[np.ndarray, ...] | None = None  # per task, [P, N] rendered-text hashes (or None)

  @property
  def n_examples(self) -> int:
    return int(sum(len(i) for i in self.ids))

  def score(self) -> float:
    return float(_scores(self, [np.ones((1, len(i))) for i in self.ids]).mean(0)[0])

  def task_scores(self) -> dict[str, float]:
    t = _scores(self, [np.ones((1, len(i))) for i in self.ids])[:, 0]
    return dict(zip(self.tasks, t.tolist()))


def outcomes(task: Sequence[str], prompt: Sequence[str], example: Sequence[int],
             credit: Sequence[float], key: Sequence[str] | None = None) -> Outcomes:
  """Outcomes from flat rows (one per task x prompt x example), e.g. eval/records.py's columns."""
  task, prompt = np.asarray(task, object), np.asarray(prompt, object)
  example, credit = np.asarray(example, np.int64), np.asarray(credit, np.float64)
  key = None if key is None else np.asarray(key, object)
  tasks, prompts, ids, credits, keys = [], [], [], [], []
  for t in sorted(set(task.tolist())):
    sel = task == t
    p_names = tuple(sorted(set(prompt[sel].tolist())))
    t_ids = np.unique(example[sel])
    p_idx = np.searchsorted(np.array(p_names, object), prompt[sel])
    e_idx = np.searchsorted(t_ids, example[sel])
    c = np.full((len(p_names), len(t_ids)), np.nan)
    if np.any(np.bincount(p_idx * len(t_ids) + e_idx) > 1):
      raise ValueError(f"task {t!r}: an example appears twice under one prompt (ids must be "
                       "unique per task and prompt).")
    c[p_idx, e_idx] = credit[sel]
    tasks.append(t)
    prompts.append(p_names)
    ids.append(t_ids)
    credits.append(c)
    if key is not None:
      k = np.full(c.shape, None, object)
      k[p_idx, e_idx] = key[sel]
      keys.append(k)
  return Outcomes(tuple(tasks), tuple(prompts), tuple(ids), tuple(credits),
                  tuple(keys) if key is not None else None)


def _scores(o: Outcomes, weights: Sequence[np.ndarray]) -> np.ndarray:
  """[T, B] task scores (median over prompts of weighted accuracies) for B weightings of examples."""
  out = []
  for c, w_BxN in zip(o.credit, weights):
    mask = ~np.isnan(c)
    num_BxP = w_BxN @ np.where(mask, c, 0.0).T
    den_BxP = w_BxN @ mask.T.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
      acc_BxP = num_BxP / den_BxP  # NaN: the resample drew no example this prompt scored
    out.append(np.nanmedian(acc_BxP, axis=1) if acc_BxP.shape[1] > 1 else acc_BxP[:, 0])
  return np.stack(out)


def _resample_weights(rng: np.random.Generator, n: int, b: int) -> np.ndarray:
  """[b, n] counts of each example in b bootstrap resamples of size n."""
  return rng.multinomial(n, np.full(n, 1.0 / n), size=b).astype(np.float64)


def _chunks(total: int):
  for start in range(0, total, _CHUNK):
    yield min(_CHUNK, total - start)


def _percentiles(values: np.ndarray, confidence: float) -> tuple[float, float]:
  alpha = (1 - confidence) / 2
  lo, hi = np.quantile(values, [alpha, 1 - alpha], axis=-1)
  return float(lo), float(hi)


def bootstrap(o: Outcomes, n_boot: int = N_BOOT, seed: int = 0,
              confidence: float = CONFIDENCE) -> dict:
  """Suite score and per-task scores with percentile intervals over resampled examples."""
  rng = np.random.default_rng(seed)
  parts = [_scores(o, [_resample_weights(rng, len(i), b) for i in o.ids]) for b in _chunks(n_boot)]
  task_TxB = np.concatenate(parts, axis=1)
  suite_B = task_TxB.mean(0)
  lo, hi = _percentiles(suite_B, confidence)
  tasks = {}
  for t, row, point in zip(o.tasks, task_TxB, o.task_scores().values()):
    t_lo, t_hi = _percentiles(row, confidence)
    tasks[t] = {"score": point, "lo": t_lo, "hi": t_hi, "se": float(row.std(ddof=1))}
  return {"score": o.score(), "lo": lo, "hi": hi, "se": float(suite_B.std(ddof=1)),
          "n": o.n_examples, "n_boot": n_boot, "confidence": confidence, "tasks": tasks,
          "samples": suite_B}


def align(a: Outcomes, b: Outcomes) -> tuple[Outcomes, Outcomes]:
  """Both cells restricted to the (task, prompt, example) they share; same text checked by key."""
  out_a, out_b = [], []
  for t in sorted(set(a.tasks) & set(b.tasks)):
    ia, ib = a.tasks.index(t), b.tasks.index(t)
    prompts = tuple(p for p in a.prompts[ia] if p in b.prompts[ib])
    ids = np.intersect1d(a.ids[ia], b.ids[ib])
    if not prompts or not len(ids):
      continue
    pick = []
    for o, i in ((a, ia), (b, ib)):
      rows = [o.prompts[i].index(p) for p in prompts]
      cols = np.searchsorted(o.ids[i], ids)
      pick.append((o.credit[i][np.ix_(rows, cols)],
                   None if o.keys is None else o.keys[i][np.ix_(rows, cols)]))
    (ca, ka), (cb, kb) = pick
    if ka is not None and kb is not None:
      both = (ka != None) & (kb != None)  # noqa: E711 (elementwise on object arrays)
      if np.any(ka[both] != kb[both]):
        raise ValueError(f"task {t!r}: the two cells scored different texts under the same "
                         "(prompt, example id): they were not evaluated on the same data.")
    # An example counts under a prompt only where both cells scored it.
    nan = np.isnan(ca) | np.isnan(cb)
    ca, cb = np.where(nan, np.nan, ca), np.where(nan, np.nan, cb)
    out_a.append((t, prompts, ids, ca))
    out_b.append((t, prompts, ids, cb))
  if not out_a:
    raise ValueError("the two cells share no (task, prompt, example): nothing to compare.")
  mk = lambda rows: Outcomes(*(tuple(r[k] for r in rows) for k in range(4)))
  return mk(out_a), mk(out_b)


def _swap_scores(a: Outcomes, b: Outcomes, swap: Sequence[np.ndarray]) -> np.ndarray:
  """[B] suite-score differences a - b after swapping the cells' outcomes where swap is 1."""
  diffs = []
  for ca, cb, s_BxN in zip(a.credit, b.credit, swap):
    mask = ~np.isnan(ca)
    za, zb = np.where(mask, ca, 0.0), np.where(mask, cb, 0.0)
    m_P = mask.sum(1).astype(np.float64)
    moved_BxP = s_BxN @ (za - zb).T  # credit moved from a to b by the swaps
    with np.errstate(invalid="ignore", divide="ignore"):
      acc_a = (za.sum(1) - moved_BxP) / m_P
      acc_b = (zb.sum(1) + moved_BxP) / m_P
    med = lambda x: np.nanmedian(x, axis=1) if x.shape[1] > 1 else x[:, 0]
    diffs.append(med(acc_a) - med(acc_b))
  return np.stack(diffs).mean(0)


def paired(a: Outcomes, b: Outcomes, n_boot: int = N_BOOT, n_perm: int = N_PERM, seed: int = 0,
           confidence: float = CONFIDENCE) -> dict:
  """a - b on their shared examples: difference, paired-bootstrap interval, permutation p-value."""
  a, b = align(a, b)
  rng = np.random.default_rng(seed)
  boot = []
  for size in _chunks(n_boot):
    w = [_resample_weights(rng, len(i), size) for i in a.ids]
    boot.append(_scores(a, w).mean(0) - _scores(b, w).mean(0))
  boot_B = np.concatenate(boot)
  observed = a.score() - b.score()
  perm = [_swap_scores(a, b, [rng.integers(0, 2, (size, len(i))).astype(np.float64)
                              for i in a.ids]) for size in _chunks(n_perm)]
  perm_R = np.concatenate(perm)
  # A tolerance: medians of equal accuracies must not differ by rounding.
  extreme = np.abs(perm_R) >= abs(observed) - 1e-12
  lo, hi = _percentiles(boot_B, confidence)
  return {"diff": observed, "lo": lo, "hi": hi, "p_value": float((1 + extreme.sum()) /
                                                                   (1 + n_perm)),
          "n": a.n_examples, "n_boot": n_boot, "n_perm": n_perm, "confidence": confidence,
          "a": a.score(), "b": b.score(),
          "method": "interval: paired bootstrap over examples; p: paired permutation test "
                    "(two-sided, swapping the cells' outcomes per example)"}


def holm(p_values: Sequence[float]) -> np.ndarray:
  """Holm's step-down adjusted p-values (same order as given; NaN stays NaN)."""
  p = np.asarray(p_values, np.float64)
  out = np.full(p.shape, np.nan)
  ok = np.flatnonzero(~np.isnan(p))
  m = len(ok)
  if not m:
    return out
  order = ok[np.argsort(p[ok], kind="stable")]
  adjusted = np.maximum.accumulate((m - np.arange(m)) * p[order])
  out[order] = np.minimum(adjusted, 1.0)
  return out


def mcnemar_exact(b: int, c: int) -> float:
  """Exact two-sided McNemar p-value from the discordant counts (a right, b wrong: b; reverse: c)."""
  n = b + c
  if n == 0:
    return 1.0
  k = min(b, c)
  tail = sum(math.comb(n, i) for i in range(k + 1)) / 2.0 ** n
  return min(1.0, 2 * tail)


def _z(confidence: float) -> float:
  return statistics.NormalDist().inv_cdf(0.5 + confidence / 2)


def wilson(k: float, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
  """Wilson score interval of a binomial proportion k / n."""
  if n <= 0:
    return math.nan, math.nan
  z, p = _z(confidence), k / n
  mid = (p + z * z / (2 * n)) / (1 + z * z / n)
  half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
  return mid - half, mid + half


def _t_cdf(t: float, df: int) -> float:
  """Student t CDF by Simpson's rule on the density (enough digits for an interval's width)."""
  if t == 0:
    return 0.5
  x = np.linspace(0.0, abs(t), 4001)
  log_c = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
  f = np.exp(log_c - (df + 1) / 2 * np.log1p(x * x / df))
  h = x[1] - x[0]
  area = h / 3 * (f[0] + f[-1] + 4 * f[1:-1:2].sum() + 2 * f[2:-1:2].sum())
  return 0.5 + math.copysign(area, t)


def t_quantile(q: float, df: int) -> float:
  """Quantile of Student's t with df degrees of freedom (bisection on the CDF)."""
  if not 0.5 <= q < 1:
    raise ValueError(f"t_quantile takes q in [0.5, 1), got {q}.")
  lo, hi = 0.0, 1.0
  while _t_cdf(hi, df) < q:
    hi *= 2
  for _ in range(60):
    mid = (lo + hi) / 2
    lo, hi = (mid, hi) if _t_cdf(mid, df) < q else (lo, mid)
  return (lo + hi) / 2


def seed_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> dict:
  """Mean over seeds with a Student t interval (NaN bounds with a single seed)."""
  v = np.asarray([x for x in values if not math.isnan(x)], np.float64)
  k = len(v)
  if k == 0:
    return {"mean": math.nan, "lo": math.nan, "hi": math.nan, "n_seeds": 0}
  mean = float(v.mean())
  if k == 1:
    return {"mean": mean, "lo": math.nan, "hi": math.nan, "n_seeds": 1}
  half = t_quantile(0.5 + confidence / 2, k - 1) * float(v.std(ddof=1)) / math.sqrt(k)
  return {"mean": mean, "lo": mean - half, "hi": mean + half, "n_seeds": k,
          "method": "Student t interval over seeds"}


def mode_share(values: Sequence) -> float:
  """Share of the most frequent value (1.0: every example got the same answer)."""
  if not len(values):
    return math.nan
  _, counts = np.unique(np.asarray(list(values), object).astype(str), return_counts=True)
  return float(counts.max() / counts.sum())


def credits_from(mapping: Mapping[str, Sequence[float]]) -> Outcomes:
  """One task, one prompt per key, examples 0..n-1: a convenience for small hand-made cases."""
  rows = [(p, i, c) for p, cs in mapping.items() for i, c in enumerate(cs)]
  return outcomes(["task"] * len(rows), [r[0] for r in rows], [r[1] for r in rows],
                  [r[2] for r in rows])
