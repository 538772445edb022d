"""Grid definition, stage plan, launch commands, fingerprint and dry run: no training here."""

import dataclasses
import json
import shlex

import gin
import pytest

from experiments import grid, grid_plan, grid_spec, testing
from experiments.runtime import gin_utils
from experiments.grid_spec import GridError

_LENGTHS = {"full_lm": {"targets": 32}, "prefix_lm": {"inputs": 32, "targets": 32},
            "span_corruption": {"inputs": 32, "targets": 8}, "ul2": {"inputs": 32, "targets": 31}}


def _grid(cells, **kw):
  args = dict(name="t", cells=cells, gin_files=["gin_configs/sizes/tiny.gin"], batch_size=2,
              pretrain_steps=10, mtf_steps=4, feature_lengths=_LENGTHS,
              mtf_feature_lengths={"inputs": 16, "targets": 8}, mtf_batch_size=2)
  args.update(kw)
  return grid_spec.grid_definition(**args)


CD_FLM = {"name": "CD:FLM", "arch": "causal_decoder", "objective": "full_lm"}


@pytest.mark.parametrize("cell, match", [
    ({"name": "X", "arch": "rnn", "objective": "full_lm"}, r"'rnn'.*causal_decoder"),
    ({"name": "X", "arch": "causal_decoder", "objective": "mlm"}, r"'mlm'.*span_corruption"),
    ({"name": "X", "arch": "causal_decoder", "objective": "full_lm",
      "stages": ["pretrain", "evaluate"]}, r"unknown stage\(s\) \['evaluate'\]"),
    ({"name": "X", "arch": "causal_decoder", "objective": "full_lm",
      "stages": ["eval", "pretrain"]}, r"must start with 'pretrain'"),
    ({"name": "X", "arch": "causal_decoder", "objective": "full_lm",
      "stages": ["pretrain", "eval", "eval"]}, r"two 'eval' stages"),
    ({"name": "X", "arch": "encoder_decoder", "objective": "full_lm"}, r"full_lm is undefined on architecture encoder_decoder; objectives defined on it: prefix_lm"),
    ({"name": "X", "arch": "causal_decoder", "objective": "full_lm", "sauce": 1},
     r"unknown key\(s\) \['sauce'\]"),
    ({"name": "X", "arch": "non_causal_decoder", "objective": "span_corruption",
      "source": "CD:FLM"}, r"needs 'steps'"),
    ({"name": "X", "arch": "non_causal_decoder", "objective": "span_corruption",
      "source": "CD:GONE", "steps": 3}, r"source cell 'CD:GONE', which is not in the grid"),
])
def test_bad_cells_fail_before_any_training(cell, match):
  with pytest.raises(GridError, match=match):
    _grid([CD_FLM, cell])


def test_bad_grid_settings():
  with pytest.raises(GridError, match="unique"):
    _grid([CD_FLM, dict(CD_FLM)])
  with pytest.raises(GridError, match=r"no entry for objective 'prefix_lm'"):
    _grid([{"name": "ND:PLM", "arch": "non_causal_decoder", "objective": "prefix_lm"}],
          feature_lengths={"full_lm": {"targets": 8}})
  with pytest.raises(GridError, match=r"pretrain_steps must be a positive integer"):
    _grid([CD_FLM], pretrain_steps=0)
  with pytest.raises(GridError, match=r"batch_size\['full_lm'\]"):
    _grid([CD_FLM], batch_size={"prefix_lm": 4})


