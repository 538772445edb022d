"""Checks of a training run's configuration, made before anything expensive, and its records.

Every error names the gin binding or macro to fix and what was expected. Also: the resolved
config written to MODEL_DIR/config.gin, the model's description, tokens and FLOPs per step.
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib
import inspect
import logging
import os
import pathlib
import tempfile
from typing import Any, Mapping, Sequence

import gin
import numpy as np

from experiments import checkpoints as ckpt_lib
from experiments import data as data_lib
from experiments import optimizers as optimizers_lib

# train()'s required arguments and the macros the run gin files bind them to.
REQUIRED_ARGS = {
    "model": "MODEL", "model_dir": "MODEL_DIR", "mixture_or_task_name": "MIXTURE_OR_TASK_NAME",
    "task_feature_lengths": "TASK_FEATURE_LENGTHS", "train_steps": "TRAIN_STEPS",
    "batch_size": "BATCH_SIZE", "optimizer": None,
}
_MODEL_API = ("loss_fn", "input_shapes", "get_initial_variables", "feature_converter_cls")


class ConfigError(ValueError):
  """A training configuration that cannot run, with the binding to fix."""


@dataclasses.dataclass(frozen=True)
class Prepared:
  model_dir: pathlib.Path


def _macro_problem(arg: str, value: Any) -> str | None:
  """Why train.<arg>'s value cannot be used (an unset or undefined macro, followed down a chain)."""
  seen = []
  while True:
    text = repr(value)
    if text == "%gin.REQUIRED":
      where = f"The gin macro {seen[-1]}" if seen else f"The gin binding train.{arg}"
      return f"{where} is required but not set"
    if not (text.startswith("%") and "(" not in text) or len(seen) > 8:
      if value is None and seen and arg in REQUIRED_ARGS:
        return f"The gin macro {seen[-1]} is required but not set (it is None)"
      return None
    name = text[1:]
    seen.append(name)
    try:
      value = gin.query_parameter(f"%{name}")
    except ValueError:
      return f"The gin macro {name} is not defined"


def check_required_macros(unused_names: Sequence[str] = ()) -> None:
  """Required train() arguments are bound, and none refers to an unset macro; lists them all."""
  from experiments import loop  # pylint: disable=g-import-not-at-top
  problems = []
  for arg in inspect.signature(loop.train).parameters:
    try:
      value = gin.query_parameter(f"experiments.train.train.{arg}")
    except ValueError:
      if arg in REQUIRED_ARGS:
        macro = REQUIRED_ARGS[arg]
        hint = f" (run files bind it to %{macro})" if macro else ""
        problems.append(f"The gin binding train.{arg} is not set{hint}: add a run file such as "
                        f"gin_configs/runs/pretrain.gin")
      continue
    problem = _macro_problem(arg, value)
    if problem:
      problems.append(f"{problem} (train.{arg}): set it with --gin.<NAME>=... or in a gin file")
  if problems:
    raise ConfigError("; ".join(problems) + ".")


def _positive_int(name: str, value: Any) -> None:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
    raise ConfigError(f"{name} must be a positive integer, got {value!r}.")


def check_model_dir(model_dir: Any) -> pathlib.Path:
  """MODEL_DIR exists (created if needed) and is writable."""
  if not isinstance(model_dir, (str, os.PathLike)) or not str(model_dir):
    raise ConfigError(f"MODEL_DIR must be a path string, got {model_dir!r}.")
  path = pathlib.Path(model_dir).expanduser().absolute()  # orbax needs absolute paths
  try:
    path.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path, prefix=".write_test_"):
      pass
  except OSError as e:
    raise ConfigError(f"MODEL_DIR = {str(model_dir)!r} is not writable: {e.strerror or e}.") from e
  return path


def check_and_prepare(*, model, model_dir, task_name, task_feature_lengths, train_steps,
                      batch_size, optimizer, num_microbatches, checkpoint_period, log_period,
                      initial_checkpoint_path) -> Prepared:
  """All cheap checks of a run; raises ConfigError naming the binding to fix."""
  missing = [a for a in _MODEL_API if not hasattr(model, a)]
  if missing:
    raise ConfigError(f"MODEL = {model!r} lacks the model API {missing} (expected "
                      f"@arch.models.get_model()).")
  if not isinstance(optimizer, optimizers_lib.Optimizer):
    raise ConfigError(f"train.optimizer must be an experiments.optimizers optimizer (e.g. "
                      f"@experiments.optimizers.adafactor()), got {optimizer!r}.")
  _positive_int("TRAIN_STEPS", train_steps)
  _positive_int("BATCH_SIZE", batch_size)
  _positive_int("train.num_microbatches", num_microbatches)
  _positive_int("train.checkpoint_period", checkpoint_period)
  _positive_int("train.log_period", log_period)
  if batch_size % num_microbatches:
    raise ConfigError(f"BATCH_SIZE {batch_size} is not divisible by train.num_microbatches "
                      f"{num_microbatches}.")
  if not isinstance(task_feature_lengths, Mapping):
    raise ConfigError(f"TASK_FEATURE_LENGTHS must be a dict like {{'inputs': 512, 'targets': "
                      f"114}}, got {task_feature_lengths!r}.")
  if not isinstance(task_name, str):
    raise ConfigError(f"MIXTURE_OR_TASK_NAME must be a string, got {task_name!r}.")
  try:
    task = data_lib.get_task(task_name)
    data_lib.check_feature_lengths(task, task_feature_lengths)
  except ValueError as e:
    raise ConfigError(str(e)) from e
  _check_vocab(model, task)
  _objectives_validation(model, task_name, task_feature_lengths)
  if initial_checkpoint_path:
    try:
      ckpt_lib.resolve_step_dir(initial_checkpoint_path)
    except ckpt_lib.CheckpointError as e:
      raise ConfigError(f"INITIAL_CHECKPOINT_PATH: {e}") from e
  if not isinstance(model_dir, (str, os.PathLike)) or not str(model_dir):
    raise ConfigError(f"MODEL_DIR must be a path string, got {model_dir!r}.")
  return Prepared(model_dir=pathlib.Path(model_dir))


