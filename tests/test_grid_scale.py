"""The scaling axis of a grid: cells expanded over sizes and token budgets, steps from tokens per
parameter, FLOPs per point against arch.accounting, resume and shards. No training here."""

import gin
import numpy as np
import pandas as pd
import pytest

from arch import accounting
from experiments import grid, grid_plan, grid_scale, grid_spec
from experiments.grid_spec import GridError
from experiments.runtime import gin_utils

_LENGTHS = {"full_lm": {"targets": 32}, "prefix_lm": {"inputs": 16, "targets": 16},
            "span_corruption": {"inputs": 24, "targets": 8}}
_STAGES = ["pretrain", "eval"]
CELLS = [{"name": "CD:FLM", "arch": "causal_decoder", "objective": "full_lm", "stages": _STAGES},
         {"name": "ND:PLM", "arch": "non_causal_decoder", "objective": "prefix_lm",
          "stages": _STAGES},
         {"name": "ED:MLM", "arch": "encoder_decoder", "objective": "span_corruption",
          "stages": _STAGES}]
W48 = ["arch.config.TransformerConfig.emb_dim = 48", "arch.config.TransformerConfig.mlp_dim = 96",
       "arch.config.TransformerConfig.num_layers = 3",
       "arch.config.TransformerConfig.num_encoder_layers = 3",
       "arch.config.TransformerConfig.num_decoder_layers = 3"]


def _grid(cells=CELLS, **kw):
  args = dict(name="scale", cells=cells, gin_files=["gin_configs/data/embedded.gin",
                                                    "gin_configs/local_tiny.gin"],
              batch_size=4, pretrain_steps=10, mtf_steps=2, feature_lengths=_LENGTHS,
              mtf_feature_lengths={"inputs": 16, "targets": 8}, mtf_batch_size=2,
              sizes=["tiny", {"name": "w48", "bindings": W48}], tokens_per_param=[2, 4])
  args.update(kw)
  return grid_spec.grid_definition(**args)


def _accounting(arch: str, size_files, size_bindings, lengths) -> dict:
  """arch.accounting's numbers for an arch + size stack, built without the grid's code."""
  gin_utils.parse_gin([f"gin_configs/arch/{arch}.gin", *size_files],
                      [*size_bindings, "VOCAB_SIZE = 4100",
                       "arch.accounting.account_from_gin.model = %MODEL"],
                      finalize=False, defaults=accounting.MODEL_ONLY_DEFAULTS)
  try:
    return accounting.account_from_gin(task_feature_lengths=lengths)
  finally:
    gin.clear_config()


@pytest.fixture(scope="module")
def expanded():
  g = grid_scale.expand(_grid())
  return g, grid_scale.points(g, grid_plan.plan(g, "unused"))


def test_each_cell_runs_at_every_size_and_budget_with_the_same_steps(expanded):
  g, _ = expanded
  assert len(g.cells) == 3 * 2 * 2
  assert g.cells[0].name == "CD:FLM@tiny/2tpp" and g.cells[0].slug == "cd_flm_tiny_2tpp"
  assert [c.name for c in g.cells[-3:]] == ["CD:FLM@w48/4tpp", "ND:PLM@w48/4tpp",
                                            "ED:MLM@w48/4tpp"]
  ref = {size: _accounting("causal_decoder", files, binds, _LENGTHS["full_lm"])
         for size, files, binds in (("tiny", ["gin_configs/sizes/tiny.gin"], []),
                                    # local_tiny.gin's tiny size, then the inline bindings
                                    ("w48", ["gin_configs/sizes/tiny.gin"], W48))}
  for c in g.cells:
    # Compute matching as the paper: every cell of a point trains the reference model's steps.
    tpp = float(c.budget.removesuffix("tpp"))
    assert c.steps == round(tpp * ref[c.size]["non_embedding_params"] / (4 * 32)), c.name
    assert c.base in {"CD:FLM", "ND:PLM", "ED:MLM"}
  stages = grid_plan.plan(g, "x")
  assert all(s.batch_size * s.row == 4 * 32 for s in stages if s.kind == "train")