def test_plan_chains_absolute_steps_and_checkpoints(tmp_path):
  g = _grid([{"name": "CD:FLM->ND:MLM", "arch": "non_causal_decoder",
              "objective": "span_corruption", "source": "CD:FLM", "steps": 5}, CD_FLM],
            suites=["embedded", "blimp"], local_data_dir="data")
  assert [c.name for c in g.cells] == ["CD:FLM", "CD:FLM->ND:MLM"]  # sources first
  stages = {s.key: s for s in grid_plan.plan(g, str(tmp_path))}
  b = lambda key: dict(x.split(" = ", 1) for x in stages[key].bindings)
  assert stages["CD:FLM/pretrain"].end_step == 10
  assert stages["CD:FLM/mtf"].end_step == 14
  adapt = stages["CD:FLM->ND:MLM/adapt"]
  assert adapt.end_step == 15 and adapt.depends_on == ("CD:FLM/pretrain",)
  assert b(adapt.key)["INITIAL_CHECKPOINT_PATH"] == repr(stages["CD:FLM/pretrain"].dir)
  assert "gin_configs/runs/adapt.gin" in adapt.gin_files
  assert stages["CD:FLM->ND:MLM/mtf"].end_step == 19
  assert b("CD:FLM/mtf")["MIXTURE_OR_TASK_NAME"] == "'embedded_mtf'"
  assert "objectives.multitask.mtf_options.local_data_dir" in b("CD:FLM/mtf")
  assert "objectives.multitask.mtf_options.local_data_dir" not in b("CD:FLM/pretrain")
  assert b("CD:FLM/pretrain")["TASK_FEATURE_LENGTHS"] == "{'targets': 32}"
  ev = stages["CD:FLM->ND:MLM/eval_mtf.blimp"]
  assert b(ev.key)["CHECKPOINT_PATH"] == repr(stages["CD:FLM->ND:MLM/mtf"].dir)
  assert ev.phase == "post_mtf" and stages["CD:FLM/eval_pretrain.embedded"].phase == "zero_shot"
  assert len(stages) == 2 * (2 + 2 * 2)


ND_ROWS = {"inputs": 32, "targets": 32, "decoder_length": 32}
ND_PLM = {"name": "ND:PLM", "arch": "non_causal_decoder", "objective": "prefix_lm",
          "batch_size": 4, "feature_lengths": ND_ROWS}
ED_PLM = {"name": "ED:PLM", "arch": "encoder_decoder", "objective": "prefix_lm"}


def test_cell_batch_and_lengths_override_the_objectives_for_pretrain_and_adapt(tmp_path):
  g = _grid([ND_PLM, ED_PLM, {"name": "ND:MLM", "arch": "non_causal_decoder",
                              "objective": "span_corruption"},
             {"name": "ND:MLM->ND:PLM", "arch": "non_causal_decoder", "objective": "prefix_lm",
              "source": "ND:MLM", "steps": 5, "batch_size": 4, "feature_lengths": ND_ROWS}])
  stages = {s.key: s for s in grid_plan.plan(g, str(tmp_path))}
  b = lambda key: dict(x.split(" = ", 1) for x in stages[key].bindings)
  for key in ("ND:PLM/pretrain", "ND:MLM->ND:PLM/adapt"):
    assert b(key)["BATCH_SIZE"] == "4"
    assert b(key)["TASK_FEATURE_LENGTHS"] == "{'decoder_length': 32, 'inputs': 32, 'targets': 32}"
    assert (stages[key].batch_size, stages[key].row) == (4, 32)  # one 32-token sequence per row
  assert stages["ND:PLM/pretrain"].tokens == 10 * 4 * 32
  # ED:PLM keeps the grid's prefix_lm entry: pairs, 32 encoder + 32 decoder positions per row.
  ed = stages["ED:PLM/pretrain"]
  assert b(ed.key)["TASK_FEATURE_LENGTHS"] == "{'inputs': 32, 'targets': 32}"
  assert (ed.batch_size, ed.row, ed.tokens) == (2, 64, 10 * 2 * 64)
  # MTF is the grid's, whatever the cell's pretraining shape.
  assert b("ND:PLM/mtf")["TASK_FEATURE_LENGTHS"] == "{'inputs': 16, 'targets': 8}"
  assert (stages["ND:PLM/mtf"].batch_size, stages["ND:PLM/mtf"].row) == (2, 24)
  # Cells without overrides keep the definition (and fingerprint) of grids written before them.
  assert "batch_size" not in g.definition()["cells"][1]
  assert g.definition()["cells"][0]["feature_lengths"] == ND_ROWS
  # An objective every cell overrides needs no grid entry.
  _grid([ND_PLM], feature_lengths={}, batch_size={})


