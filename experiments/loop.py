"""The training loop behind `python -m experiments.train` (see that module for usage)."""

from __future__ import annotations

import logging
import os
import pathlib
import signal
import sys
import time
from typing import Any, Mapping, Sequence

import gin
import jax
import numpy as np

from experiments.runtime import checkpoints as ckpt_lib
from experiments import data as data_lib
from experiments import distributed
from experiments.runtime import gin_utils
from experiments.runtime import hostenv
from experiments import metrics as metrics_lib
from experiments import optimizers as optimizers_lib
from experiments import partitioning
from experiments import run_config
from experiments import trainer as trainer_lib

# Set by tests only: "STEP[:SIGNAL]" sends this process SIGKILL (default) or e.g. SIGTERM right
# after that step, a real kill -9 or preemption mid-run.
_SIGNAL_AT_STEP_ENV = "ZEROSHOT_HARNESS_SIGNAL_AT_STEP"


class NonFiniteError(FloatingPointError):
  """The loss or the gradients became NaN or Inf."""


class Preempted(RuntimeError):
  """SIGTERM arrived: a checkpoint of the current step was saved; rerun the command to resume."""


class _PreemptionFlag:
  """Turns SIGTERM (what schedulers send before evicting a job) into a flag the loop checks."""

  def __init__(self):
    self.raised = False
    self._previous = None

  def __enter__(self):
    try:
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    except ValueError:  # not the main thread (e.g. a grid running cells in threads)
      self._previous = None
    return self

  def _handle(self, signum, frame):
    del signum, frame
    self.raised = True

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)
    return False


@gin.configurable(module="experiments.train")
def train(
    model: Any = gin.REQUIRED,
    model_dir: str = gin.REQUIRED,
    mixture_or_task_name: str = gin.REQUIRED,
    task_feature_lengths: Mapping[str, int] = gin.REQUIRED,
    train_steps: int = gin.REQUIRED,
    batch_size: int = gin.REQUIRED,
    optimizer: optimizers_lib.Optimizer = gin.REQUIRED,
    partitioner: partitioning.Partitioner | None = None,
    initial_checkpoint_path: str | None = None,
    use_cached_tasks: bool = False,
    random_seed: int = 0,
    num_microbatches: int = 1,
    checkpoint_period: int = 1000,
    keep_checkpoints: int | None = None,
    async_checkpointing: bool = True,
    log_period: int = 100,
    pack: bool = True,
    save_data_state: bool = True,
) -> dict:
  """Trains until the absolute step `train_steps`; returns {'model_dir', 'final_step', 'metrics'}."""
  distributed.maybe_initialize()
  cfg = run_config.check_and_prepare(
      model=model, model_dir=model_dir, task_name=mixture_or_task_name,
      task_feature_lengths=task_feature_lengths, train_steps=train_steps, batch_size=batch_size,
      optimizer=optimizer, num_microbatches=num_microbatches,
      checkpoint_period=checkpoint_period, log_period=log_period,
      initial_checkpoint_path=initial_checkpoint_path)
  partitioner = partitioner or partitioning.Partitioner()
  input_shapes = model.input_shapes(batch_size, task_feature_lengths)
  try:  # shapes only (jax.eval_shape); also checks the batch against the mesh
    builder = trainer_lib.StepBuilder(model, optimizer, partitioner, input_shapes,
                                      num_microbatches)
  except ValueError as e:
    raise run_config.ConfigError(str(e)) from e
  model_dir = run_config.check_model_dir(cfg.model_dir)

  checkpointer = ckpt_lib.Checkpointer(model_dir, keep=keep_checkpoints,
                                       async_save=async_checkpointing)
  try:
    state, position, resumed = _initial_state(
        builder, checkpointer, initial_checkpoint_path, random_seed, train_steps,
        run_config.describe_model(model))
    resumed_step = checkpointer.latest_step() if resumed else None
    start_step = int(jax.device_get(state.step))
    if start_step >= train_steps:
      logging.info("MODEL_DIR already holds step %d >= TRAIN_STEPS %d: nothing to train.",
                   start_step, train_steps)
      last = metrics_lib.read_metrics(model_dir)
      return {"model_dir": str(model_dir), "final_step": start_step,
              "metrics": last[-1] if last else {}}
    batches = data_lib.TrainData(
        mixture_or_task_name, task_feature_lengths, model.feature_converter_cls(pack=pack),
        batch_size, seed=random_seed, model_dir=model_dir, position=position,
        state_step=resumed_step, use_cached=use_cached_tasks,
        save_iterator_state=save_data_state)
    step_fn = builder.compile()
    accounting = run_config.flops_per_step(model, task_feature_lengths, batch_size)
    peak, peak_source = metrics_lib.peak_flops_per_device()
    _log_startup(model, builder, partitioner, accounting, peak_source, start_step, train_steps,
                 resumed)
    writer = metrics_lib.MetricsWriter(model_dir, resume_step=start_step if resumed else None)
    meta_base = {"model": run_config.describe_model(model), "task": mixture_or_task_name,
                 "task_feature_lengths": dict(task_feature_lengths), "batch_size": batch_size}
    try:
      with _PreemptionFlag() as preemption:
        last = _loop(step_fn, builder, state, batches, checkpointer, writer, meta_base,
                     preemption, start_step=start_step, train_steps=train_steps,
                     checkpoint_period=checkpoint_period, log_period=log_period,
                     tokens_per_step=run_config.tokens_per_step(input_shapes),
                     flops_per_step=accounting["flops_per_step"], peak_per_device=peak,
                     model_dir=model_dir)
    finally:
      writer.close()
  finally:
    checkpointer.close()
  return {"model_dir": str(model_dir), "final_step": train_steps, "metrics": last}


