"""In-loop validation (t5x's training eval, logged as `eval/` metrics) and the same evaluation of a
saved checkpoint.

Every EVAL_PERIOD steps, and at the last step, the trainer computes the objective's loss on the
task's 'validation' split: the held-out plays (embedded corpus), TFDS c4's validation split, a text
corpus's validation_files or validation_share (objectives/corpora.py), every 20th example of an MTF
mixture (objectives/multitask/tasks.py). EVAL_PERIOD = None turns it off.

The batches are fixed for a run: the first EVAL_STEPS batches of BATCH_SIZE rows of that split,
through the model's feature converter at TASK_FEATURE_LENGTHS as in training, with the documents
in their stored order and the objective's random choices (spans, split points) seeded by
VALIDATION_SEED. A split shorter than that repeats (EVAL_STEPS is always the number of batches,
so every evaluation of a run weighs the same examples). They are drawn once, before the step
compiles (a split that yields no batch is a ConfigError naming EVAL_PERIOD then), and kept in host
memory: EVAL_STEPS x this host's share of a batch.

The evaluation is one AOT-compiled forward pass per batch, with the train step's shardings (same
partitioner and mesh) and microbatches, without dropout and without an update. Per-batch sums are
added on the host in float64 in a fixed order, so `evaluate_loss` on the checkpoint of a step
returns exactly what the loop logged at that step.

Metrics (one metrics.jsonl record per evaluation, TensorBoard section eval/):
  eval/loss              summed loss (cross-entropy + z-loss) per batch, averaged over the batches:
                         the scale of train's `loss`
  eval/loss_per_token    total loss / total target tokens: the scale of train's `loss_per_token`
  eval/cross_ent_per_token  total cross-entropy / target tokens: nats per target token, no z-loss
  eval/accuracy          target tokens predicted exactly (argmax) / target tokens
  eval/num_tokens, eval/num_batches, eval/seconds
"""

from __future__ import annotations

import inspect
import logging
import time
from typing import Any, Mapping, Sequence

import gin
import jax
import numpy as np
import seqio
import tensorflow as tf

from experiments import data as data_lib
from experiments import metrics as metrics_lib
from experiments import partitioning
from experiments import run_config
from experiments import trainer as trainer_lib
from experiments.runtime import accelerators
from experiments.runtime import checkpoints as ckpt_lib
from experiments.runtime import errors
from experiments.runtime import gin_utils

SPLIT = "validation"
# The same for every run, not RANDOM_SEED: runs of different seeds are scored on the same spans
# and split points, so their validation losses differ by the models only.
VALIDATION_SEED = 0
PREFIX = "eval/"


class ValidationDataError(errors.ConfigError):
  """The task's validation split cannot give the in-loop validation batches."""


def enabled(eval_period: Any, eval_steps: Any) -> bool:
  """Whether in-loop validation runs; bad EVAL_PERIOD / EVAL_STEPS raise ConfigError."""
  if eval_period is None:
    return False
  _check_count("EVAL_PERIOD (experiments.train.train.eval_period)", eval_period,
               "steps between evaluations, or None to turn in-loop validation off")
  _check_count("EVAL_STEPS (experiments.train.train.eval_steps)", eval_steps,
               "validation batches per evaluation")
  return True


def _check_count(name: str, value: Any, what: str) -> None:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
    raise run_config.ConfigError(f"{name} = {value!r}; expected a positive integer ({what}).")