@pytest.mark.parametrize("extra, match", [
    ({"batch_size": 0}, r"\('ND:PLM'\): 'batch_size' must be a positive integer"),
    ({"feature_lengths": {"inputs": 32}}, r"'feature_lengths' must be a dict with 'targets'"),
    ({"feature_lengths": {"targets": 32, "decoder_length": -1}},
     r"'feature_lengths'\['decoder_length'\] must be a positive integer"),
])
def test_bad_cell_overrides(extra, match):
  with pytest.raises(GridError, match=match):
    _grid([dict(ND_PLM, **extra)])


def test_print_commands_round_trip_to_the_same_gin(tmp_path):
  g = _grid([CD_FLM], bindings=["experiments.train.train.log_period = 5"])
  stages = grid_plan.plan(g, str(tmp_path / "my grid"))
  text = grid_plan.print_commands(stages)
  commands = [line.split("  # after")[0] for line in text.splitlines()
              if not line.startswith("#")]
  assert len(commands) == len(stages)
  for s, cmd in zip(stages, commands):
    argv = shlex.split(cmd)
    assert argv[:3] == ["python", "-m", grid_plan.ENTRY[s.kind]]
    files, bindings, rest = gin_utils.parse_gin_flags(argv[3:])
    assert not rest and files == list(s.gin_files) and bindings == list(s.bindings)


def test_grid_dir_of_another_definition_is_refused(tmp_path):
  g = _grid([CD_FLM])
  grid.check_grid_dir(g, str(tmp_path))
  grid.check_grid_dir(g, str(tmp_path))  # the same definition: fine
  assert json.loads((tmp_path / grid.GRID_JSON).read_text())["fingerprint"] == g.fingerprint()
  with pytest.raises(GridError, match=r"different grid definition.*pretrain_steps"):
    grid.check_grid_dir(_grid([CD_FLM], pretrain_steps=11), str(tmp_path))


def test_cli_errors_before_training(tmp_path, capsys):
  bad = tmp_path / "bad.gin"
  bad.write_text((gin_utils.REPO_ROOT / "gin_configs/grids/embedded_smoke.gin").read_text()
                 .replace("'arch': 'encoder_decoder', 'objective': 'span_corruption'}",
                          "'arch': 'transformer_xl', 'objective': 'span_corruption'}", 1))
  out = tmp_path / "out"
  assert testing.cli_exit_code(grid.main, [f"--gin_file={bad}", f"--gin.GRID_DIR='{out}'"]) == 2
  assert "transformer_xl" in capsys.readouterr().err
  assert not out.exists()
  missing = tmp_path / "missing.gin"
  missing.write_text("import experiments.grid_spec\n"
                     "experiments.grid_spec.grid_definition.name = 'x'\n")
  assert testing.cli_exit_code(grid.main, [f"--gin_file={missing}",
                                           f"--gin.GRID_DIR='{out}'"]) == 2
  assert "cells" in capsys.readouterr().err
  gin.clear_config()


def _t5_stand_in(path):
  """A SentencePiece model with T5's id layout (pad 0, EOS 1, unk 2; 32,000 pieces) whose pieces
  spell any ASCII text: stands in for cc_all.32000 (not shipped, on gs://) in gin_configs/data/c4.gin."""
  import string  # pylint: disable=g-import-not-at-top
  from sentencepiece import sentencepiece_model_pb2 as pb  # pylint: disable=g-import-not-at-top
  proto = pb.ModelProto()
  spec = proto.trainer_spec
  spec.model_type, spec.vocab_size = pb.TrainerSpec.UNIGRAM, 32_000
  spec.pad_id, spec.eos_id, spec.unk_id, spec.bos_id = 0, 1, 2, -1
  proto.normalizer_spec.name = "identity"
  proto.normalizer_spec.add_dummy_prefix = proto.normalizer_spec.escape_whitespaces = True
  kind = pb.ModelProto.SentencePiece
  for piece, t in (("<pad>", kind.CONTROL), ("</s>", kind.CONTROL), ("<unk>", kind.UNKNOWN)):
    proto.pieces.add(piece=piece, score=0.0, type=t)
  for c in ["\u2581", *(c for c in string.printable if not c.isspace())]:
    proto.pieces.add(piece=c, score=-5.0, type=kind.NORMAL)
  while len(proto.pieces) < 32_000:
    proto.pieces.add(piece=f"\u2581w{len(proto.pieces)}", score=-10.0, type=kind.NORMAL)
  path.write_bytes(proto.SerializeToString())
  return str(path)


