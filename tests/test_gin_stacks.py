"""Shipped gin stacks: order-independent, and every shipped file trains a step under local_tiny.gin."""

import contextlib
import io
import itertools
import json
import pathlib
import re

import gin
import numpy as np
import pytest

from arch import accounting
from arch import memory
from arch import registry as arch_registry
import objectives
from experiments import testing
from experiments import train
from experiments.runtime import checkpoints
from experiments.runtime import gin_utils

REPO = pathlib.Path(__file__).resolve().parents[1]
STACK = ["gin_configs/arch/encoder_decoder.gin", "gin_configs/sizes/small.gin",
         "gin_configs/data/embedded.gin", "gin_configs/objectives/span_corruption.gin",
         "gin_configs/runs/pretrain.gin"]


def _resolved(files, bindings=("MODEL_DIR = '/tmp/unused'",)):
  gin_utils.parse_gin(files, list(bindings))
  try:
    return (gin.config_str(), gin_utils.query_macro("MIXTURE_OR_TASK_NAME"),
            gin_utils.query_macro("TASK_FEATURE_LENGTHS"), gin_utils.query_macro("VOCAB_SIZE"))
  finally:
    gin.clear_config()


def test_every_order_of_a_stack_resolves_the_same():
  train.import_configurables()
  reference = _resolved(STACK)
  assert reference[1:] == ("embedded_span_corruption", {"inputs": 512, "targets": 114}, 4100)
  for order in itertools.permutations(STACK):
    assert _resolved(list(order)) == reference, order
  # The overlay wins wherever it stands in the flags.
  tiny = _resolved(STACK + ["gin_configs/local_tiny.gin"])
  assert tiny[2] == dict(objectives.get("span_corruption").tiny_lengths)
  for i in range(len(STACK)):
    assert _resolved(STACK[:i] + ["gin_configs/local_tiny.gin"] + STACK[i:]) == tiny


def test_two_data_layers_are_an_error_naming_both_files():
  train.import_configurables()
  with pytest.raises(gin_utils.GinConfigError, match=r"CORPUS is bound by .*embedded\.gin "
                                                     r"\('embedded'\) and by .*text\.gin"):
    _resolved(STACK + ["gin_configs/data/text.gin"])


def _train_one_step(files, model_dir, bindings=(), steps=1):
  files = [f for f in files if f] + ["gin_configs/local_tiny.gin"]
  files = list(dict.fromkeys(files))
  return train.run(files, [f"MODEL_DIR = '{model_dir}'", f"TRAIN_STEPS = {steps}",
                           "experiments.train.train.async_checkpointing = False", *bindings])


RECIPE_SIZE = "include 'gin_configs/sizes/"  # a run file that includes its size is a recipe


def _recipe_stack(text):
  """(arch, objective) of the command in a recipe's header."""
  arch = re.search(r"gin_configs/arch/(\w+)\.gin", text).group(1)
  return arch, re.search(r"gin_configs/objectives/(\w+)\.gin", text).group(1)


def _recipes():
  return sorted(p for p in (REPO / "gin_configs" / "runs").glob("*.gin")
                if RECIPE_SIZE in p.read_text())


@pytest.mark.parametrize("recipe", [p.name for p in _recipes()])
def test_recipe_header_states_the_memory_estimate(recipe):
  """Each recipe's "Sized for: ~N GiB per device" is arch.accounting --memory's figure."""
  text = (REPO / "gin_configs" / "runs" / recipe).read_text()
  stated = float(re.search(r"Sized for: ~([\d.]+) GiB per device", text).group(1))
  arch, objective = _recipe_stack(text)
  files = [f"--gin_file=gin_configs/arch/{arch}.gin", "--gin_file=gin_configs/data/c4.gin",
           f"--gin_file=gin_configs/objectives/{objective}.gin",
           f"--gin_file=gin_configs/runs/{recipe}"]
  out = io.StringIO()
  with contextlib.redirect_stdout(out):
    assert accounting.main(files + ["--memory", "--json", "--num_devices=8"]) == 0
  gin.clear_config()
  peak = json.loads(out.getvalue())["memory"]["peak_bytes"] / memory.GiB
  assert abs(peak - stated) <= 0.6, (recipe, peak, stated)
  assert peak <= 0.7 * 80, "sized for 80 GB devices with room for XLA's workspace"


def _pairs():
  """(arch, objective) pairs that cover every registered architecture and objective once."""
  pairs, objs = [], list(objectives.names())
  for i, name in enumerate(arch_registry.names()):
    arch = arch_registry.get(name)
    fits = [o for o in objs if objectives.get(o).defined_on(arch)] or [
        o for o in objectives.names() if objectives.get(o).defined_on(arch)]
    pairs.append((name, fits[i % len(fits)]))
    objs = [o for o in objs if o != pairs[-1][1]]
  for objective in objs:
    arch = next(a for a in arch_registry.names()
                if objectives.get(objective).defined_on(arch_registry.get(a)))
    pairs.append((arch, objective))
  return pairs


