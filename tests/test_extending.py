"""Extending from user code only: a new architecture and a new objective, each one Python module and
one gin file in the user's own folder, train, evaluate and run in a grid with no edit anywhere in
the package. The README's "Extending" section shows these same files.

The user's folder (written by the test) holds decoder_variant.py, which registers
'test_decoder_variant' (TV: the causal decoder with rotary positions instead of T5's
relative-position buckets), reverse_lm.py, which registers 'reverse_lm' (RLM: full language
modeling read right to left), and gin_configs/{arch,objectives}/<name>.gin, whose `import` lines
load those modules. The folder is on sys.path (PYTHONPATH for a command line) and on the gin search
path (--gin_search_paths). Everything is undone after each test: registry entries, seqio tasks, the
imported modules, both search paths.
"""

import contextlib
import json
import math
import pathlib
import sys

import gin
import numpy as np
import pandas as pd
import pytest
import seqio

import objectives
from arch import registry as arch_registry
from eval import zero_shot
from experiments import grid
from experiments import grid_spec
from experiments import results
from experiments import testing
from experiments import train
from experiments.runtime import checkpoints
from experiments.runtime import gin_utils
from objectives import registry as objective_registry

ARCH = "test_decoder_variant"
OBJECTIVE = "reverse_lm"
LENGTHS = {"targets": 32}  # RLM's tiny lengths; full_lm is trained at the same length here
STEPS = 3

# --- The user's folder: one module and one gin file per new concept. ----------------------------

DECODER_VARIANT_PY = '''"""The causal decoder with rotary positions (no relative-position table)."""

import seqio

from arch import flops
from arch import models
from arch import registry


class RotaryDecoderModel(models.DecoderOnlyModel):
  """CD's network and loss; rotary positions instead of T5's relative-position buckets."""

  def __init__(self, config, z_loss=models.Z_LOSS, *, name="test_decoder_variant"):
    super().__init__(config.replace(position_scheme="rotary"), z_loss, name=name)


registry.register(registry.Architecture(
    name="test_decoder_variant", short="TV", build=RotaryDecoderModel,
    encoder_decoder=False, bidirectional_prefix=False,
    feature_converter_cls=seqio.DecoderFeatureConverter,
    flop_rule=flops.decoder_only,  # one causal stack over the row, as CD
    default_feature_lengths={"targets": 626}))
'''

REVERSE_LM_PY = '''"""Full language modeling read right to left."""

import tensorflow as tf

import objectives
from objectives import common


def reverse_lm(ds, sequence_length, output_features):
  """Tokenized documents -> {'targets': a fixed-length piece of the EOS-joined stream, reversed}."""
  eos_id = output_features["targets"].vocabulary.eos_id
  pieces = common.chunk_stream(ds, int(sequence_length["targets"]), eos_id=eos_id)
  return pieces.map(lambda t: {"targets": tf.reverse(t, axis=[0])})


def raw_length(task_feature_lengths, vocabulary):
  """Stream tokens one example consumes (the length check of objectives.validate)."""
  del vocabulary
  if task_feature_lengths["targets"] < 2:
    raise ValueError("reverse_lm needs TASK_FEATURE_LENGTHS['targets'] >= 2.")
  return task_feature_lengths["targets"]


objectives.register(objectives.Objective(
    name="reverse_lm", short="RLM", preprocessor=reverse_lm, features=("targets",),
    raw_length=raw_length, eos={"targets": False}, tiny_lengths={"targets": 32}))
'''

ARCH_GIN = """
import decoder_variant

include 'gin_configs/base/model.gin'
arch.models.get_model.name = 'test_decoder_variant'
"""

OBJECTIVE_GIN = """
import objectives
import reverse_lm

OBJECTIVE = 'reverse_lm'
MIXTURE_OR_TASK_NAME = @objectives.task_name()
objectives.task_name.corpus = %CORPUS
objectives.task_name.objective = %OBJECTIVE
TASK_FEATURE_LENGTHS = {'targets': 626}
TINY_FEATURE_LENGTHS = @objectives.tiny_feature_lengths()
objectives.tiny_feature_lengths.objective = %OBJECTIVE
"""