@pytest.fixture(scope="module")
def wang2022_dry_run(tmp_path_factory):
  """The wang2022 dry run with c4.gin's vocabulary file replaced by a local stand-in."""
  model = _t5_stand_in(tmp_path_factory.mktemp("vocab") / "sentencepiece.model")
  g, grid_dir = grid_spec.load(["gin_configs/grids/wang2022.gin"])
  g = dataclasses.replace(g, bindings=g.bindings + (
      f"objectives.vocab.sentencepiece_vocabulary.model_file = {model!r}",))
  printed = []
  rows = {r["cell"]: r for r in grid.dry_run(g, grid_dir, log=printed.append)}
  gin.clear_config()
  return rows, "\n".join(printed)


PAPER_CELLS = ("CD:FLM", "CD:MLM", "ND:PLM", "ND:MLM", "ED:PLM", "ED:MLM")
UL2_CELLS = ("CD:UL2", "ND:UL2", "ED:UL2")


@pytest.mark.slow
def test_dry_run_of_wang2022_gives_the_paper_numbers(wang2022_dry_run):
  rows, printed = wang2022_dry_run
  assert not [r for name, r in rows.items() if "error" in r and name not in UL2_CELLS]
  for name in PAPER_CELLS:
    r = rows[name]
    assert r["params"] == (11_003_736_064 if name.startswith("ED") else 4_762_357_760), name
    assert r["pretrain_tokens"] == 168_040_595_456, name
    assert r["pretrain_end_step"] == 131_072 and r["mtf_end_step"] == 141_072
    assert r["mtf_tokens"] == 10_000 * 1024 * 1280
    assert r["train_flops"] > 1e21
  adapt = rows["CD:FLM->ND:MLM"]
  assert adapt["adapt_end_step"] == 171_008 and adapt["mtf_end_step"] == 181_008
  assert adapt["adapt_tokens"] == 39_936 * 2048 * 626
  assert "4,762,357,760" in printed and "168,040,595,456" in printed
  # The memory estimate per device (this machine's one CPU device: the whole 2048-row batch).
  assert "GiB/dev" in printed
  cd, ed = rows["CD:FLM"]["pretrain_memory_gib"], rows["ED:MLM"]["pretrain_memory_gib"]
  assert cd > 17.7 * 3 and ed > 41 * 2, (cd, ed)  # float32 params + grads + activations


@pytest.mark.slow
def test_wang2022_prefix_lm_rows_follow_the_papers_configs(wang2022_dry_run):
  # ND:PLM (nc_dec_c4_prefix_lm.gin): 2048 rows of one 626-token sequence; ED:PLM
  # (enc_dec_c4_prefix_lm.gin): 1024 rows of one complementary pair (626 + 626). Same tokens.
  from arch import accounting, models  # pylint: disable=g-import-not-at-top
  rows, printed = wang2022_dry_run
  nd, ed = rows["ND:PLM"], rows["ED:PLM"]
  assert nd["pretrain_step_shape"] == "2048 x 626" and 2048 * 626 == 1_282_048
  assert rows["ND:MLM->ND:PLM"]["adapt_step_shape"] == "2048 x 626"
  assert ed["pretrain_step_shape"] == rows["ED:MLM->ED:PLM"]["adapt_step_shape"] == "1024 x 1252"
  assert nd["pretrain_tokens"] == ed["pretrain_tokens"] == 168_040_595_456
  assert nd["mtf_step_shape"] == ed["mtf_step_shape"] == "1024 x 1280"
  from arch.config import TransformerConfig  # pylint: disable=g-import-not-at-top
  paper = TransformerConfig(emb_dim=4096, num_heads=64, head_dim=64, mlp_dim=10240, num_layers=24,
                            vocab_size=32128)
  per_row = accounting.account(models.get_model("non_causal_decoder", paper),
                               {"inputs": 626, "targets": 626, "decoder_length": 626})
  assert nd["pretrain_flops"] == per_row["train_flops_per_example"] * 131_072 * 2048
  line = next(l for l in printed.splitlines() if l.startswith("ND:PLM "))
  assert "2048 x 626" in line and "168,040,595,456" in line