def test_flops_per_point_match_arch_accounting_for_every_architecture(expanded):
  g, points = expanded
  assert len(points) == 12 and set(points["stage"]) == {"pretrain"}
  for _, p in points.iterrows():
    files = ["gin_configs/sizes/tiny.gin"]
    binds = [] if p["size"] == "tiny" else W48
    acc = _accounting(p["arch"], files, binds, _LENGTHS[p["objective"]])
    examples = g.cell(p["cell"]).steps * 4
    assert p["params"] == acc["params"]
    assert p["non_embedding_params"] == acc["non_embedding_params"]
    assert p["flops"] == pytest.approx(acc["train_flops_per_example"] * examples, rel=1e-9)
    assert p["paper_flops"] == pytest.approx(acc["paper_flops_per_example"] * examples, rel=1e-9)
    assert p["tokens"] == examples * 32
  # The encoder-decoder has both stacks' parameters: more parameters at the same width.
  tiny = points[points["cell"].str.endswith("@tiny/2tpp")].set_index("base")
  assert tiny.loc["ED:MLM", "non_embedding_params"] > tiny.loc["CD:FLM", "non_embedding_params"]


def test_non_embedding_params_leave_out_the_vocabulary_matrices():
  acc = _accounting("causal_decoder", ["gin_configs/sizes/tiny.gin"], [], {"targets": 32})
  # tiny: emb 32, tied embedding of the padded 4,100-row vocabulary.
  assert acc["params"] - acc["non_embedding_params"] == 4224 * 32


def test_steps_budgets_and_a_grid_without_sizes():
  g = grid_scale.expand(_grid(sizes=[{"name": "a", "gin_files": ["gin_configs/sizes/tiny.gin"],
                                      "steps": 7}, {"name": "b", "bindings": W48}],
                              tokens_per_param=None))
  assert {c.name: c.steps for c in g.cells if c.base == "CD:FLM"} == {"CD:FLM@a/7steps": 7,
                                                                     "CD:FLM@b/10steps": 10}
  plain = _grid(sizes=None, tokens_per_param=None)
  assert grid_scale.expand(plain) is plain and "sizes" not in plain.definition()
  with pytest.raises(GridError, match="must be expanded first"):
    grid_plan.plan(_grid(), "x")


@pytest.mark.parametrize("kw, match", [
    (dict(sizes=["huge"]), r"sizes\[0\]: gin file 'gin_configs/sizes/huge.gin' not found "
                           r"\(sizes in gin_configs/sizes/: .*small, tiny, xl\)"),
    (dict(sizes=None), r"tokens_per_param needs .*sizes"),
    (dict(sizes=["tiny", "tiny"]), r"size names must be unique"),
    (dict(sizes=[{"name": "a b", "bindings": W48}]), r"'name' must be a short name"),
    (dict(sizes=[{"name": "a"}]), r"needs 'gin_files' or 'bindings'"),
    (dict(sizes=[{"name": "a", "bindings": W48, "step": 3}]), r"unknown key\(s\) \['step'\]"),
    (dict(sizes=[{"name": "a", "bindings": W48, "steps": 3}]), r"give the budget one way"),
    (dict(tokens_per_param=[0]), r"tokens_per_param must be a non-empty list of distinct positive"),
    (dict(tokens_per_param=[2, 2]), r"tokens_per_param must be"),
])
def test_bad_sizes_and_budgets_name_the_setting(kw, match):
  with pytest.raises(GridError, match=match):
    _grid(**kw)


def _stub_runners(monkeypatch, calls, stop_at=None):
  def train(files, bindings):
    calls.append("train")
    if stop_at is not None and len(calls) == stop_at:
      raise KeyboardInterrupt
    return {"metrics": {}}

  def evaluate(files, bindings):
    calls.append("eval")
    return {"suite": "embedded", "tasks": {}, "continuation_loss": {
        "nats_per_token": 5.0, "stderr": 0.01, "ci95": [4.98, 5.02], "tokens": 10, "windows": 2}}

  monkeypatch.setitem(grid.RUNNERS, "train", train)
  monkeypatch.setitem(grid.RUNNERS, "eval", evaluate)