USER_FILES = {
    "decoder_variant.py": DECODER_VARIANT_PY,
    "reverse_lm.py": REVERSE_LM_PY,
    f"gin_configs/arch/{ARCH}.gin": ARCH_GIN,
    f"gin_configs/objectives/{OBJECTIVE}.gin": OBJECTIVE_GIN,
}
USER_MODULES = ("decoder_variant", "reverse_lm")

# The grid imports the user's modules too: its cells are checked against the registries on load.
GRID_GIN = """
import experiments.grid_spec
import decoder_variant
import reverse_lm

GRID_DIR = '{out}'
experiments.grid_spec.grid_definition.name = 'extended'
experiments.grid_spec.grid_definition.gin_files = ['gin_configs/sizes/tiny.gin',
                                                   'gin_configs/data/embedded.gin']
experiments.grid_spec.grid_definition.bindings = ['experiments.train.train.log_period = 1']
experiments.grid_spec.grid_definition.eval_bindings = [
    'eval.zero_shot.evaluate_checkpoint.embedded_examples = 4']
experiments.grid_spec.grid_definition.pretrain_steps = {steps}
experiments.grid_spec.grid_definition.batch_size = 2
experiments.grid_spec.grid_definition.feature_lengths = {{
    'full_lm': {lengths!r}, 'reverse_lm': {lengths!r}}}
experiments.grid_spec.grid_definition.mtf_steps = 1
experiments.grid_spec.grid_definition.mtf_batch_size = 2
experiments.grid_spec.grid_definition.mtf_feature_lengths = {{'inputs': 32, 'targets': 8}}
experiments.grid_spec.grid_definition.suites = ['embedded']
experiments.grid_spec.grid_definition.cells = [
    {{'name': 'TV:FLM', 'arch': 'test_decoder_variant', 'objective': 'full_lm',
      'stages': ['pretrain', 'eval']}},
    {{'name': 'CD:RLM', 'arch': 'causal_decoder', 'objective': 'reverse_lm',
      'stages': ['pretrain', 'eval']}},
]
"""


@contextlib.contextmanager
def user_folder_in_use(folder: pathlib.Path):
  """Writes the user's folder and puts it on sys.path and the gin search path; on exit every trace
  is gone: registry entries, seqio tasks, the imported modules, both search paths."""
  tasks_before = set(seqio.TaskRegistry.names())
  search_before = list(gin_utils._search_paths)
  for name, text in USER_FILES.items():
    (folder / name).parent.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text)
  with pytest.MonkeyPatch.context() as mp:
    mp.setattr(arch_registry, "_REGISTRY", dict(arch_registry._REGISTRY))
    for reg in (objective_registry._OBJECTIVES, objective_registry._CORPORA):
      mp.setattr(reg, "_entries", dict(reg._entries))
    # gin keeps every folder it was given; the copy drops this one afterwards.
    mp.setattr(gin.config, "_LOCATION_PREFIXES", list(gin.config._LOCATION_PREFIXES))
    mp.syspath_prepend(str(folder))
    try:
      gin_utils.set_search_paths([str(folder)])
      yield folder
    finally:
      gin_utils.set_search_paths(search_before)
      for name in USER_MODULES:
        sys.modules.pop(name, None)  # the next import registers afresh
      for name in set(seqio.TaskRegistry.names()) - tasks_before:
        seqio.TaskRegistry.remove(name)
      gin.clear_config()


@pytest.fixture(name="user_folder")
def _user_folder(tmp_path):
  with user_folder_in_use(tmp_path / "user") as folder:
    yield folder


def _parse_user_stack(model_dir: pathlib.Path) -> None:
  """Parses TV x RLM's training stack (not finalized): the gin `import` lines register both."""
  gin_utils.parse_gin(*testing.tiny_stack(ARCH, OBJECTIVE, model_dir, train_steps=1),
                      finalize=False)
  gin.clear_config()