@pytest.mark.slow
def test_wang2022_has_the_compute_matched_causal_baseline(wang2022_dry_run):
  # Section 5: CD:FLM pretrained as long as CD:FLM -> ND:MLM (171,008 steps), then MTF.
  rows, printed = wang2022_dry_run
  r = rows["CD:FLM-219B"]
  assert "error" not in r and (r["arch"], r["objective"]) == ("causal_decoder", "full_lm")
  assert r["pretrain_steps"] == r["pretrain_end_step"] == 171_008 == rows[
      "CD:FLM->ND:MLM"]["adapt_end_step"]
  assert r["pretrain_tokens"] == 219_240_464_384 == 171_008 * 2048 * 626
  assert r["mtf_end_step"] == 181_008 and r["mtf_tokens"] == rows["CD:FLM"]["mtf_tokens"]
  line = next(l for l in printed.splitlines() if l.startswith("CD:FLM-219B"))
  assert "219,240,464,384" in line and "171,008" in line


@pytest.mark.slow
def test_wang2022_records_the_papers_precision_per_cell(wang2022_dry_run):
  # The paper ran ED:MLM with float32 activations, the other models with bfloat16.
  rows, printed = wang2022_dry_run
  for name, r in rows.items():
    if "error" in r:
      continue
    want = "float32" if name == "ED:MLM" else "bfloat16"
    assert r["pretrain_dtype" if "pretrain_dtype" in r else "adapt_dtype"] == want, name
    assert r["mtf_dtype"] == want, name
  line = next(l for l in printed.splitlines() if l.startswith("ED:MLM "))
  assert "float32" in line


@pytest.mark.slow
def test_wang2022_dry_run_validates_each_pretraining_task(wang2022_dry_run):
  rows, printed = wang2022_dry_run
  for name, r in rows.items():
    if name in UL2_CELLS:
      continue
    stage = "adapt" if "adapt_task" in r else "pretrain"
    assert r[f"{stage}_task"] == grid.TASK_OK, (name, r)
    assert r["mtf_task"] == grid.TASK_MIXTURE
  assert rows["ED:MLM"]["pretrain_task_note"] == "568 raw tokens per example"
  assert "NOTE" not in printed


# UL2's paradigm tokens take unused embedding rows of T5's vocabulary (objectives.ul2.paradigm_ids),
# so the UL2 cells validate on the paper's data config too.
@pytest.mark.slow
def test_wang2022_dry_run_validates_the_ul2_cells(wang2022_dry_run):
  rows, _ = wang2022_dry_run
  for name in UL2_CELLS:
    assert "error" not in rows[name], rows[name]["error"]
    assert rows[name]["pretrain_task"] == grid.TASK_OK


def test_dry_run_names_an_invalid_task_and_an_unreadable_vocabulary(tmp_path):
  # An objective whose lengths cannot fit the vocabulary makes the cell invalid; a vocabulary file
  # that cannot be read leaves the accounting and says the tasks were not checked.
  g = _grid([CD_FLM, {"name": "ND:MLM", "arch": "non_causal_decoder",
                      "objective": "span_corruption"}],
            gin_files=["gin_configs/sizes/tiny.gin", "gin_configs/data/embedded.gin"],
            feature_lengths=dict(_LENGTHS, span_corruption={"inputs": 2000, "targets": 600}))
  rows = {r["cell"]: r for r in grid.dry_run(g, str(tmp_path), log=lambda _: None)}
  assert rows["CD:FLM"]["pretrain_task"] == grid.TASK_OK
  assert "span_corruption" in rows["ND:MLM"]["error"] and "extra ids" in rows["ND:MLM"]["error"]
  g = dataclasses.replace(g, cells=g.cells[:1], gin_files=(
      "gin_configs/sizes/tiny.gin", "gin_configs/data/c4.gin"), bindings=(
      f"objectives.vocab.sentencepiece_vocabulary.model_file = '{tmp_path / 'absent.model'}'",
      "VOCAB_SIZE = 256"))
  printed = []
  rows = grid.dry_run(g, str(tmp_path), log=printed.append)
  assert rows[0]["pretrain_task"] == grid.TASK_UNCHECKED and "params" in rows[0]
  assert "NOTE: no cell's pretraining task was checked" in printed[0]
  assert "absent.model" in printed[0]
  gin.clear_config()