@pytest.mark.slow
def test_every_shipped_gin_file_trains_a_step_through_local_tiny(tmp_path, shared_data):
  shipped = {str(p.relative_to(REPO)) for p in (REPO / "gin_configs").rglob("*.gin")}
  used = set()

  def run(files, model_dir, **kw):
    used.update(files)
    summary = _train_one_step(files, model_dir, **kw)
    assert np.isfinite(summary["metrics"]["loss"]), files
    return summary

  pairs = _pairs()
  assert {a for a, _ in pairs} == set(arch_registry.names())
  assert {o for _, o in pairs} == set(objectives.names())
  # Each size file is shrunk by the overlay in one of the runs below (cycling through them).
  sizes = itertools.cycle(sorted(p for p in shipped if p.startswith("gin_configs/sizes/")))
  for arch, objective in pairs:
    run([f"gin_configs/arch/{arch}.gin", next(sizes), "gin_configs/data/embedded.gin",
         f"gin_configs/objectives/{objective}.gin", "gin_configs/runs/pretrain.gin"],
        tmp_path / f"{arch}_{objective}")

  # Run files that start from a checkpoint (adaptation, MTF): from the first pretrained pair.
  source = tmp_path / f"{pairs[0][0]}_{pairs[0][1]}"
  start = checkpoints.Checkpointer(source).latest_step()
  for run_file in sorted(p for p in shipped if p.startswith("gin_configs/runs/")):
    if run_file in used:
      continue
    text = (REPO / run_file).read_text()
    if RECIPE_SIZE in text:  # a recipe: its own size, pretraining from scratch (tiny overlay)
      arch, objective = _recipe_stack(text)
      run([f"gin_configs/arch/{arch}.gin", "gin_configs/data/embedded.gin",
           f"gin_configs/objectives/{objective}.gin", run_file],
          tmp_path / pathlib.Path(run_file).stem)
      continue
    own_task = "MIXTURE_OR_TASK_NAME = '" in text  # MTF: the run file names its mixture
    mtf = [f"objectives.multitask.mtf_options.local_data_dir = '{shared_data}'",
           "objectives.multitask.mtf_options.max_examples_per_dataset = 20",
           "MIXTURE_OR_TASK_NAME = 'embedded_mtf'"]  # T0's mixture needs a local P3 folder
    run([f"gin_configs/arch/{pairs[0][0]}.gin", next(sizes), "gin_configs/data/embedded.gin",
         None if own_task else f"gin_configs/objectives/{pairs[0][1]}.gin", run_file],
        tmp_path / pathlib.Path(run_file).stem, steps=start + 1,
        bindings=[f"INITIAL_CHECKPOINT_PATH = '{source}'", *(mtf if own_task else [])])

  # The text corpus on files of one's own.
  docs = tmp_path / "docs"
  docs.mkdir()
  for i in range(4):
    (docs / f"{i}.txt").write_text(" ".join(f"word{j % 37} of text {i}" for j in range(400)))
  run(["gin_configs/arch/causal_decoder.gin", next(sizes), "gin_configs/data/text.gin",
       "gin_configs/objectives/full_lm.gin", "gin_configs/runs/pretrain.gin"],
      tmp_path / "text", bindings=[
          f"objectives.corpora.text_files.train_files = ['{docs}/*.txt']",
          f"objectives.corpora.text_files.validation_files = ['{docs}/0.txt']"])

  # c4 needs TFDS c4/en and T5's SentencePiece model: without them, a clear error, no traceback.
  with pytest.raises((ValueError, OSError), match=r"sentencepiece_vocabulary.model_file"):
    _train_one_step(["gin_configs/arch/causal_decoder.gin", "gin_configs/data/c4.gin",
                     "gin_configs/objectives/full_lm.gin", "gin_configs/runs/pretrain.gin"],
                    tmp_path / "c4", bindings=[
                        "objectives.vocab.sentencepiece_vocabulary.model_file = "
                        f"'{tmp_path}/no_such.model'"])
  used.add("gin_configs/data/c4.gin")

  includes = {f"gin_configs/base/{p.name}" for p in (REPO / "gin_configs/base").glob("*.gin")}
  grids = {p for p in shipped if p.startswith("gin_configs/grids/")}  # tests/test_grid_*.py
  assert shipped - used - includes - grids - {"gin_configs/local_tiny.gin"} == set()