def _check_vocab(model, task) -> None:
  config = getattr(model, "config", None)
  model_vocab = getattr(config, "vocab_size", None)
  needed = data_lib.task_vocab_size(task)
  if model_vocab is not None and model_vocab < needed:
    raise ConfigError(
        f"The model's vocab_size ({model_vocab}) is smaller than task {task.name!r}'s vocabulary "
        f"({needed} ids). Bind VOCAB_SIZE (TransformerConfig.vocab_size) >= {needed}; the data "
        f"gin file sets it to match VOCABULARY.")


def _objectives_validation(model, task_name: str, task_feature_lengths: Mapping[str, int]) -> None:
  """objectives.validate(...) for '{corpus}_{objective}' tasks (mixtures are checked above)."""
  objectives = importlib.import_module("objectives")
  try:
    objectives.parse_task_name(task_name)
  except ValueError:
    return  # a mixture (e.g. the MTF mixtures): registered and checked by its own package
  config = getattr(model, "config", None)
  try:
    objectives.validate(task_name, getattr(model, "name", ""), dict(task_feature_lengths),
                        vocab_size=getattr(config, "vocab_size", None))
  except ValueError as e:
    raise ConfigError(str(e)) from e


def describe_model(model) -> str:
  """'causal_decoder emb_dim=..., ...' for logs and checkpoint metadata."""
  name = getattr(model, "name", type(model).__name__)
  config = getattr(model, "config", None)
  if config is None or not dataclasses.is_dataclass(config):
    return str(name)
  keys = ("vocab_size", "emb_dim", "num_heads", "head_dim", "mlp_dim", "num_layers",
          "num_encoder_layers", "num_decoder_layers", "activations", "position_scheme",
          "tie_embeddings")
  fields = dataclasses.asdict(config)
  if name != "encoder_decoder":
    fields.pop("num_encoder_layers", None)
    fields.pop("num_decoder_layers", None)
  else:
    fields.pop("num_layers", None)
  return f"{name} " + ", ".join(f"{k}={fields[k]}" for k in keys if k in fields)


def tokens_per_step(input_shapes: Mapping[str, tuple[int, ...]]) -> int:
  """Token positions processed per step (encoder inputs plus decoder inputs)."""
  return int(sum(np.prod(input_shapes[k]) for k in ("encoder_input_tokens",
                                                     "decoder_input_tokens")
                 if k in input_shapes))


def flops_per_step(model, task_feature_lengths, batch_size, compiled) -> dict:
  """Training FLOPs per step and their convention: arch.accounting's, else XLA's own count."""
  try:
    accounting = importlib.import_module("arch.accounting")
    counts = accounting.account(model, dict(task_feature_lengths))
    return {"flops_per_step": float(counts["train_flops_per_example"]) * batch_size,
            "weight_flops_per_step": float(counts["weight_flops_per_example"]) * batch_size,
            "attention_flops_per_step": float(counts["attention_flops_per_example"]) * batch_size,
            "convention": counts.get("flop_convention", "arch.accounting")}
  except (ModuleNotFoundError, AttributeError, KeyError, TypeError) as e:
    logging.info("arch.accounting unavailable (%s); using XLA's cost analysis.", e)
  try:
    analysis = compiled.cost_analysis()
    if isinstance(analysis, (list, tuple)):
      analysis = analysis[0]
    flops = float(analysis.get("flops", 0.0))
    return {"flops_per_step": flops * max(1, _num_partitions(compiled)),
            "convention": "XLA cost analysis of the compiled step (all ops, per step)"}
  except Exception as e:  # pylint: disable=broad-except
    logging.info("No FLOP count available: %s", e)
    return {"flops_per_step": 0.0, "convention": "unknown"}


def _num_partitions(compiled) -> int:
  # XLA's count is per device program under SPMD partitioning.
  try:
    return len(compiled.input_shardings[0][0].device_set) if compiled.input_shardings else 1
  except Exception:  # pylint: disable=broad-except
    return 1


def write_config(model_dir: pathlib.Path, start_step: int) -> None:
  """MODEL_DIR/config.gin: the operative config; a different earlier one is kept aside."""
  import jax  # pylint: disable=g-import-not-at-top
  if jax.process_index() != 0:
    return
  text = ("# The resolved gin config of this run (written after its first step).\n"
          + gin.operative_config_str())
  path = pathlib.Path(model_dir) / "config.gin"
  if path.is_file():
    old = path.read_text()
    if old == text:
      return
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    os.replace(path, path.with_name(f"config.before_step{start_step}.{stamp}.gin"))
  tmp = path.with_suffix(".gin.tmp")
  tmp.write_text(text)
  os.replace(tmp, path)
