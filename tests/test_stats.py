"""experiments/stats.py against hand-computable cases, closed forms and simulated scorers."""

import math

import numpy as np
import pytest

from experiments import stats


def test_bootstrap_recomputes_the_median_over_prompts_in_each_resample():
  # Two examples, three prompts: example 0 right under p1, p2; example 1 under p2, p3.
  o = stats.credits_from({"p1": [1, 0], "p2": [1, 1], "p3": [0, 1]})
  assert o.score() == 0.5 + 0 * 1  # accuracies (.5, 1, .5): median .5
  # Resamples {0,0}: (1,1,0) -> 1; {1,1}: (0,1,1) -> 1; {0,1}: (.5,1,.5) -> .5. Each with
  # probability 1/4, 1/4, 1/2: the score is 1 or .5 with probability 1/2 each.
  r = stats.bootstrap(o, n_boot=4000, seed=1)
  values, counts = np.unique(r["samples"], return_counts=True)
  assert list(values) == [0.5, 1.0]
  assert counts[0] / counts.sum() == pytest.approx(0.5, abs=0.03)
  assert (r["lo"], r["hi"]) == (0.5, 1.0)


def test_bootstrap_of_one_prompt_matches_the_binomial_closed_forms():
  rng = np.random.default_rng(0)
  n, p = 400, 0.3
  credit = (rng.random(n) < p).astype(float)
  o = stats.credits_from({"only": credit})
  r = stats.bootstrap(o, n_boot=4000, seed=2)
  k = credit.sum()
  phat = k / n
  assert r["score"] == phat
  assert r["se"] == pytest.approx(math.sqrt(phat * (1 - phat) / n), rel=0.06)
  w_lo, w_hi = stats.wilson(k, n)
  assert r["lo"] == pytest.approx(w_lo, abs=0.01) and r["hi"] == pytest.approx(w_hi, abs=0.01)


def test_wilson_hand_value():
  # k = 5, n = 10, z = 1.96: centre .5, half-width z sqrt(.025 + z^2/400) / (1 + z^2/10).
  z = 1.959963984540054
  half = z * math.sqrt(0.025 + z * z / 400) / (1 + z * z / 10)
  assert stats.wilson(5, 10) == pytest.approx((0.5 - half, 0.5 + half))


def test_suite_score_is_mean_over_tasks_of_median_over_prompts():
  o = stats.outcomes(
      ["a"] * 6 + ["b"] * 2, ["x", "x", "y", "y", "z", "z", "w", "w"], [0, 1, 0, 1, 0, 1, 0, 1],
      [1, 1, 0, 1, 0, 0, 1, 0])
  assert o.task_scores() == {"a": 0.5, "b": 0.5}
  assert o.score() == 0.5


def test_permutation_p_value_is_the_exact_mcnemar_test_on_one_prompt():
  # Hand case: a right on 3 examples, b wrong on all: of the 8 swap patterns, 2 keep |d| = 1.
  a, b = stats.credits_from({"p": [1, 1, 1]}), stats.credits_from({"p": [0, 0, 0]})
  r = stats.paired(a, b, n_perm=8000, seed=3)
  assert r["diff"] == 1.0
  assert stats.mcnemar_exact(3, 0) == 0.25
  assert r["p_value"] == pytest.approx(0.25, abs=0.02)
  # A larger case: 30 right-wrong against 15 wrong-right discordant pairs among 200.
  ca = np.r_[np.ones(30), np.zeros(15), np.ones(80), np.zeros(75)]
  cb = np.r_[np.zeros(30), np.ones(15), np.ones(80), np.zeros(75)]
  r = stats.paired(stats.credits_from({"p": ca}), stats.credits_from({"p": cb}), n_perm=20000,
                   seed=4)
  assert r["p_value"] == pytest.approx(stats.mcnemar_exact(30, 15), abs=0.01)
  assert r["diff"] == pytest.approx(15 / 200)
  assert r["lo"] < 15 / 200 < r["hi"] and r["lo"] > 0


def test_holm_hand_values():
  adj = stats.holm([0.01, 0.04, 0.03, np.nan])
  # sorted .01 (x3) = .03, .03 (x2) = .06, .04 (x1) = .04 -> monotone: .06
  assert adj[:3] == pytest.approx([0.03, 0.06, 0.06]) and np.isnan(adj[3])