def test_run_folders_are_made_absolute_for_in_process_runs():
  out = grid.absolute_paths(["MODEL_DIR = 'runs/x/pretrain'", "CHECKPOINT_PATH = 'gs://b/x'",
                             "EVAL_SUITE = 'embedded'", "INITIAL_CHECKPOINT_PATH = '/abs/p'"])
  assert out[0] == f"MODEL_DIR = {str(gin_utils.pathlib.Path('runs/x/pretrain').resolve())!r}"
  assert out[1:] == ["CHECKPOINT_PATH = 'gs://b/x'", "EVAL_SUITE = 'embedded'",
                     "INITIAL_CHECKPOINT_PATH = '/abs/p'"]


def test_notebook_pair_is_in_sync():
  import jupytext  # pylint: disable=g-import-not-at-top
  root = gin_utils.REPO_ROOT / "notebooks"
  py = jupytext.read(root / "zero_shot_vs_mtf.py")
  nb = jupytext.read(root / "zero_shot_vs_mtf.ipynb")
  assert [(c.cell_type, c.source) for c in py.cells] == [(c.cell_type, c.source) for c in nb.cells]


@pytest.mark.slow
def test_dry_run_flags_an_unregistered_task_per_cell(tmp_path):
  g = _grid([CD_FLM, {"name": "ED:MLM", "arch": "encoder_decoder",
                      "objective": "span_corruption"}],
            corpus="nocorpus", gin_files=["gin_configs/sizes/tiny.gin",
                                          "gin_configs/data/embedded.gin"])
  rows = {r["cell"]: r for r in grid.dry_run(g, str(tmp_path), log=lambda _: None)}
  assert "nocorpus_full_lm" in rows["CD:FLM"]["error"]
  assert "nocorpus_span_corruption" in rows["ED:MLM"]["error"]
  assert not list(tmp_path.iterdir())  # nothing written
  gin.clear_config()


def test_seeds_give_each_cell_a_run_per_seed_with_its_own_folders(tmp_path):
  adapted = {"name": "CD:FLM->ND:MLM", "arch": "non_causal_decoder",
             "objective": "span_corruption", "source": "CD:FLM", "steps": 5}
  g = _grid([CD_FLM, adapted], seeds=[0, 3])
  stages = {s.key: s for s in grid_plan.plan(g, str(tmp_path))}
  assert len(stages) == 2 * len(grid_plan.plan(_grid([CD_FLM, adapted]), str(tmp_path)))
  b = lambda key: dict(x.split(" = ", 1) for x in stages[key].bindings)
  pre = stages["CD:FLM/seed_3/pretrain"]
  assert pre.dir == str(tmp_path / "cells" / "cd_flm" / "seed_3" / "pretrain") and pre.seed == 3
  assert b(pre.key)["RANDOM_SEED"] == "3" and b("CD:FLM/seed_0/mtf")["RANDOM_SEED"] == "0"
  adapt = stages["CD:FLM->ND:MLM/seed_3/adapt"]
  assert adapt.depends_on == ("CD:FLM/seed_3/pretrain",)
  assert b(adapt.key)["INITIAL_CHECKPOINT_PATH"] == repr(pre.dir)
  assert "RANDOM_SEED" not in b("CD:FLM/seed_3/eval_pretrain.embedded")  # eval draws nothing
  text = grid_plan.print_commands(list(stages.values()))
  assert "# CD:FLM (seed 3)" in text and "--gin.RANDOM_SEED=3" in text


def test_a_grid_without_seeds_keeps_its_folders_and_fingerprint(tmp_path):
  g = _grid([CD_FLM])
  stages = grid_plan.plan(g, str(tmp_path))
  assert stages[0].key == "CD:FLM/pretrain" and stages[0].seed is None
  assert stages[0].dir == str(tmp_path / "cells" / "cd_flm" / "pretrain")
  assert not any(x.startswith("RANDOM_SEED") for s in stages for x in s.bindings)
  # The fingerprint this definition had before `seeds` and `mtf_eval_period` existed, so that
  # the GRID_DIR of a grid run then still resumes.
  assert g.fingerprint() == "b0a6504a6791d509"
  assert _grid([CD_FLM], seeds=[0]).definition()["seeds"] == [0]