def _initial_state(builder, checkpointer, initial_checkpoint_path, seed, train_steps,
                   description):
  """(state, data position, resumed?) from MODEL_DIR's latest step, an initial checkpoint or init."""
  latest = checkpointer.latest_step()
  abstract_train_state = {
      "step": builder.abstract_state.step, "rng": builder.abstract_state.rng,
      "opt_state": builder.abstract_state.opt_state}
  if latest is not None:
    params, rest, meta = checkpointer.restore(latest, builder.abstract_state.params,
                                              abstract_train_state, description)
    state = trainer_lib.TrainState(step=rest["step"], params=params, opt_state=rest["opt_state"],
                                   rng=rest["rng"])
    logging.info("Resumed from %s/%d (data position %s).", checkpointer.directory, latest,
                 meta.get("data_position"))
    return state, int(meta.get("data_position", 0)), True
  if initial_checkpoint_path:
    step_dir = ckpt_lib.resolve_step_dir(initial_checkpoint_path)
    start = int(step_dir.name)
    if start >= train_steps:
      raise ValueError(
          f"TRAIN_STEPS = {train_steps} is absolute and must exceed the step of "
          f"INITIAL_CHECKPOINT_PATH ({start}); e.g. {start} + the steps to train.")
    params = ckpt_lib.restore_params(step_dir, builder.abstract_state.params, description)
    logging.info("Initialised parameters from %s (step %d); fresh optimizer state.", step_dir,
                 start)
    return builder.make_state(params, start, seed), 0, False
  return builder.make_state(builder.init_params(seed), 0, seed), 0, False


def _loop(step_fn, builder, state, batches, checkpointer, writer, meta_base, preemption, *,
          start_step, train_steps, checkpoint_period, log_period, tokens_per_step, flops_per_step,
          peak_per_device, model_dir) -> dict:
  """Feeds, steps, checks finiteness one step behind, logs and saves; returns the last metrics."""
  kill_spec = os.environ.get(_SIGNAL_AT_STEP_ENV, "-1").split(":")
  kill_at = int(kill_spec[0])
  kill_signal = getattr(signal, kill_spec[1] if len(kill_spec) > 1 else "SIGKILL")
  num_devices = jax.device_count()
  bar = _progress_bar(start_step, train_steps)
  pending = None  # (step number, metrics) of the step whose finiteness is not yet checked
  last_metrics: dict = {}
  period_start, period_steps = time.perf_counter(), 0
  config_written = False

  def check(step, metrics):
    if not bool(jax.device_get(metrics["finite"])):
      values = metrics_lib.to_python(metrics)
      raise NonFiniteError(
          f"Non-finite loss or gradients at step {step} (loss={values.get('loss')}, "
          f"grad_norm={values.get('grad_norm')}). Stopped without saving; the last good "
          f"checkpoint is step {checkpointer.latest_step()} in {checkpointer.directory}.")

  for step in range(start_step + 1, train_steps + 1):
    batch = trainer_lib.global_batch(next(batches), builder.batch_shardings)
    state, metrics = step_fn(state, batch)
    period_steps += 1
    if pending is not None:
      check(*pending)
    pending = (step, metrics)
    if not config_written:
      run_config.write_config(model_dir, start_step)
      config_written = True
    if step % log_period == 0 or step == train_steps:
      check(*pending)
      values = metrics_lib.to_python(metrics)
      elapsed = time.perf_counter() - period_start
      seconds_per_step = elapsed / max(period_steps, 1)
      values.update(_rates(seconds_per_step, tokens_per_step, flops_per_step, num_devices,
                           peak_per_device))
      writer.write(step, values)
      last_metrics = values
      logging.info("step %d: loss/token %.4f, accuracy %.4f, %.0f tokens/s, MFU %.3f", step,
                   values.get("loss_per_token", float("nan")), values.get("accuracy", float("nan")),
                   values["tokens_per_second"], values.get("mfu", float("nan")))
      period_start, period_steps = time.perf_counter(), 0
    preempted = preemption.raised
    if step % checkpoint_period == 0 or step == train_steps or preempted:
      check(*pending)
      batches.save_state(step, keep_steps=checkpointer.all_steps() + [step])
      checkpointer.save(step, state.params, state.train_state_item(),
                        {**meta_base, "step": step, "data_position": batches.position})
    if bar is not None:
      bar.update(1)
    if step == kill_at:
      os.kill(os.getpid(), kill_signal)
    if preempted:
      checkpointer.wait()
      raise Preempted(f"SIGTERM: saved step {step} in {checkpointer.directory}; the same "
                      f"command resumes from it.")
  if pending is not None:
    check(*pending)
  if bar is not None:
    bar.close()
  return last_metrics


