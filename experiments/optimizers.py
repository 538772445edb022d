"""Optimizers and learning-rate schedules, all gin-configurable.

An `Optimizer` pairs an optax transformation that never applies the learning rate with a schedule
of the *global* training step. The trainer multiplies the transformation's updates by
`schedule(step)`, so the learning rate follows the absolute step in every stage, as in t5x
(finetuning 131,072 -> 141,072 uses rsqrt(131,072+) where the schedule is rsqrt). A run started
from INITIAL_CHECKPOINT_PATH restores the checkpoint's optimizer state by default (t5x's
finetuning restores the whole train state); experiments.train.train.restore_optimizer_state =
False starts it fresh instead (optax's count, and so Adafactor's decay, restart at 0).

An optimizer that needs the parameters' logical axis names (t5x's Adafactor) has a `build`
function; `for_params(param_axes)` gives the optimizer with its transformation, and the trainer
calls it with the model's names before anything compiles.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import gin
import jax
import jax.numpy as jnp
import optax

from experiments import adafactor as adafactor_lib
from experiments.runtime import errors

Schedule = Callable[[jnp.ndarray], jnp.ndarray]


@dataclasses.dataclass(frozen=True)
class Optimizer:
  """An update rule (learning rate not applied) and a learning-rate schedule of the global step."""
  tx: optax.GradientTransformation
  schedule: Schedule
  name: str = "optimizer"
  # param_axes (the model's logical names per parameter) -> tx, for update rules that need them.
  build: Callable[[Any], optax.GradientTransformation] | None = None

  def for_params(self, param_axes: Any) -> "Optimizer":
    """This optimizer with its transformation for parameters of these logical axis names."""
    if self.build is None:
      return self
    return dataclasses.replace(self, tx=self.build(param_axes), build=None)


@gin.configurable(module="experiments.optimizers")
def rsqrt_schedule(base: float = 1.0, warmup_steps: int = 10_000) -> Schedule:
  """The paper's pretraining LR, base / sqrt(max(step, warmup_steps)) (0.01 until 10k steps)."""
  if warmup_steps <= 0:
    raise ValueError(f"rsqrt_schedule.warmup_steps must be > 0, got {warmup_steps}.")

  def schedule(step):
    step_f = jnp.asarray(step, jnp.float32)
    return base / jnp.sqrt(jnp.maximum(step_f, float(warmup_steps)))

  return schedule


@gin.configurable(module="experiments.optimizers")
def constant_schedule(value: float = 1e-3) -> Schedule:
  """A constant LR (the paper's MTF finetuning uses 1e-3)."""

  def schedule(step):
    return jnp.full((), value, jnp.float32) + 0.0 * jnp.asarray(step, jnp.float32)

  return schedule


@gin.configurable(module="experiments.optimizers")
def warmup_cosine_schedule(
    peak_value: float = 3e-4, warmup_steps: int = 1000, decay_steps: int = 100_000,
    end_value: float = 3e-5, start_step: int = 0,
) -> Schedule:
  """Linear warmup to `peak_value`, then cosine decay to `end_value` at `decay_steps`.

  `start_step` shifts the schedule so it can start at an absolute step (e.g. after adaptation).
  """
  if decay_steps <= warmup_steps:
    raise ValueError(
        f"warmup_cosine_schedule.decay_steps ({decay_steps}) must exceed warmup_steps "
        f"({warmup_steps})."
    )
  inner = optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=peak_value, warmup_steps=warmup_steps,
      decay_steps=decay_steps, end_value=end_value,
  )

  def schedule(step):
    return inner(jnp.maximum(jnp.asarray(step, jnp.int32) - start_step, 0)).astype(jnp.float32)

  return schedule


FACTORINGS = ("t5x", "optax")


