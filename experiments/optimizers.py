"""Optimizers and learning-rate schedules, all gin-configurable.

An `Optimizer` pairs an optax transformation that never applies the learning rate with a schedule
of the *global* training step. The trainer multiplies the transformation's updates by
`schedule(step)`. Keeping the two apart matters for finetuning and adaptation: a run started from
INITIAL_CHECKPOINT_PATH gets fresh optimizer state (optax's count restarts at 0) while the
schedule keeps following the absolute step, as in t5x (131,072 -> 141,072 uses rsqrt(131,072+)).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import gin
import jax
import jax.numpy as jnp
import optax

Schedule = Callable[[jnp.ndarray], jnp.ndarray]


@dataclasses.dataclass(frozen=True)
class Optimizer:
  """An update rule (learning rate not applied) and a learning-rate schedule of the global step."""
  tx: optax.GradientTransformation
  schedule: Schedule
  name: str = "optimizer"


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
) -> Optimizer:
  """Adafactor as the paper ran it (t5x defaults): decay 0.8, factored, clip 1.0, param scale."""
  tx = optax.adafactor(
      learning_rate=None,  # applied by the trainer from the global step
      min_dim_size_to_factor=min_dim_size_to_factor,
      decay_rate=decay_rate,
      multiply_by_parameter_scale=multiply_by_parameter_scale,
      clipping_threshold=clipping_threshold,
      momentum=momentum,
      eps=epsilon1,
      factored=factored,
  )
  return Optimizer(tx=tx, schedule=learning_rate, name="adafactor")


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