@pytest.mark.slow
def test_a_scaling_grid_resumes_and_shards_as_the_grid_does(tmp_path, monkeypatch):
  g = grid_scale.expand(_grid(cells=CELLS[:2], tokens_per_param=[2]))
  out = str(tmp_path / "g")
  calls = []
  _stub_runners(monkeypatch, calls, stop_at=3)
  with pytest.raises(KeyboardInterrupt):
    grid.run_grid(g, out, log=lambda _: None)
  points = pd.read_csv(tmp_path / "g" / grid_scale.POINTS_CSV)
  assert sorted(points["cell"]) == sorted(c.name for c in g.cells)
  calls.clear()
  _stub_runners(monkeypatch, calls)
  # Shard 1 of 2 takes ND:PLM's points only; shard 0 the rest (the first two stages were done).
  one = grid.run_grid(g, out, log=lambda _: None, shard=(1, 2))
  assert {s.cell.base for s in one["stages"]} == {"ND:PLM"} and not one["failed"]
  zero = grid.run_grid(g, out, log=lambda _: None, shard=(0, 2))
  skipped = [k for k, v in zero["status"].items() if v.get("skipped")]
  assert skipped == ["CD:FLM@tiny/2tpp/pretrain", "CD:FLM@tiny/2tpp/eval_pretrain.embedded"]
  # Three pretrainings left (ND:PLM@tiny, interrupted, reran); none ran twice.
  assert calls.count("train") == 3
  again = grid.run_grid(g, out, log=lambda _: None)
  assert all(v.get("skipped") for v in again["status"].values()) and calls.count("train") == 3
  # experiments.scaling reads the finished evaluations before the grid writes its CSVs.
  from experiments import scaling  # pylint: disable=g-import-not-at-top
  assert sorted(scaling.load_points(out)["cell"]) == sorted(c.name for c in g.cells)
  grid.report(g, out, zero, every_stage=True)
  cont = pd.read_csv(tmp_path / "g" / "continuation.csv")
  assert sorted(cont["cell"]) == sorted(c.name for c in g.cells)


@pytest.mark.parametrize("text", ["2/2", "1", "a/b", "-1/2"])
def test_bad_shard_is_refused(text):
  with pytest.raises(GridError, match="--shard must be K/N"):
    grid.parse_shard(text)


def test_shards_partition_the_cells_and_keep_adaptations_with_their_source():
  cells = [{"name": "CD:FLM", "arch": "causal_decoder", "objective": "full_lm"},
           {"name": "ND:MLM", "arch": "non_causal_decoder", "objective": "span_corruption"},
           {"name": "CD:FLM->ND:MLM", "arch": "non_causal_decoder",
            "objective": "span_corruption", "source": "CD:FLM", "steps": 3}]
  g = _grid(cells=cells, sizes=None, tokens_per_param=None)
  stages = grid_plan.plan(g, "x")
  parts = [grid.shard_stages(g, stages, (k, 2)) for k in (0, 1)]
  assert sorted(s.key for p in parts for s in p) == sorted(s.key for s in stages)
  assert {s.cell.name for s in parts[0]} == {"CD:FLM", "CD:FLM->ND:MLM"}


@pytest.mark.slow
def test_the_embedded_scaling_grid_spans_the_compute_it_claims():
  # gin_configs/grids/embedded_scaling.gin: the six paper cells at >= 4 sizes over >= 1.5 decades
  # of training compute, compute-matched (same steps and tokens per step at every point).
  g, grid_dir = grid_spec.load(["gin_configs/grids/embedded_scaling.gin"])
  assert grid_dir == "runs/embedded_scaling"
  bases = ["CD:FLM", "CD:MLM", "ND:PLM", "ND:MLM", "ED:PLM", "ED:MLM"]
  assert list(dict.fromkeys(c.base for c in g.cells)) == bases and len(g.sizes) >= 4
  stages = grid_plan.plan(g, "x")
  assert {s.batch_size * s.row for s in stages if s.kind == "train"} == {1280}
  for size in g.sizes:
    assert len({c.steps for c in g.cells if c.size == size.name}) == 1
  points = grid_scale.points(g, stages)
  assert len(points) == 6 * len(g.sizes)
  assert np.log10(points["flops"].max() / points["flops"].min()) >= 1.5
  for _, p in points.groupby("base"):
    assert np.log10(p["flops"].max() / p["flops"].min()) >= 1.5
