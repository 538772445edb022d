"""A two-cell tiny grid end to end (CD:FLM and ED:MLM, plus a broken cell), run twice, and the
comparison notebook executed on its output."""

import fcntl
import io
import json
import os
import pathlib
import shutil

import gin
import nbclient
import nbformat
import pandas as pd
import pytest

from experiments import grid, grid_spec, results

pytestmark = pytest.mark.slow

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOK = REPO_ROOT / "notebooks" / "zero_shot_vs_mtf.ipynb"

_GRID = """
import experiments.grid_spec
GRID_DIR = '{out}'
experiments.grid_spec.grid_definition.name = 'two_cell'
experiments.grid_spec.grid_definition.gin_files = ['gin_configs/data/embedded.gin',
                                                   'gin_configs/local_tiny.gin']
experiments.grid_spec.grid_definition.bindings = [
    'experiments.train.train.log_period = 2', 'experiments.train.train.async_checkpointing = False']
experiments.grid_spec.grid_definition.eval_bindings = [
    'eval.zero_shot.evaluate_checkpoint.embedded_examples = 8']
experiments.grid_spec.grid_definition.pretrain_steps = 4
experiments.grid_spec.grid_definition.batch_size = 2
experiments.grid_spec.grid_definition.feature_lengths = {{
    'full_lm': {{'targets': 32}}, 'span_corruption': {{'inputs': 32, 'targets': 8}}}}
experiments.grid_spec.grid_definition.mtf_steps = 2
experiments.grid_spec.grid_definition.mtf_batch_size = 2
experiments.grid_spec.grid_definition.mtf_feature_lengths = {{'inputs': 48, 'targets': 16}}
experiments.grid_spec.grid_definition.mtf_bindings = [
    'objectives.multitask.mtf_options.max_examples_per_dataset = 40']
experiments.grid_spec.grid_definition.suites = ['embedded']
experiments.grid_spec.grid_definition.cells = [
    {{'name': 'CD:FLM', 'arch': 'causal_decoder', 'objective': 'full_lm'}},
    {{'name': 'ED:MLM', 'arch': 'encoder_decoder', 'objective': 'span_corruption'}},
    {{'name': 'BROKEN', 'arch': 'causal_decoder', 'objective': 'full_lm',
      'bindings': ["arch.config.TransformerConfig.activations = 'nope'"]}},
]
"""


def _status(outcome):
  return {k: v["status"] + ("/skipped" if v.get("skipped") else "")
          for k, v in outcome["status"].items()}


def _run_twice(root: pathlib.Path) -> dict:
  out = root / "out"
  gin_file = root / "two_cell.gin"
  gin_file.write_text(_GRID.format(out=out))
  g, grid_dir = grid_spec.load([str(gin_file)])
  first = grid.run_grid(g, grid_dir, log=lambda _: None)
  grid.report(g, grid_dir, first)
  shutil.copy(out / results.RESULTS_CSV, root / "first_results.csv")
  # An unfinished stage: no DONE (as after a kill); the trainer resumes from its MODEL_DIR.
  mtf_dir = out / "cells" / "cd_flm" / "mtf"
  os.remove(mtf_dir / "DONE")
  lines_before = len((mtf_dir / "metrics.jsonl").read_text().splitlines())
  second = grid.run_grid(g, grid_dir, log=lambda _: None)
  grid.report(g, grid_dir, second)
  gin.clear_config()
  return {"out": str(out), "first": _status(first), "second": _status(second),
          "errors": {k: v.get("error", "") for k, v in first["status"].items()},
          "mtf_metrics_lines": [lines_before,
                                len((mtf_dir / "metrics.jsonl").read_text().splitlines())],
          "cells": [c.name for c in g.cells]}


