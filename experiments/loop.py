"""The training loop behind `python -m experiments.train` (see that module for usage)."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from typing import Any, Callable, Mapping, Sequence

import gin
import jax

from experiments.runtime import accelerators
from arch import layouts
from experiments.runtime import checkpoints as ckpt_lib
from experiments.runtime import errors
from experiments import data as data_lib
from experiments import distributed
from experiments.runtime import gin_utils
from experiments.runtime import hostenv
from experiments import metrics as metrics_lib
from experiments import optimizers as optimizers_lib
from experiments import partitioning
from experiments import profiling
from experiments import run_config
from experiments import trainer as trainer_lib
from experiments import validation

# Set by tests only: "STEP[:SIGNAL]" sends this process SIGKILL (default) or e.g. SIGTERM right
# after that step, a real kill -9 or preemption mid-run.
_SIGNAL_AT_STEP_ENV = "ZEROSHOT_HARNESS_SIGNAL_AT_STEP"


class NonFiniteError(FloatingPointError):
  """The loss or the gradients became NaN or Inf."""


class Preempted(RuntimeError):
  """SIGTERM or SIGINT (Ctrl-C) arrived: the step in progress was finished and saved, or, before
  the first step, the run stopped with nothing written; rerun the command to resume."""

  def __init__(self, signum: int, message: str):
    super().__init__(message)
    self.signum = signum

  @property
  def exit_code(self) -> int:
    return 128 + self.signum  # the shell's convention: 143 for SIGTERM, 130 for Ctrl-C


class DataStallError(RuntimeError):
  """The input pipeline produced no batch within train.first_batch_timeout seconds."""


_SIGNAL_NAMES = {signal.SIGTERM: "SIGTERM", signal.SIGINT: "Ctrl-C (SIGINT)"}


class _Stop(BaseException):
  """Raised by the signal handler on a second signal; a BaseException, so no library's
  `except Exception` on the way swallows it. _Signals turns it into Preempted."""

  def __init__(self, signum: int, message: str):
    super().__init__(message)
    self.signum = signum


class _Signals:
  """SIGTERM (what schedulers send before evicting a job) and SIGINT (Ctrl-C) for one run.

  The handler records the signal. Before the first step, `check()` at the end of each start-up
  phase (and every half second while waiting for the first batch) stops the run with nothing
  saved; once steps run, the loop finishes the step, saves it and raises Preempted. Raising from
  the handler itself could leave JAX or TensorFlow mid-call and crash the exit; only a second
  signal does that, to stop at once (the last complete checkpoint stays).
  """

  def __init__(self, defer: bool = False):
    self.signum: int | None = None
    self._previous: dict[int, Any] = {}
    # Several processes: one stopping alone before the first step would leave the others waiting
    # in its collectives, so a first signal waits for the first steps' vote (all save, then stop).
    self._defer = defer

  def __enter__(self):
    try:
      for signum in _SIGNAL_NAMES:
        self._previous[signum] = signal.signal(signum, self._handle)
    except ValueError:  # not the main thread (e.g. a grid running cells in threads)
      pass
    return self

  def _handle(self, signum, frame):
    del frame
    if self.signum is not None:
      raise _Stop(signum, f"{_SIGNAL_NAMES[signum]} again: stopped at once; the last complete "
                          f"checkpoint stays and the same command resumes from it.")
    self.signum = signum

  def check(self) -> None:
    """Before the first step: stops the run if a signal came (nothing is saved yet)."""
    if self.signum is not None and not self._defer:
      raise Preempted(self.signum, f"{_SIGNAL_NAMES[self.signum]} before the first step: stopped "
                                   f"with nothing saved; the same command starts again.")

  def __exit__(self, exc_type, exc, tb):
    for signum, previous in self._previous.items():
      signal.signal(signum, previous)
    if isinstance(exc, _Stop):
      raise Preempted(exc.signum, str(exc)) from None
    return False


class _FirstBatch:
  """Draws the first batch in a thread (while the step compiles) and waits for it with a deadline.

  The main thread waits in short slices, so SIGTERM and Ctrl-C stop the run while the pipeline is
  stuck; a pipeline with no batch by the deadline is stopped with a message naming its source.
  """

  def __init__(self, batches, timeout: float, source: str):
    self._deadline = time.monotonic() + timeout
    self._timeout, self._source = timeout, source
    self._done = threading.Event()
    self._batch, self._error = None, None
    threading.Thread(target=self._fetch, args=(batches,), name="first-batch", daemon=True).start()

  def _fetch(self, batches):
    try:
      self._batch = next(batches)
    except BaseException as e:  # pylint: disable=broad-except  # re-raised in the main thread
      self._error = e
    finally:
      self._done.set()

  def get(self, check: Callable[[], None]):
    """The batch; `check()` runs every half second of waiting (it may raise to stop)."""
    while not self._done.wait(timeout=0.5):
      check()
      if time.monotonic() > self._deadline:
        raise DataStallError(
            f"The input pipeline of {self._source} gave no batch in {self._timeout:g} s, so the "
            f"run stopped. A slow source may need a larger experiments.train.train."
            f"first_batch_timeout; otherwise check the corpus and its preprocessing.")
    if self._error is not None:
      raise self._error
    return self._batch


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
    restore_optimizer_state: bool = True,
    use_cached_tasks: bool = False,
    random_seed: int = 0,
    num_microbatches: int = 1,
    checkpoint_period: int = 1000,
    keep_checkpoints: int | None = 3,
    keep_period: int | None = None,
    checkpoint_minutes: float | None = None,
    async_checkpointing: bool = True,
    log_period: int = 100,
    pack: bool = True,
    save_data_state: bool = True,
    first_batch_timeout: float = 300.0,
    log_config: bool = True,
    eval_period: int | None = None,
    eval_steps: int = 20,
    profile_steps: Sequence[int] | None = None,
) -> dict:
  """Trains until the absolute step `train_steps`; returns {'model_dir', 'final_step', 'metrics'}.

  From `initial_checkpoint_path` (MTF, adaptation) it takes the parameters, the step and, unless
  `restore_optimizer_state` is False, the optimizer state (t5x's finetuning restores the whole
  train state); the RNG comes from `random_seed`.

  One run per MODEL_DIR (run_config.ModelDirLock). SIGTERM or Ctrl-C raise Preempted (see
  _Signals); the first batch must come within `first_batch_timeout` seconds of the pipeline's
  start (it is drawn while the step compiles), else DataStallError. Every `eval_period` steps
  (None: never) and at the last step, the loss on `eval_steps` validation batches is logged as
  eval/ metrics (experiments/validation.py). `profile_steps` = (start, stop) traces steps start
  to stop - 1 with jax.profiler into MODEL_DIR/plugins/profile (experiments/profiling.py).
  eval/ metrics (experiments/validation.py). Checkpoints: every `checkpoint_period` steps, at the
  end, and `checkpoint_minutes` after the last save (None: no time-based save); the last
  `keep_checkpoints` (None: all) are kept, plus every step divisible by `keep_period` for good.
  """
  distributed.maybe_initialize()
  accelerators.start_up()  # after jax.distributed: TF off the GPUs, JAX not silently on the CPU
  with _Signals(defer=jax.process_count() > 1) as signals:
    cfg = run_config.check_and_prepare(
        model=model, model_dir=model_dir, task_name=mixture_or_task_name,
        task_feature_lengths=task_feature_lengths, train_steps=train_steps,
        batch_size=batch_size, optimizer=optimizer, num_microbatches=num_microbatches,
        checkpoint_period=checkpoint_period, log_period=log_period,
        initial_checkpoint_path=initial_checkpoint_path)
    run_config.check_checkpoint_policy(keep_checkpoints, keep_period, checkpoint_minutes)
    validate = validation.enabled(eval_period, eval_steps)
    profiling.check_steps(profile_steps)  # a bad window stops the run before any compilation
    partitioner = partitioner or partitioning.Partitioner()
    input_shapes = model.input_shapes(batch_size, task_feature_lengths)
    try:  # shapes only (jax.eval_shape); also checks the batch against the mesh
      builder = trainer_lib.StepBuilder(model, optimizer, partitioner, input_shapes,
                                        num_microbatches)
    except ValueError as e:
      raise run_config.ConfigError(str(e)) from e
    requested_dtype = getattr(getattr(model, "config", None), "dtype", None)
    model = builder.model  # 'auto' settings resolved for the mesh's platform
    model_dir = run_config.check_model_dir(cfg.model_dir)
    description = run_config.describe_model(model)
    signals.check()  # here and below: a signal before the first step stops at a safe point
    with run_config.ModelDirLock(model_dir):
      latest = ckpt_lib.latest_complete_step(ckpt_lib.checkpoints_dir(model_dir))
      if latest is not None:  # before any restore, pipeline or compilation
        run_config.check_resume(latest, task_name=mixture_or_task_name,
                                task_feature_lengths=task_feature_lengths, batch_size=batch_size,
                                model_description=description)
      checkpointer = ckpt_lib.Checkpointer(model_dir, keep=keep_checkpoints,
                                           async_save=async_checkpointing, keep_period=keep_period,
                                           save_minutes=checkpoint_minutes,
                                           time_check_period=log_period)
      try:
        state, position, resumed_step = _initial_state(
            builder, checkpointer, initial_checkpoint_path, random_seed, train_steps,
            description, restore_optimizer_state)
        signals.check()
        start_step = int(jax.device_get(state.step))
        if start_step >= train_steps:
          logging.info("MODEL_DIR already holds step %d >= TRAIN_STEPS %d: nothing to train.",
                       start_step, train_steps)
          last = [r for r in metrics_lib.read_metrics(model_dir) if "loss" in r]  # not eval/
          return {"model_dir": str(model_dir), "final_step": start_step,
                  "metrics": last[-1] if last else {}}
        if cfg.raw_length is not None:
          data_lib.check_corpus_size(mixture_or_task_name, cfg.raw_length, batch_size)
        validator = None
        if validate:  # drawn now: a split without data stops the run before compilation
          validator = validation.Validator(builder, validation.draw_batches(
              mixture_or_task_name, task_feature_lengths, model.feature_converter_cls(pack=pack),
              batch_size, eval_steps, use_cached=use_cached_tasks), eval_period)
          signals.check()
        batches = data_lib.TrainData(
            mixture_or_task_name, task_feature_lengths, model.feature_converter_cls(pack=pack),
            batch_size, seed=random_seed, model_dir=model_dir, position=position,
            state_step=resumed_step, use_cached=use_cached_tasks,
            save_iterator_state=save_data_state)
        signals.check()
        corpus = data_lib.corpus_name(mixture_or_task_name)
        first_batch = _FirstBatch(batches, first_batch_timeout,
                                  f"task {mixture_or_task_name!r}"
                                  + (f" (corpus {corpus!r})" if corpus else ""))
        step_fn = builder.compile()
        signals.check()
        accounting = run_config.flops_per_step(model, task_feature_lengths, batch_size)
        peak, peak_source = metrics_lib.peak_flops_per_device(dtype=_activation_dtype(model))
        _log_startup(model, builder, partitioner, accounting, peak_source, start_step,
                     train_steps, resumed_step is not None, log_config, model_dir,
                     requested_dtype)
        first = first_batch.get(signals.check)
        writer = metrics_lib.MetricsWriter(model_dir, start_step)
        meta_base = {"model": description, "task": mixture_or_task_name,
                     "task_feature_lengths": dict(task_feature_lengths),
                     "batch_size": batch_size}
        profile = profiling.ProfileWindow(model_dir, profile_steps, start_step + 1, train_steps)
        try:
          last = _loop(step_fn, builder, state, batches, first, checkpointer, writer, meta_base,
                       signals, validator, profile, start_step=start_step,
                       train_steps=train_steps, checkpoint_period=checkpoint_period,
                       log_period=log_period,
                       tokens_per_step=run_config.tokens_per_step(input_shapes),
                       flops_per_step=accounting["flops_per_step"], peak_per_device=peak,
                       model_dir=model_dir)
        finally:
          profile.close()
          writer.close()
      finally:
        checkpointer.close()
  return {"model_dir": str(model_dir), "final_step": train_steps, "metrics": last}


def _initial_state(builder, checkpointer, initial_checkpoint_path, seed, train_steps,
                   description, restore_optimizer_state=True):
  """(state, data position, restored step or None) from MODEL_DIR's newest step that restores, an
  initial checkpoint (parameters, step and optimizer state unless `restore_optimizer_state` is
  False), or a fresh init."""
  abstract_train_state = {
      "step": builder.abstract_state.step, "rng": builder.abstract_state.rng,
      "opt_state": builder.abstract_state.opt_state}
  restored = checkpointer.restore_latest(builder.abstract_state.params, abstract_train_state,
                                         description)
  if restored is not None:
    step, params, rest, meta = restored
    state = trainer_lib.TrainState(step=rest["step"], params=params, opt_state=rest["opt_state"],
                                   rng=rest["rng"])
    logging.info("Resumed from %s/%d (data position %s).", checkpointer.directory, step,
                 meta.get("data_position"))
    return state, int(meta.get("data_position", 0)), step
  if initial_checkpoint_path:
    step_dir = ckpt_lib.resolve_step_dir(initial_checkpoint_path)
    start = int(step_dir.name)
    if start >= train_steps:
      raise run_config.ConfigError(
          f"TRAIN_STEPS = {train_steps} is absolute and must exceed the step of "
          f"INITIAL_CHECKPOINT_PATH ({start}); e.g. {start} + the steps to train.")
    params = ckpt_lib.restore_params(step_dir, builder.abstract_state.params, description,
                                     convert=layouts.plan)  # scanned <-> unrolled layers
    opt_state = None
    if restore_optimizer_state:
      opt_state = ckpt_lib.restore_train_state(step_dir, abstract_train_state)["opt_state"]
    logging.info("Initialised parameters and %s from %s; the step continues from %d.",
                 "optimizer state" if restore_optimizer_state else
                 "a fresh optimizer state (train.restore_optimizer_state = False)", step_dir, start)
    return builder.make_state(params, start, seed, opt_state=opt_state), 0, None
  return builder.make_state(builder.init_params(seed), 0, seed), 0, None


def _loop(step_fn, builder, state, batches, first_batch, checkpointer, writer, meta_base,
          signals, validator, profile, *, start_step, train_steps, checkpoint_period, log_period,
          tokens_per_step, flops_per_step, peak_per_device, model_dir) -> dict:
  """Feeds, steps, checks finiteness one step behind, logs and saves; returns the last metrics.

  data_wait_seconds_per_step is the time the loop was blocked on the input iterator (next batch),
  averaged over the log period beside seconds_per_step; steps dispatch asynchronously, so the
  device may be busy with the previous step meanwhile: it bounds the input stall from above.
  """
  kill_spec = os.environ.get(_SIGNAL_AT_STEP_ENV, "-1").split(":")
  kill_at = int(kill_spec[0])
  kill_signal = getattr(signal, kill_spec[1] if len(kill_spec) > 1 else "SIGKILL")
  num_devices = jax.device_count()
  vote = distributed.StopVote()
  bar = _progress_bar(start_step, train_steps)
  pending = None  # (step number, metrics) of the step whose finiteness is not yet checked
  last_metrics: dict = {}
  period_start, period_steps, period_wait = time.perf_counter(), 0, 0.0
  config_written = False

  def check(step, metrics):
    if not bool(jax.device_get(metrics["finite"])):
      values = metrics_lib.to_python(metrics)
      good = checkpointer.latest_step()
      raise NonFiniteError(
          f"Non-finite loss or gradients at step {step} (loss={values.get('loss')}, "
          f"grad_norm={values.get('grad_norm')}). Stopped without saving; "
          + (f"the last good checkpoint is step {good} in {checkpointer.directory}." if good
             is not None else f"no checkpoint was saved yet in {checkpointer.directory}."))

  for step in range(start_step + 1, train_steps + 1):
    profile.before_step(step)
    with jax.profiler.StepTraceAnnotation("train", step_num=step):
      wait_start = time.perf_counter()
      local = first_batch if step == start_step + 1 else next(batches)
      period_wait += time.perf_counter() - wait_start
      batch = trainer_lib.global_batch(local, builder.batch_shardings)
      state, metrics = step_fn(state, batch)
    profile.after_step(step, (state, metrics))
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
      values["data_wait_seconds_per_step"] = period_wait / max(period_steps, 1)
      writer.write(step, values)
      last_metrics = values
      logging.info("step %d: loss/token %.4f, accuracy %.4f, %.3f s/step (data wait %.3f s), "
                   "%.0f tokens/s, MFU %s", step,
                   values.get("loss_per_token", float("nan")), values.get("accuracy", float("nan")),
                   seconds_per_step, values["data_wait_seconds_per_step"],
                   values["tokens_per_second"], metrics_lib.format_mfu(values.get("mfu")))
      period_start, period_steps, period_wait = time.perf_counter(), 0, 0.0
    if validator is not None and validator.due(step, train_steps):
      check(*pending)
      eval_start = time.perf_counter()
      values = validator.evaluate(state.params)  # before the next step donates the state
      writer.write(step, values)
      logging.info("%s", validation.log_line(step, values))
      period_start += time.perf_counter() - eval_start  # s/step counts training only
    stop = vote.agreed(signals.signum)  # every process: the same answer at the same step
    preempted = stop != 0
    timed = checkpointer.time_due(step)  # on several hosts a collective: every host calls it
    if step % checkpoint_period == 0 or step == train_steps or preempted or timed:
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
      where = "" if signals.signum == stop else " (received by another process)"
      raise Preempted(stop, f"{_SIGNAL_NAMES[stop]}{where}: saved step {step} in "
                            f"{checkpointer.directory}; the same command resumes from it.")
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
    mfu = metrics_lib.mfu(per_device, peak_per_device)
    if mfu is not None:  # an unknown chip's peak: no 'mfu' key rather than NaN
      out["mfu"] = mfu
  return out


def _activation_dtype(model) -> str:
  """The resolved activation dtype's name ('float32' for a model without a TransformerConfig)."""
  config = getattr(model, "config", None)
  return str(config.activation_dtype) if hasattr(config, "activation_dtype") else "float32"


