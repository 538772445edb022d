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
import numpy as np
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
  """Adafactor as the paper ran it (t5x defaults): decay 0.8, factored, clip 1.0, param scale.

  optax.adafactor's chain, in its order and with its state tree, with the learning rate left to
  the trainer. Two links are replaced by equivalents that are faster on CPU (see their docstrings):
  `scale_by_factored_rms` (optax's statistics and state; outer-axis means as a GEMV) and
  `scale_by_param_rms` (optax.scale_by_param_block_rms's value in one pass).
  """
  parts = [scale_by_factored_rms(factored=factored, decay_rate=decay_rate,
                                 min_dim_size_to_factor=min_dim_size_to_factor, epsilon=epsilon1)]
  if clipping_threshold is not None:
    parts.append(optax.clip_by_block_rms(clipping_threshold))
  if multiply_by_parameter_scale:
    parts.append(scale_by_param_rms())
  if momentum is not None:
    parts.append(optax.ema(momentum, debias=False, accumulator_dtype=jnp.float32))
  parts.append(optax.scale(-1.0))
  return Optimizer(tx=optax.chain(*parts), schedule=learning_rate, name="adafactor")


def scale_by_factored_rms(factored: bool = True, decay_rate: float = 0.8,
                          min_dim_size_to_factor: int = 128,
                          epsilon: float = 1e-30) -> optax.GradientTransformation:
  """optax.scale_by_factored_rms (Adafactor's second-moment scaling) with the same state.

  Same statistics, update and optax.FactoredState tree (its init is optax's), so checkpoints and
  optax's own update interchange. The one difference: on CPU, a mean over a matrix's outer axis
  (the column statistics of the [256, 32000] vocabulary projection) is a ones-GEMV, because
  YNNPACK's outer-axis reduction fused into the update is slow there (figures in
  benchmarks/README.md). Values agree with optax to float32 summation order.
  """
  reference = optax.scale_by_factored_rms(factored=factored, decay_rate=decay_rate,
                                          min_dim_size_to_factor=min_dim_size_to_factor,
                                          epsilon=epsilon)

  def factored_dims(shape):
    """(second-largest axis, largest axis), as optax picks them; None when not factored."""
    if not factored or len(shape) < 2:
      return None
    order = np.argsort(shape)
    if shape[order[-2]] < min_dim_size_to_factor:
      return None
    return int(order[-2]), int(order[-1])

  def update_fn(grads, state, params=None):
    if params is None:
      raise ValueError("scale_by_factored_rms needs the parameters: call update(updates, state, "
                       "params).")
    t = jnp.asarray(state.count + 1, jnp.float32)
    beta = 1.0 - t ** (-decay_rate)

    def one(grad, v_row, v_col, v, param):
      grad_sqr = jnp.square(grad) + epsilon
      dims = factored_dims(param.shape)
      if dims is None:
        new_v = (beta * v + (1.0 - beta) * grad_sqr).astype(param.dtype)
        return grad * new_v ** -0.5, v_row, v_col, new_v
      d1, d0 = dims
      new_row = (beta * v_row + (1.0 - beta) * _mean(grad_sqr, d0)).astype(param.dtype)
      new_col = (beta * v_col + (1.0 - beta) * _mean(grad_sqr, d1)).astype(param.dtype)
      row_axis = d1 - 1 if d1 > d0 else d1
      row_factor = (new_row / jnp.mean(new_row, axis=row_axis, keepdims=True)) ** -0.5
      update = (grad * jnp.expand_dims(row_factor, d0)
                * jnp.expand_dims(new_col ** -0.5, d1))
      return update, new_row, new_col, v

    treedef = jax.tree_util.tree_structure(grads)
    outs = [one(*leaves) for leaves in zip(
        *(treedef.flatten_up_to(tree) for tree in
          (grads, state.v_row, state.v_col, state.v, params)))]
    unflat = lambda i: treedef.unflatten([o[i] for o in outs])  # noqa: E731
    return unflat(0), optax.FactoredState(count=optax.safe_increment(state.count),
                                          v_row=unflat(1), v_col=unflat(2), v=unflat(3))

  return optax.GradientTransformation(reference.init, update_fn)


def _mean(x, axis: int):
  """jnp.mean over one axis; a ones-GEMV over the outer axis of a wide CPU matrix (see above).

  Only where the rows are fewer than the columns: the outer-axis reduction of a tall matrix
  ([32000, 256] -> [256]) is fast in YNNPACK and keeps jnp.mean's numbers.
  """
  if axis != 0 or x.ndim < 2 or jax.default_backend() != "cpu" or x.shape[0] > x.size // x.shape[0]:
    return jnp.mean(x, axis=axis)
  rows = x.shape[0]
  total = jnp.dot(jnp.ones((rows,), x.dtype), x.reshape(rows, -1),
                  preferred_element_type=jnp.float32)
  return (total / rows).astype(x.dtype).reshape(x.shape[1:])


def scale_by_param_rms(min_scale: float = 1e-3) -> optax.GradientTransformation:
  """Multiplies each update by max(rms(param), min_scale): optax.scale_by_param_block_rms's value.

  optax computes it with numerics.safe_root_mean_squares, written to be differentiable at zero: two
  reductions over every parameter and a parameter-sized select, costly on CPU for the vocabulary
  matrices (benchmarks/README.md). The update is never differentiated,
  so one reduction gives the same number (max(rms, m) is m exactly where optax's `rms <= m` is).
  """

  def update_fn(updates, state, params=None):
    if params is None:
      raise ValueError("scale_by_param_rms needs the parameters: call update(updates, state, "
                       "params).")
    updates = jax.tree_util.tree_map(
        lambda u, p: u * jnp.maximum(jnp.sqrt(jnp.mean(jnp.square(p))), min_scale),
        updates, params)
    return updates, state

  return optax.GradientTransformation(optax.init_empty_state, update_fn)


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
