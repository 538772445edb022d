"""Grid seeds: a seed changes a stage's initial parameters and data order, the same seed reproduces
them bitwise; the report gives the seed column, intervals over seeds and the continuation table."""

import gin
import jax
import numpy as np
import pandas as pd
import pytest

from experiments import grid, grid_plan, grid_spec, loop, results
from experiments import data as data_lib
from tests import fake_grid

CD_FLM = {"name": "CD:FLM", "arch": "causal_decoder", "objective": "full_lm"}


def _grid(seeds, **kw):
  args = dict(name="seeds", cells=[CD_FLM], gin_files=["gin_configs/data/embedded.gin",
                                                      "gin_configs/local_tiny.gin"],
              batch_size=2, pretrain_steps=4, mtf_steps=2,
              feature_lengths={"full_lm": {"targets": 32}},
              mtf_feature_lengths={"inputs": 16, "targets": 8}, mtf_batch_size=2, seeds=seeds,
              suites=["embedded"])
  args.update(kw)
  return grid_spec.grid_definition(**args)


class _Stop(Exception):
  pass


_REAL_STATE, _REAL_DATA = loop._initial_state, data_lib.TrainData


def _start(stage, monkeypatch) -> dict:
  """The pretraining stage's initial parameters and first two batches, as the grid's trainer
  builds them (the stage's own gin, through experiments.train), stopped before the first step."""
  got = {}
  real_state, real_data = _REAL_STATE, _REAL_DATA

  def initial_state(*args, **kw):
    out = real_state(*args, **kw)
    got["params"] = jax.device_get(out[0].params)
    return out

  def train_data(*args, **kw):
    it = real_data(*args, **kw)
    got["batches"] = [next(it) for _ in range(2)]
    raise _Stop

  with monkeypatch.context() as m:
    m.setattr(loop, "_initial_state", initial_state)
    m.setattr(data_lib, "TrainData", train_data)
    try:
      with pytest.raises(_Stop):
        grid.RUNNERS["train"](stage.gin_files, grid.absolute_paths(stage.bindings))
    finally:
      gin.clear_config()
  return got


def _same(a, b) -> list[bool]:
  return [np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))]


def test_seeds_change_init_and_data_order_and_the_same_seed_reproduces_bitwise(
    tmp_path, monkeypatch):
  first = {s.seed: s for s in grid_plan.plan(_grid([0, 1]), str(tmp_path / "a"))
           if s.id == "pretrain"}
  again = [s for s in grid_plan.plan(_grid([0]), str(tmp_path / "b")) if s.id == "pretrain"][0]
  s0, s1, s0_again = (_start(s, monkeypatch) for s in (first[0], first[1], again))
  assert all(_same(s0["params"], s0_again["params"]))
  assert all(np.array_equal(x[k], y[k]) for x, y in zip(s0["batches"], s0_again["batches"])
             for k in x)
  # Randomly initialised leaves differ (layer-norm scales start at one whatever the seed).
  random_leaves = [np.std(x) > 0 for x in jax.tree.leaves(s0["params"])]
  differ = [not same for same in _same(s0["params"], s1["params"])]
  assert any(random_leaves) and differ == random_leaves
  assert not np.array_equal(s0["batches"][0]["decoder_target_tokens"],
                            s1["batches"][0]["decoder_target_tokens"])


def _fake_eval(stage, rng, nats, ids="a" * 64):
  """A finished evaluation stage: results.json with a continuation block, records, DONE."""
  res, book = fake_grid._cell_eval(rng, 0.6, 20, {t: rng.random(20) for t in fake_grid.TASKS})
  res["continuation_loss"] = {"nats_per_token": nats, "stderr": 0.01,
                              "ci95": [nats - 0.0196, nats + 0.0196], "tokens": 256,
                              "windows": 4, "per_window": [nats] * 4, "ids_sha256": ids}
  grid._write_json(f"{stage.dir}/results.json", res)
  book.write(stage.dir)
  grid._write_json(f"{stage.dir}/{grid_plan.DONE}", {})


def test_report_gives_seed_rows_intervals_over_seeds_and_the_continuation_table(tmp_path):
  g = _grid([0, 1, 2], suites=["embedded", "blimp"])
  grid_dir = str(tmp_path)
  stages = grid_plan.plan(g, grid_dir)
  rng = np.random.default_rng(0)
  for s in stages:
    if s.kind == "eval":
      nats = 4.0 + 0.1 * s.seed - (1.0 if s.trained == "mtf" else 0.0)
      _fake_eval(s, rng, nats, ids="b" * 64 if (s.seed, s.trained) == (2, "mtf") else "a" * 64)
  text = grid.report(g, grid_dir)
  df = pd.read_csv(tmp_path / results.RESULTS_CSV)
  assert sorted(df["seed"].unique()) == [0, 1, 2]
  assert set(df["eval_dir"]) == {f"cells/cd_flm/seed_{k}/eval_{t}/{su}" for k in (0, 1, 2)
                                 for t in ("pretrain", "mtf") for su in ("embedded", "blimp")}
  c = pd.read_csv(tmp_path / results.CONTINUATION_CSV)
  assert len(c) == 3 * 2 and set(c["suite"]) == {"embedded"}  # the first suite that has one
  assert list(c.columns[:8]) == ["grid", "cell", "arch", "objective", "stage", "phase", "step",
                                 "seed"]
  md = (tmp_path / results.SUMMARY_MD).read_text()
  assert "### Over seeds (mean, Student t 95% interval)" in md and "| 3 |" in md
  assert "## Held-out continuation loss" in md
  row = next(line for line in md.splitlines() if line.startswith("| CD:FLM | pretrain | "))
  assert "| 4.100 | [" in row and "| 3 | 0: 4.000, 1: 4.100, 2: 4.200 |" in row
  assert "WARNING: the evaluations scored different held-out windows" in md
  assert "## Held-out continuation loss" in text and "mean over seeds 0, 1, 2" in text


def test_one_seed_grid_reports_the_interval_over_windows_and_no_seed_column(tmp_path):
  g = _grid(None)
  stages = grid_plan.plan(g, str(tmp_path))
  rng = np.random.default_rng(1)
  for s in stages:
    if s.kind == "eval":
      _fake_eval(s, rng, 3.5)
  grid.report(g, str(tmp_path))
  assert "seed" not in pd.read_csv(tmp_path / results.RESULTS_CSV).columns
  c = pd.read_csv(tmp_path / results.CONTINUATION_CSV)
  assert "seed" not in c.columns and len(c) == 2
  md = (tmp_path / results.SUMMARY_MD).read_text()
  assert "| CD:FLM | pretrain | zero_shot | 4 | 3.500 | [3.480, 3.520] | 4 | 256 |" in md
  assert "Every evaluation scored the same 4 held-out windows" in md and "WARNING" not in md