def _progress_bar(start, total):
  if not sys.stderr.isatty() or jax.process_index() != 0:
    return None
  try:
    import tqdm  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None
  return tqdm.tqdm(total=total, initial=start, unit="step", dynamic_ncols=True)


def _log_startup(model, builder, partitioner, accounting, peak_source, start_step, train_steps,
                 resumed, log_config, model_dir, requested_dtype=None):
  counts = ckpt_lib.describe_tree(builder.abstract_params)
  if log_config:
    logging.info("Resolved gin config:\n%s", gin.config_str())
  else:  # e.g. each stage of a grid: the file holds it
    logging.info("Resolved gin config: %s/config.gin (written after the first step).", model_dir)
  logging.info("Model: %s; %s parameters in %d arrays.", run_config.describe_model(model),
               f"{counts['params']:,}", counts["arrays"])
  logging.info("FLOPs per step: %.4g (weights %.4g, attention %.4g; convention: %s).",
               accounting["flops_per_step"] or float("nan"),
               accounting.get("weight_flops_per_step", float("nan")),
               accounting.get("attention_flops_per_step", float("nan")), accounting["convention"])
  logging.info("Mesh: %s. Peak: %s. Host allocator: %s.", partitioner.describe(), peak_source,
               hostenv.allocator_summary())
  if requested_dtype is not None:
    # The gin config above may say 'auto'; this is what it became on this mesh's platform.
    logging.info("Activations: %s (TransformerConfig.dtype = %r on %s); parameters, softmax, "
                 "norms and the loss in float32.", _activation_dtype(model), requested_dtype,
                 partitioner.platform)
  logging.info("%s at step %d; training to step %d.", "Resuming" if resumed else "Starting",
               start_step, train_steps)


