"""Intervals, baselines, degenerate-task flags and the paper's comparisons on stub-scorer grids."""

import math

import pandas as pd
import pytest

from experiments import evidence, results
from tests import fake_grid


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
  root = fake_grid.build(tmp_path_factory.mktemp("fake_grid"))
  df = results.read_csv(str(root))
  ev = evidence.evidence(df, str(root), n_boot=300)
  return root, df, ev


def test_constant_answer_stub_is_flagged_and_scores_the_majority_baseline(grid):
  _, _, ev = grid
  t = ev["tasks"]
  const = t[t.cell == "CONST"]
  assert const.constant_answer.all() and (const.position_share == 1).all()
  assert not t[t.cell != "CONST"].constant_answer.any()
  # Task "two": 3 of 4 golds are option 0, so always answering 0 scores the majority baseline.
  two = const[const.task == "two"].iloc[0]
  assert two.majority_baseline == 0.75 and two.random_baseline == 0.5 and two.score == 0.75
  four = const[const.task == "four"].iloc[0]
  assert four.majority_baseline == 0.25 and four.score == 0.25
  s = ev["suites"].set_index(["cell", "phase"])
  assert s.loc[("CONST", "zero_shot"), "majority_baseline"] == pytest.approx((0.75 + 0.25) / 2)
  assert "two (constant answer)" in s.loc[("CONST", "zero_shot"), "flagged"]


def test_intervals_contain_the_scores_of_results_csv(grid):
  _, df, ev = grid
  s = ev["suites"]
  by_hand = df.groupby(["cell", "phase", "task"])["accuracy"].median().groupby(
      ["cell", "phase"]).mean()
  for r in s.itertuples():
    assert r.score == pytest.approx(by_hand[(r.cell, r.phase)])
    assert r.lo <= r.score <= r.hi and r.hi - r.lo < 0.3
    assert r.n == 2 * 60


def test_task_spread_inside_noise_is_flagged(tmp_path):
  same = {c: (0.6, 0.6) for c in fake_grid.QUALITY}
  same["CONST"] = (0.6, 0.6)  # no constant answerer here: every cell the same scorer quality
  root = fake_grid.build(tmp_path, quality=same, seed=3)
  ev = evidence.evidence(results.read_csv(str(root)), str(root), n_boot=300)
  assert ev["tasks"].within_noise.all()
  assert "within noise" in ev["suites"].flagged.iloc[0]


def test_spread_outside_noise_is_not_flagged(grid):
  _, _, ev = grid
  t = ev["tasks"]
  assert not t[t.phase == "post_mtf"].within_noise.any()  # 37.5 to 92.5 over the cells


def test_findings_are_paired_tests_worded_from_the_data(grid, tmp_path):
  root, _, ev = grid
  found = evidence.findings(ev, evidence.grid_cells(str(root), None), n_boot=300, n_perm=499)
  pairs = set(zip(found.a, found.b, found.phase))
  assert ("CD:FLM", "ND:PLM", "zero_shot") in pairs and ("ED:MLM", "CD:FLM", "post_mtf") in pairs
  assert ("CD:FLM->ND:MLM", "CD:FLM", "post_mtf") in pairs  # adaptation vs its source
  assert not any("ED:PLM" in p for p in found.comparison)  # not in this grid: not invented
  assert (found.agrees == "yes").all() and (found.p_holm <= 0.05).all()
  assert (found.p_holm >= found.p_value).all()
  # The same comparisons on a grid where the data say the opposite: the words follow the data.
  flipped = dict(fake_grid.QUALITY, **{"ND:PLM": (0.9, 0.6), "CD:FLM": (0.4, 0.95)})
  other = fake_grid.build(tmp_path / "flipped", quality=flipped)
  ev2 = evidence.evidence(results.read_csv(str(other)), str(other), n_boot=200)
  f2 = evidence.findings(ev2, evidence.grid_cells(str(other), None), n_boot=200,
                         n_perm=499).set_index("comparison")
  row = f2.loc["CD:FLM vs ND:PLM"]
  assert row["diff"] < 0 and row["agrees"] == "no" and row["hi"] < 0
  assert "points below ND:PLM" in row["reading"] and "disagrees with" in row["reading"]


def test_seeds_give_a_t_interval_and_pooled_comparisons(tmp_path):
  frames = []
  for s in (0, 1, 2):
    root = fake_grid.build(tmp_path / f"s{s}", seed=s)
    d = results.read_csv(str(root))
    frames.append(d.assign(seed=s, eval_dir=f"s{s}/" + d["eval_dir"]))
  df = pd.concat(frames, ignore_index=True)
  ev = evidence.evidence(df, str(tmp_path), n_boot=200)
  seeds = ev["seeds"].set_index(["cell", "phase"])
  row = seeds.loc[("CD:FLM", "zero_shot")]
  assert row.n_seeds == 3 and row.lo < row["mean"] < row.hi
  assert len(ev["suites"]) == 3 * len(seeds)
  found = evidence.findings(ev, evidence.grid_cells(str(tmp_path / "s0"), None), n_boot=100,
                            n_perm=199)
  assert found.n.iloc[0] == 120 and not math.isnan(found["diff"].iloc[0])


def test_summary_md_and_csvs(grid, tmp_path):
  root = fake_grid.build(tmp_path)
  df = results.read_csv(str(root))
  md = results.write_summary(df, str(root), [c[0] for c in fake_grid.CELLS])
  assert "## Scores with 95% intervals" in md and "## Findings" in md and "Holm" in md
  assert "| CONST | zero_shot | fake | 50.0 |" in md  # (0.75 + 0.25) / 2
  for name in (results.INTERVALS_CSV, results.TASKS_CSV, results.FINDINGS_CSV):
    assert len(pd.read_csv(root / name))
  assert (root / results.SUMMARY_PNG).stat().st_size > 1000


def test_records_are_found_by_the_grid_layout_without_an_eval_dir_column(tmp_path):
  root = fake_grid.build(tmp_path, eval_dirs=False)
  df = results.read_csv(str(root))
  assert df["eval_dir"].isna().all()
  recs = evidence.load_records(df, str(root))
  assert len(recs) == 2 * len(fake_grid.CELLS)