def test_a_grid_dir_takes_more_seeds_and_keeps_the_runs_it_has(tmp_path):
  grid.check_grid_dir(_grid([CD_FLM], seeds=[0, 1]), str(tmp_path))
  more = _grid([CD_FLM], seeds=[0, 1, 2])
  grid.check_grid_dir(more, str(tmp_path))  # seeds are not in the fingerprint
  assert json.loads((tmp_path / grid.GRID_JSON).read_text())["definition"]["seeds"] == [0, 1, 2]
  with pytest.raises(GridError, match=r"different grid definition.*mtf_steps"):
    grid.check_grid_dir(_grid([CD_FLM], seeds=[0, 1, 2], mtf_steps=5), str(tmp_path))


@pytest.mark.parametrize("seeds", [[0, 0], [-1], "0", [True], [], [1.0], 2])
def test_bad_seeds_name_the_setting(seeds):
  with pytest.raises(GridError, match=r"grid_definition\.seeds must be a non-empty list of "
                     r"distinct non-negative integers"):
    _grid([CD_FLM], seeds=seeds)


def test_mtf_validation_is_off_unless_the_grid_asks_and_evals_measure_continuation(tmp_path):
  b = lambda g, key: [x for x in {s.key: s for s in grid_plan.plan(g, str(tmp_path))}[key].bindings]
  off = _grid([CD_FLM], eval_bindings=["CONTINUATION_LOSS = False"])
  assert "EVAL_PERIOD = None" in b(off, "CD:FLM/mtf")
  assert not any(x.startswith("EVAL_PERIOD") for x in b(off, "CD:FLM/pretrain"))
  assert "EVAL_PERIOD = 500" in b(_grid([CD_FLM], mtf_eval_period=500), "CD:FLM/mtf")
  with pytest.raises(GridError, match=r"mtf_eval_period must be a positive integer"):
    _grid([CD_FLM], mtf_eval_period=0)
  ev = b(off, "CD:FLM/eval_mtf.embedded")
  # On by default; the grid's eval_bindings come after, so the grid can turn it off.
  assert ev.index("CONTINUATION_LOSS = True") < ev.index("CONTINUATION_LOSS = False")
  assert "CONTINUATION_LOSS = True" in b(_grid([CD_FLM]), "CD:FLM/eval_pretrain.embedded")


def test_the_embedded_study_parses_and_dry_runs(tmp_path):
  # The study grid (gin_configs/grids/embedded_study.gin): the six paper cells and CD:FLM -> ND:MLM,
  # three seeds, >= 400 examples per prompt; every cell validates and its pretraining task fits.
  g, grid_dir = grid_spec.load(["gin_configs/grids/embedded_study.gin"])
  assert grid_dir == "runs/embedded_study" and g.seeds == (0, 1, 2)
  assert [c.name for c in g.cells] == [*PAPER_CELLS, "CD:FLM->ND:MLM"]
  assert g.cell("CD:FLM->ND:MLM").source == "CD:FLM"
  assert "eval.zero_shot.evaluate_checkpoint.embedded_examples = 400" in g.eval_bindings
  printed = []
  rows = {r["cell"]: r for r in grid.dry_run(g, str(tmp_path), log=printed.append)}
  gin.clear_config()
  assert not [r for r in rows.values() if "error" in r]
  assert all(r["pretrain_task" if "pretrain_task" in r else "adapt_task"] == grid.TASK_OK
             for r in rows.values())
  assert rows["CD:FLM"]["params"] == rows["ND:MLM"]["params"] == 1_590_912
  assert rows["CD:FLM"]["pretrain_tokens"] == 200 * 16 * 80
  assert rows["CD:FLM->ND:MLM"]["adapt_end_step"] == 280
  assert not list(tmp_path.iterdir())  # a dry run writes nothing