def test_t_quantile_and_seed_interval():
  assert stats.t_quantile(0.975, 1) == pytest.approx(12.7062, abs=2e-3)
  assert stats.t_quantile(0.975, 4) == pytest.approx(2.7764, abs=1e-3)
  assert stats.t_quantile(0.975, 200) == pytest.approx(1.9719, abs=1e-3)
  s = stats.seed_interval([0.40, 0.42, 0.44])
  half = 2 * 4.302653 * 0.02 / math.sqrt(3) / 2
  assert s["mean"] == pytest.approx(0.42) and s["hi"] - s["mean"] == pytest.approx(half, rel=1e-3)
  assert math.isnan(stats.seed_interval([0.5])["lo"])


def _stub_cells(rng, n, tasks, prompts, p_a, p_b):
  """Two scorers' 0/1 credits on shared examples: example difficulty shared, then a's edge."""
  a, b = {}, {}
  rows = []
  for t in range(tasks):
    easy = rng.random(n)  # per-example difficulty, shared by both scorers and every prompt
    for p in range(prompts):  # each scorer's own noise on top
      u_a, u_b = (0.7 * easy + 0.3 * rng.random(n) for _ in range(2))
      rows.append((f"t{t}", f"p{p}", np.arange(n), (u_a < p_a).astype(float),
                   (u_b < p_b).astype(float)))
  flat = lambda k: np.concatenate([np.broadcast_to(np.asarray(r[k], object), (n,))
                                   if k < 2 else r[k] for r in rows])
  a = stats.outcomes(flat(0), flat(1), flat(2), flat(3))
  b = stats.outcomes(flat(0), flat(1), flat(2), flat(4))
  return a, b


def test_paired_test_false_positive_rate_is_near_alpha_for_identical_scorers():
  # Two scorers of the same quality (shared example difficulty, each its own noise): the
  # permutation test must fire in about 5% of data sets. At n = 200 x 2 tasks x 3 prompts the
  # statistic is fine-grained enough for the rate to sit at alpha (at n = 60 on one prompt it is
  # the exact McNemar test, conservative: about 2.5%).
  rng = np.random.default_rng(5)
  trials = 300
  fired = sum(stats.paired(*_stub_cells(rng, 200, 2, 3, 0.5, 0.5), n_boot=10, n_perm=199,
                           seed=trial)["p_value"] <= 0.05 for trial in range(trials))
  # fired ~ Binomial(300, .05): mean 15, sd 3.8; [4, 27] is +-3 sd.
  assert 4 <= fired <= 27, fired


def test_paired_test_detects_a_known_difference_at_its_power():
  # a is right on 5 more points of examples than b (the same examples, the same difficulty): at
  # 2 tasks x 150 examples x 3 prompts the paired test's power at alpha = .05 measured 1.0 over 200
  # simulated data sets; require it in >= 90% of 30 (and an interval above 0).
  rng = np.random.default_rng(6)
  hits = 0
  for trial in range(30):
    a, b = _stub_cells(rng, 150, 2, 3, 0.55, 0.5)
    r = stats.paired(a, b, n_boot=200, n_perm=199, seed=trial)
    hits += r["p_value"] <= 0.05 and r["lo"] > 0
  assert hits >= 27
  # Two identical scorers: difference exactly 0, p = 1.
  r = stats.paired(a, a, n_boot=50, n_perm=99)
  assert r["diff"] == 0 and r["p_value"] == 1.0 and r["lo"] == r["hi"] == 0


def test_align_refuses_different_texts_and_keeps_shared_examples():
  a = stats.outcomes(["t"] * 3, ["p"] * 3, [0, 1, 2], [1, 0, 1], key=["k0", "k1", "k2"])
  b = stats.outcomes(["t"] * 2, ["p"] * 2, [1, 2], [1, 1], key=["k1", "k2"])
  a2, b2 = stats.align(a, b)
  assert list(a2.ids[0]) == [1, 2] and a2.score() == 0.5 and b2.score() == 1.0
  c = stats.outcomes(["t"] * 2, ["p"] * 2, [1, 2], [1, 1], key=["k1", "other"])
  with pytest.raises(ValueError, match="different texts"):
    stats.align(a, c)
  with pytest.raises(ValueError, match="twice"):
    stats.outcomes(["t", "t"], ["p", "p"], [0, 0], [1, 0])


def test_mode_share():
  assert stats.mode_share([0, 0, 0, 1]) == 0.75 and math.isnan(stats.mode_share([]))