def _rates(seconds_per_step, tokens_per_step, flops_per_step, num_devices, peak_per_device):
  out = {"seconds_per_step": seconds_per_step,
         "tokens_per_second": tokens_per_step / seconds_per_step}
  if flops_per_step:
    per_device = flops_per_step / seconds_per_step / num_devices
    out["tflops_per_second_per_device"] = per_device / 1e12
    if np.isfinite(peak_per_device) and peak_per_device > 0:
      out["mfu"] = per_device / peak_per_device
  return out


def _progress_bar(start, total):
  if not sys.stderr.isatty() or jax.process_index() != 0:
    return None
  try:
    import tqdm  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None
  return tqdm.tqdm(total=total, initial=start, unit="step", dynamic_ncols=True)


def _log_startup(model, builder, partitioner, accounting, peak_source, start_step, train_steps,
                 resumed):
  counts = ckpt_lib.describe_tree(builder.abstract_params)
  logging.info("Resolved gin config:\n%s", gin.config_str())
  logging.info("Model: %s; %s parameters in %d arrays.", run_config.describe_model(model),
               f"{counts['params']:,}", counts["arrays"])
  logging.info("FLOPs per step: %.4g (weights %.4g, attention %.4g; convention: %s).",
               accounting["flops_per_step"] or float("nan"),
               accounting.get("weight_flops_per_step", float("nan")),
               accounting.get("attention_flops_per_step", float("nan")), accounting["convention"])
  logging.info("Mesh: %s. Peak: %s. Host allocator: %s.", partitioner.describe(), peak_source,
               hostenv.allocator_summary())
  logging.info("%s at step %d; training to step %d.", "Resuming" if resumed else "Starting",
               start_step, train_steps)


def run(gin_files: Sequence[str], gin_bindings: Sequence[str] = ()) -> dict:
  """Parses gin afresh and trains in-process (the grid's entry point); returns train()'s summary."""
  distributed.maybe_initialize()
  import_configurables()
  parse_and_check(gin_files, gin_bindings)
  return train()


def parse_and_check(gin_files: Sequence[str], gin_bindings: Sequence[str]) -> None:
  """Parses gin afresh; every argument train() requires is bound, every %gin.REQUIRED is set."""
  gin_utils.parse_gin(gin_files, gin_bindings, finalize=False)
  run_config.check_train_bindings(train)
  gin_utils.finalize_config(gin_files)


def import_configurables() -> None:
  """Modules whose gin configurables run files refer to (models, objectives, optimizers)."""
  # pylint: disable=g-import-not-at-top,unused-import
  import arch.accounting  # noqa: F401
  import arch.models  # noqa: F401
  data_lib.import_task_modules()


def main(argv: Sequence[str]) -> int:
  """`python -m experiments.train` (under experiments.runtime.cli): 0 done, 1 non-finite, 143
  preempted; configuration errors (exit 2) propagate to cli."""
  files, bindings, rest = gin_utils.parse_gin_flags(argv)
  if rest:
    raise run_config.ConfigError(f"unexpected arguments {rest}; expected {gin_utils.USAGE}")
  distributed.maybe_initialize()
  import_configurables()  # gin files name these configurables: register them before parsing
  parse_and_check(files, bindings)
  try:
    summary = train()
  except NonFiniteError as e:
    logging.error("%s", e)
    print(f"error: {e}", file=sys.stderr)
    return 1
  except Preempted as e:
    logging.warning("%s", e)
    return 128 + signal.SIGTERM
  except ckpt_lib.CheckpointError as e:
    raise run_config.ConfigError(str(e)) from e
  except run_config.ConfigError:
    raise
  except ValueError as e:  # raised by configurables (model, task) while gin builds them
    raise run_config.ConfigError(str(e)) from e
  logging.info("Done: %s", summary)
  return 0