@gin.configurable(module="experiments.optimizers")
def adafactor(
    learning_rate: Schedule = gin.REQUIRED,
    decay_rate: float = 0.8,
    factored: bool = True,
    clipping_threshold: float | None = 1.0,
    multiply_by_parameter_scale: bool = True,
    momentum: float | None = None,
    min_dim_size_to_factor: int = 128,
    epsilon1: float = 1e-30,
    factoring: str = "t5x",
    factor_rules: Mapping[str, str] | None = None,
) -> Optimizer:
  """Adafactor as the paper ran it (t5x): decay 0.8, factored, clip 1.0, param scale, no momentum.

  factoring='t5x' (default): t5x's Adafactor (experiments/adafactor.py), the second moment
  factored by the parameters' logical axes under t5x's standard rules updated by `factor_rules`
  ({axis name: 'row' | 'column' | 'batch' | 'none'}), scanned `layers` a batch axis (per-layer
  clipping and parameter scale). factoring='optax': optax.adafactor (factors the two largest axes
  of any rank, clipping and parameter scale over whole arrays). Momentum, when set, is optax's ema
  of the update before the learning rate (t5x's includes it; the paper used none).
  """
  if factoring not in FACTORINGS:
    raise errors.ConfigError(f"experiments.optimizers.adafactor.factoring = {factoring!r}; "
                             f"expected one of {', '.join(map(repr, FACTORINGS))}.")
  if factoring == "optax":
    if factor_rules:
      raise errors.ConfigError("experiments.optimizers.adafactor.factor_rules applies to "
                               "factoring='t5x' only; the 'optax' factoring picks axes by size.")
    tx = optax.adafactor(learning_rate=None, decay_rate=decay_rate, factored=factored,
                         clipping_threshold=clipping_threshold,
                         multiply_by_parameter_scale=multiply_by_parameter_scale,
                         momentum=momentum, min_dim_size_to_factor=min_dim_size_to_factor,
                         eps=epsilon1)
    return Optimizer(tx=tx, schedule=learning_rate, name="adafactor")
  rules = adafactor_lib.merged_rules(factor_rules)  # kinds checked while gin builds it

  def build(param_axes):
    kinds = adafactor_lib.axis_kinds(param_axes, rules, factor_rules)
    parts = [adafactor_lib.scale_by_adafactor(
        kinds, factored=factored, decay_rate=decay_rate,
        min_dim_size_to_factor=min_dim_size_to_factor, epsilon1=epsilon1,
        clipping_threshold=clipping_threshold,
        multiply_by_parameter_scale=multiply_by_parameter_scale)]
    if momentum is not None:
      parts.append(optax.ema(momentum, debias=False, accumulator_dtype=jnp.float32))
    parts.append(optax.scale(-1.0))
    return optax.chain(*parts)

  return Optimizer(tx=_needs_axes("adafactor(factoring='t5x')"), schedule=learning_rate,
                   name="adafactor", build=build)


def _needs_axes(what: str) -> optax.GradientTransformation:
  """The `tx` of an optimizer not yet given its parameters' logical axes: using it is an error."""

  def fail(*args, **kwargs):
    del args, kwargs
    raise errors.ConfigError(f"{what} factors by the parameters' logical axis names: build it "
                             f"with optimizer.for_params(model.param_logical_axes(shapes)) "
                             f"first (the trainer does).")

  return optax.GradientTransformation(fail, fail)


@gin.configurable(module="experiments.optimizers")
def adamw(
    learning_rate: Schedule = gin.REQUIRED,
    b1: float = 0.9,
    b2: float = 0.95,
    eps: float = 1e-8,
    weight_decay: float = 0.1,
    max_grad_norm: float | None = 1.0,
) -> Optimizer:
  """AdamW (decoupled weight decay, scaled by the LR as in optax) with optional global-norm clip."""
  parts = []
  if max_grad_norm is not None:
    parts.append(optax.clip_by_global_norm(max_grad_norm))
  parts += [
      optax.scale_by_adam(b1=b1, b2=b2, eps=eps),
      optax.add_decayed_weights(weight_decay, mask=_decay_mask),
      optax.scale(-1.0),
  ]
  return Optimizer(tx=optax.chain(*parts), schedule=learning_rate, name="adamw")


def _decay_mask(params):
  """No weight decay on vectors (norm scales) and scalars, as is customary."""
  return jax.tree_util.tree_map(lambda p: jnp.ndim(p) >= 2, params)