def draw_batches(task_name: str, task_feature_lengths: Mapping[str, int],
                 feature_converter: seqio.FeatureConverter, global_batch_size: int,
                 eval_steps: int, use_cached: bool = False) -> list[dict[str, np.ndarray]]:
  """This host's share of the first `eval_steps` validation batches (see the module docstring)."""
  hosts = jax.process_count()
  shard = seqio.ShardInfo(index=jax.process_index(), num_shards=hosts) if hosts > 1 else None
  corpus = data_lib.corpus_name(task_name)
  where = f"the {SPLIT!r} split of task {task_name!r}" + (f" (corpus {corpus!r})" if corpus else "")
  try:
    if corpus is not None:  # the corpus's own check names the file or setting at fault
      import objectives  # pylint: disable=g-import-not-at-top
      objectives.get_corpus(corpus).check(SPLIT)
    ds = seqio.get_dataset(
        task_name, task_feature_lengths=dict(task_feature_lengths),
        feature_converter=feature_converter, dataset_split=SPLIT, use_cached=use_cached,
        shuffle=False, num_epochs=None, shard_info=shard, verbose=False, seed=VALIDATION_SEED,
        batch_size=global_batch_size // hosts)
    batches = [{k: np.asarray(v, np.int32) for k, v in b.items()}
               for b in ds.take(eval_steps).as_numpy_iterator()]
  except (errors.ConfigError, ValueError, OSError, tf.errors.OpError) as e:
    raise ValidationDataError(
        f"EVAL_PERIOD is set, so in-loop validation reads {where}, which failed: "
        f"{errors.as_raised(e)}. Fix the split or set EVAL_PERIOD = None.") from e
  if len(batches) < eval_steps:  # repeated, so only an empty split ends early
    raise ValidationDataError(
        f"EVAL_PERIOD is set, but {where} gives no batch of {global_batch_size} x "
        f"{dict(task_feature_lengths)} (it is empty after preprocessing). Give the corpus "
        f"validation data, or set EVAL_PERIOD = None.")
  return batches


class Validator:
  """Evaluates parameters on the run's fixed validation batches."""

  def __init__(self, builder: trainer_lib.StepBuilder, batches: Sequence[Mapping[str, Any]],
               eval_period: int | None = None):
    self.builder = builder
    self.batches = list(batches)
    self.eval_period = eval_period
    self._fn = None

  def due(self, step: int, train_steps: int) -> bool:
    return self.eval_period is not None and (step % self.eval_period == 0 or step == train_steps)

  def compile(self):
    if self._fn is None:
      self._fn = self.builder.compile_eval()
    return self._fn

  def evaluate(self, params) -> dict[str, float]:
    """The eval/ metrics of `params` (sharded as the train state's)."""
    fn = self.compile()
    start = time.perf_counter()
    outs = [fn(params, trainer_lib.global_batch(b, self.builder.batch_shardings))
            for b in self.batches]
    per_batch = [metrics_lib.to_python(o) for o in outs]
    return summarize(per_batch, time.perf_counter() - start)


def summarize(per_batch: Sequence[Mapping[str, float]], seconds: float = float("nan")
              ) -> dict[str, float]:
  """eval/ metrics from each batch's summed metrics (float64, in batch order)."""
  total = {k: sum(float(b[k]) for b in per_batch) for k in per_batch[0]}
  n = len(per_batch)
  tokens = total.get("num_tokens", 0.0)
  out = {"loss": total["loss"] / n, "loss_per_token": total["loss"] / max(tokens, 1.0)}
  if "cross_ent_loss" in total:
    out["cross_ent_per_token"] = total["cross_ent_loss"] / max(tokens, 1.0)
  if "num_correct" in total:
    out["accuracy"] = total["num_correct"] / max(tokens, 1.0)
  out.update(num_tokens=tokens, num_batches=n, seconds=seconds)
  return {PREFIX + k: v for k, v in out.items()}


def log_line(step: int, values: Mapping[str, float]) -> str:
  """The harness's one line per evaluation."""
  return (f"step {step}: eval loss/token {values[PREFIX + 'loss_per_token']:.4f}, accuracy "
          f"{values.get(PREFIX + 'accuracy', float('nan')):.4f} over "
          f"{values[PREFIX + 'num_tokens']:,.0f} validation tokens "
          f"({values[PREFIX + 'num_batches']} batches, {values[PREFIX + 'seconds']:.1f} s)")


# -- a separate evaluation of a checkpoint ---------------------------------------------------------


def train_arguments() -> dict[str, Any]:
  """experiments.train.train's arguments under the parsed gin config (references evaluated)."""
  from experiments import loop  # pylint: disable=g-import-not-at-top  # loop imports this module
  args = {}
  for name, param in inspect.signature(loop.train).parameters.items():
    try:
      bound = gin.query_parameter(f"experiments.train.train.{name}")
    except ValueError:
      args[name] = param.default
      continue
    args[name] = gin_utils.value(bound)
  return args


def evaluate_loss(gin_files: Sequence[str], gin_bindings: Sequence[str] = (),
                  checkpoint: str | None = None, eval_steps: int | None = None) -> dict:
  """The in-loop validation metrics of a checkpoint, evaluated apart from training.

  Parses the run's gin stack as `experiments.train` does and evaluates the parameters of
  `checkpoint` (a step folder, MODEL_DIR or its checkpoints/; default MODEL_DIR's newest step) on
  the batches the loop uses (EVAL_STEPS unless `eval_steps`). Returns {'step', 'eval/...'}.
  """
  from experiments import loop  # pylint: disable=g-import-not-at-top
  loop.import_configurables()
  loop.parse_and_check(gin_files, gin_bindings)
  accelerators.start_up()  # TF off the GPUs; warns (or fails) when JAX runs on the CPU
  args = train_arguments()
  steps = args["eval_steps"] if eval_steps is None else eval_steps
  enabled(args["eval_period"] or 1, steps)  # the period is not used here, the steps are
  model, task_name = args["model"], args["mixture_or_task_name"]
  lengths, batch_size = args["task_feature_lengths"], args["batch_size"]
  partitioner = args["partitioner"] or partitioning.Partitioner()
  try:
    data_lib.check_feature_lengths(data_lib.get_task(task_name), lengths)
    builder = trainer_lib.StepBuilder(model, args["optimizer"], partitioner,
                                      model.input_shapes(batch_size, lengths),
                                      args["num_microbatches"])
  except ValueError as e:
    raise run_config.ConfigError(str(e)) from e
  step_dir = ckpt_lib.resolve_step_dir(checkpoint or args["model_dir"])
  batches = draw_batches(task_name, lengths, model.feature_converter_cls(pack=args["pack"]),
                         batch_size, steps, use_cached=args["use_cached_tasks"])
  params = ckpt_lib.restore_params(step_dir, builder.abstract_state.params,
                                   run_config.describe_model(model))
  values = Validator(builder, batches).evaluate(params)
  logging.info("%s (checkpoint %s)", log_line(int(step_dir.name), values), step_dir)
  return {"step": int(step_dir.name), **values}