def _metrics(model_dir: pathlib.Path) -> list[dict]:
  """The train records of metrics.jsonl (in-loop validation writes its own `eval/` records)."""
  rows = [json.loads(line) for line in (model_dir / "metrics.jsonl").read_text().splitlines()]
  return [r for r in rows if not any(k.startswith("eval/") for k in r)]


def _check_trained(summary: dict, model_dir: pathlib.Path, arch: str, objective: str) -> dict:
  """The run trained STEPS finite steps of `arch` on embedded_<objective>; returns its metadata."""
  assert summary["final_step"] == STEPS
  rows = _metrics(model_dir)
  assert [r["step"] for r in rows] == list(range(1, STEPS + 1))
  for r in rows:
    assert math.isfinite(r["loss"]) and r["loss"] > 0, r
    assert r["num_tokens"] == 2 * LENGTHS["targets"], r  # batch 2, every target a loss position
  meta = checkpoints.read_meta(checkpoints.resolve_step_dir(model_dir))
  assert meta["model"].startswith(f"{arch} ") and meta["task"] == f"embedded_{objective}", meta
  assert meta["task_feature_lengths"] == LENGTHS, meta
  return meta


def test_the_gin_files_register_both_and_other_names_are_errors_listing_them(user_folder,
                                                                               tmp_path):
  assert ARCH not in arch_registry.names() and OBJECTIVE not in objectives.names()
  for name in USER_FILES:
    if name.endswith(".gin"):
      assert pathlib.Path(gin_utils.resolve_gin_file(name)) == user_folder / name
  _parse_user_stack(tmp_path / "run")
  assert arch_registry.names()[-1] == ARCH and objectives.names()[-1] == OBJECTIVE
  assert {f"{c}_{OBJECTIVE}" for c in objectives.corpus_names()} <= set(seqio.TaskRegistry.names())
  with pytest.raises(arch_registry.UnknownArchitectureError) as err:
    arch_registry.get("test_decoder_varaint")
  assert all(repr(name) in str(err.value) for name in arch_registry.names())
  with pytest.raises(objectives.UnknownObjectiveError,
                     match="registered: " + ", ".join(objectives.names())):
    objectives.get("reverse_ml")
  # RLM has no 'inputs': undefined on the encoder-decoder, which the grid refuses before training.
  with pytest.raises(grid_spec.GridError, match=f"{OBJECTIVE} is undefined on .*encoder_decoder"):
    grid_spec.parse_cell(0, {"name": "ED:RLM", "arch": "encoder_decoder",
                             "objective": OBJECTIVE}, 1)


def test_every_registration_is_undone_and_redone(tmp_path):
  search_before = list(gin_utils._search_paths)
  for _ in range(2):  # a second use of the folder registers again (tests run in any order)
    with user_folder_in_use(tmp_path / "user") as folder:
      _parse_user_stack(tmp_path / "run")
      assert ARCH in arch_registry.names()
      assert f"embedded_{OBJECTIVE}" in seqio.TaskRegistry.names()
    assert ARCH not in arch_registry.names() and OBJECTIVE not in objectives.names()
    assert not [t for t in seqio.TaskRegistry.names() if t.endswith(f"_{OBJECTIVE}")]
    assert not set(USER_MODULES) & set(sys.modules) and str(folder) not in sys.path
    assert gin_utils._search_paths == search_before
  with pytest.raises(arch_registry.UnknownArchitectureError, match="'causal_decoder'"):
    arch_registry.get(ARCH)
  with pytest.raises(gin_utils.GinConfigError, match="no such file"):
    gin_utils.resolve_gin_file(f"gin_configs/objectives/{OBJECTIVE}.gin")