@pytest.fixture(scope="session")
def grid_run(tmp_path_factory):
  """Runs the grid once per test session, shared by pytest-xdist workers through a file lock."""
  run_id = os.environ.get("PYTEST_XDIST_TESTRUNUID")
  base = tmp_path_factory.getbasetemp()
  root = (base.parent / f"grid_run_{run_id}") if run_id else (base / "grid_run")
  root.mkdir(parents=True, exist_ok=True)
  with open(root / "lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    done = root / "outcome.json"
    if not done.exists():
      done.write_text(json.dumps(_run_twice(root)))
    fcntl.flock(lock, fcntl.LOCK_UN)
  outcome = json.loads(done.read_text())
  outcome["root"] = root
  return outcome


def test_grid_runs_every_stage_and_records_the_broken_cell(grid_run):
  st = grid_run["first"]
  for cell in ("CD:FLM", "ED:MLM"):
    for stage in ("pretrain", "eval_pretrain.embedded", "mtf", "eval_mtf.embedded"):
      assert st[f"{cell}/{stage}"] == "done", (cell, stage)
  assert st["BROKEN/pretrain"] == "failed"
  assert "activations = 'nope'" in grid_run["errors"]["BROKEN/pretrain"]
  assert all(st[f"BROKEN/{s}"] == "blocked" for s in ("eval_pretrain.embedded", "mtf"))
  out = pathlib.Path(grid_run["out"])
  assert "activations" in (out / "cells" / "broken" / "pretrain" / "ERROR").read_text()
  assert not (out / "cells" / "broken" / "pretrain" / "DONE").exists()


def test_results_csv_has_one_row_per_cell_stage_task_prompt(grid_run):
  out = pathlib.Path(grid_run["out"])
  df = pd.read_csv(out / results.RESULTS_CSV)
  assert list(df.columns) == [c for c in results.COLUMNS if c != "seed"]  # a grid without seeds
  assert set(df.eval_dir) == {f"cells/{slug}/eval_{stage}/embedded" for slug in ("cd_flm", "ed_mlm")
                              for stage in ("pretrain", "mtf")}
  expected = 0
  for cell, slug in (("CD:FLM", "cd_flm"), ("ED:MLM", "ed_mlm")):
    for stage, phase, step in (("pretrain", "zero_shot", 4), ("mtf", "post_mtf", 6)):
      rj = json.loads((out / "cells" / slug / f"eval_{stage}" / "embedded" /
                       "results.json").read_text())
      rows = df[(df.cell == cell) & (df.stage == stage)]
      n_prompts = sum(len(t["prompts"]) for t in rj["tasks"].values())
      assert len(rows) == n_prompts > 0
      assert set(rows.phase) == {phase} and set(rows.step) == {step}
      assert set(rows.task) == set(rj["tasks"])
      for _, r in rows.iterrows():
        src = rj["tasks"][r.task]["prompts"][r.prompt]
        assert r.accuracy == pytest.approx(src["accuracy"]) and r.n == src["n"] == 8
      expected += n_prompts
  assert len(df) == expected
  assert "BROKEN" not in set(df.cell)


def test_second_run_skips_finished_stages_and_resumes_the_unfinished_one(grid_run):
  first, second = grid_run["first"], grid_run["second"]
  for key, status in first.items():
    if key == "CD:FLM/mtf":
      assert second[key] == "done"  # re-run, not skipped
    elif status == "done":
      assert second[key] == "done/skipped", key
    else:
      assert second[key] == status, key
  # The trainer found the MTF checkpoint at its final step: nothing was trained again.
  before, after = grid_run["mtf_metrics_lines"]
  assert after == before
  out = pathlib.Path(grid_run["out"])
  pd.testing.assert_frame_equal(pd.read_csv(grid_run["root"] / "first_results.csv"),
                                pd.read_csv(out / results.RESULTS_CSV))


def test_summary_table_matches_eval_aggregates(grid_run):
  out = pathlib.Path(grid_run["out"])
  table = pd.read_csv(out / results.SUMMARY_CSV, index_col="cell")
  for cell, slug in (("CD:FLM", "cd_flm"), ("ED:MLM", "ed_mlm")):
    for stage, col in (("pretrain", "embedded zero-shot"), ("mtf", "embedded post-MTF")):
      rj = json.loads((out / "cells" / slug / f"eval_{stage}" / "embedded" /
                       "results.json").read_text())
      assert table.loc[cell, col] == pytest.approx(
          100 * rj["aggregate"]["mean_of_medians"], abs=0.006)
  assert (out / results.SUMMARY_PNG).stat().st_size > 1000
  md = (out / results.SUMMARY_MD).read_text()
  assert "| CD:FLM |" in md and "Examples per prompt (n)" in md and "BROKEN/pretrain" in md


def test_notebook_runs_and_shows_the_results_csv_aggregates(grid_run, monkeypatch):
  monkeypatch.setenv("GRID_DIR", grid_run["out"])
  nb = nbformat.read(NOTEBOOK, as_version=4)
  nb.cells.append(nbformat.v4.new_code_cell("print(table.to_json(orient='split'))"))
  nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                          resources={"metadata": {"path": str(REPO_ROOT)}}).execute()
  shown = pd.read_json(io.StringIO(nb.cells[-1].outputs[0]["text"]), orient="split")
  df = pd.read_csv(pathlib.Path(grid_run["out"]) / results.RESULTS_CSV)
  med = df.groupby(["cell", "phase", "task"])["accuracy"].median()
  by_hand = med.groupby(["cell", "phase"]).mean() * 100
  for cell in ("CD:FLM", "ED:MLM"):
    assert shown.loc[cell, "embedded zero-shot"] == pytest.approx(
        by_hand[(cell, "zero_shot")], abs=0.006)
    assert shown.loc[cell, "embedded post-MTF"] == pytest.approx(
        by_hand[(cell, "post_mtf")], abs=0.006)
  assert "random baseline" in shown.index


def test_every_evaluation_keeps_records_and_the_summary_has_intervals_and_findings(grid_run):
  out = pathlib.Path(grid_run["out"])
  for slug in ("cd_flm", "ed_mlm"):
    for stage in ("pretrain", "mtf"):
      assert (out / "cells" / slug / f"eval_{stage}" / "embedded" / "examples.jsonl.gz").is_file()
  intervals = pd.read_csv(out / results.INTERVALS_CSV)
  assert intervals["records"].all() and (intervals["lo"] <= intervals["score"]).all()
  found = pd.read_csv(out / results.FINDINGS_CSV).set_index("comparison")
  assert {"CD:FLM vs ED:MLM", "ED:MLM vs CD:FLM"} <= set(found.index)
  assert found["p_holm"].notna().all()
  assert "## Findings" in (out / results.SUMMARY_MD).read_text()


def test_every_evaluation_measures_the_same_heldout_continuation_windows(grid_run):
  out = pathlib.Path(grid_run["out"])
  c = pd.read_csv(out / results.CONTINUATION_CSV)
  assert sorted(zip(c.cell, c.stage)) == [(cell, stage) for cell in ("CD:FLM", "ED:MLM")
                                          for stage in ("mtf", "pretrain")]
  assert c["ids_sha256"].nunique() == 1 and (c["windows"] == 256).all()
  assert ((c.ci95_lo < c.nats_per_token) & (c.nats_per_token < c.ci95_hi)).all()
  rj = json.loads((out / "cells" / "ed_mlm" / "eval_mtf" / "embedded" / "results.json").read_text())
  row = c[(c.cell == "ED:MLM") & (c.stage == "mtf")].iloc[0]
  assert row.nats_per_token == pytest.approx(rj["continuation_loss"]["nats_per_token"])
  md = (out / results.SUMMARY_MD).read_text()
  assert "## Held-out continuation loss" in md and "WARNING" not in md