def run(gin_files: Sequence[str], gin_bindings: Sequence[str] = (),
        log_config: bool = True) -> dict:
  """Parses gin afresh and trains in-process (the grid's entry point); returns train()'s summary.

  log_config=False logs where the resolved config is written instead of the whole config.
  """
  import_configurables()
  parse_and_check(gin_files, gin_bindings)
  distributed.maybe_initialize()  # after parsing: experiments.distributed.initialize.* may be bound
  return train(log_config=log_config)


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
  SIGTERM, 130 Ctrl-C; configuration errors (exit 2) propagate to cli."""
  files, bindings, rest = gin_utils.parse_gin_flags(argv)
  if rest:
    raise run_config.ConfigError(gin_utils.unknown_flag_message(rest))
  import_configurables()  # gin files name these configurables: register them before parsing
  parse_and_check(files, bindings)
  distributed.maybe_initialize()  # after parsing: experiments.distributed.initialize.* may be bound
  try:
    summary = train()
  except Exception as raised:  # pylint: disable=broad-except
    e = errors.as_raised(raised)
    if isinstance(e, NonFiniteError):
      logging.error("%s", e)
      print(f"error: {e}", file=sys.stderr)
      return 1
    if isinstance(e, Preempted):
      logging.warning("%s", e)
      return e.exit_code
    if isinstance(e, ValueError) and not isinstance(e, errors.ConfigError):
      # raised by configurables (model, task) while gin builds them
      raise run_config.ConfigError(str(e)) from e
    raise e from e.__cause__
  logging.info("Done: %s", summary)
  return 0