def test_the_new_objective_is_full_lm_read_right_to_left(user_folder, tmp_path):
  del user_folder
  _parse_user_stack(tmp_path / "run")
  gin.parse_config("objectives.common.example_shuffle_buffer.size = 1")  # full_lm's shuffle off

  def first_examples(task):
    ds = seqio.get_mixture_or_task(task).get_dataset(LENGTHS, split="validation", shuffle=False)
    return [ex["targets"] for ex in ds.take(3).as_numpy_iterator()]

  ours, full = first_examples(f"embedded_{OBJECTIVE}"), first_examples("embedded_full_lm")
  assert len(ours) == len(full) == 3
  for r, f in zip(ours, full):
    assert len(r) == LENGTHS["targets"]
    np.testing.assert_array_equal(r, f[::-1])
  assert not np.array_equal(ours[0], full[0])


@pytest.mark.slow
def test_new_architecture_trains_with_a_shipped_objective_and_evaluates(user_folder, tmp_path):
  del user_folder
  model_dir = tmp_path / "tv_flm"
  summary = train.run(*testing.tiny_stack(ARCH, "full_lm", model_dir, train_steps=STEPS,
                                          lengths=LENGTHS, log_period=1))
  meta = _check_trained(summary, model_dir, ARCH, "full_lm")
  assert "position_scheme=rotary" in meta["model"]  # the variant's own network was trained

  out = tmp_path / "eval"
  stack = [f"gin_configs/arch/{ARCH}.gin", "gin_configs/sizes/tiny.gin",
           "gin_configs/data/embedded.gin"]
  res = zero_shot.run(stack, [
      f"CHECKPOINT_PATH = '{model_dir}'", "EVAL_SUITE = 'embedded:word_order'",
      f"EVAL_OUTPUT_DIR = '{out}'", "eval.zero_shot.evaluate_checkpoint.embedded_examples = 8"])
  task = res["tasks"]["embedded_word_order"]
  assert set(res["tasks"]) == {"embedded_word_order"} and not res["missing"]
  assert task["n"] == 8 and task["random_baseline"] == 0.5 and 0.0 <= task["median"] <= 1.0
  assert json.loads((out / "results.json").read_text())["tasks"] == res["tasks"]


@pytest.mark.slow
def test_shipped_architecture_trains_with_the_new_objective(user_folder, tmp_path):
  del user_folder
  model_dir = tmp_path / "cd_rlm"
  # No `lengths`: local_tiny.gin takes them from the new objective file's TINY_FEATURE_LENGTHS.
  summary = train.run(*testing.tiny_stack("causal_decoder", OBJECTIVE, model_dir,
                                          train_steps=STEPS, log_period=1))
  _check_trained(summary, model_dir, "causal_decoder", OBJECTIVE)


@pytest.mark.slow
def test_a_grid_of_the_new_architecture_and_the_new_objective(user_folder, tmp_path):
  del user_folder
  out = tmp_path / "grid"
  gin_file = tmp_path / "extended.gin"
  gin_file.write_text(GRID_GIN.format(out=out, steps=STEPS, lengths=LENGTHS))
  g, grid_dir = grid_spec.load([str(gin_file)])
  outcome = grid.run_grid(g, grid_dir, log=lambda _: None)
  grid.report(g, grid_dir, outcome)
  assert outcome["failed"] == [], {k: outcome["status"][k] for k in outcome["failed"]}
  df = pd.read_csv(out / results.RESULTS_CSV)
  assert set(df.cell) == {"TV:FLM", "CD:RLM"}
  for cell, arch, objective, slug in (("TV:FLM", ARCH, "full_lm", "tv_flm"),
                                      ("CD:RLM", "causal_decoder", OBJECTIVE, "cd_rlm")):
    rows = df[df.cell == cell]
    assert len(rows) > 0 and set(rows.arch) == {arch} and set(rows.objective) == {objective}
    assert set(rows.stage) == {"pretrain"} and set(rows.step) == {STEPS} and set(rows.n) == {4}
    assert rows.accuracy.between(0, 1).all()
    _check_trained({"final_step": STEPS}, out / "cells" / slug / "pretrain", arch, objective)
  assert "| TV:FLM |" in (out / results.SUMMARY_MD).read_text()
