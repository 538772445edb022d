"""t5x's Adafactor as an optax transformation: the second moment factored by logical axes.

Each parameter axis has a logical name (the network's flax partitioning names: embed, heads, kv,
mlp, vocab, relpos_buckets, and `layers` on the leading axis of scanned layers). A factor map
gives each name a kind, as t5x's `logical_factor_rules`:

- row / column: the second moment keeps a row statistic (mean over the column axes) and a column
  statistic (mean over the row axes); several axes may share a kind (heads x kv are columns).
- batch: the parameter is a stack of independent ones (scanned layers): every statistic, the
  update clipping (RMS of the update) and the parameter scale (RMS of the parameter) are taken per
  slice, so a scanned stack is updated exactly as the same layers unrolled.
- none: not factored along this axis.

t5x's rules, applied here in its order: a parameter whose kinds lack a row or a column is not
factored (its row/column axes count as none; batch axes stay batch); row, column and none together
is an error; a parameter of rank <= 2 without batch axes falls back to the size heuristic (factor
the two largest axes when the second largest is >= min_dim_size_to_factor, as optax), which gives
the same factoring for the unscanned matrices of these networks. An update is
grad / sqrt(second moment), clipped to RMS <= clipping_threshold, times max(RMS(param), 1e-3);
the learning rate is the trainer's (experiments.optimizers.Optimizer).

The state is optax.FactoredState (count, v_row, v_col, v; unused entries are [1] placeholders, as
optax keeps them), so the partitioner shards it like optax's. `count` drives the decay
1 - (count + 1)^-decay_rate; it continues when the state is restored (t5x's decay follows its
restored step) and restarts at 0 with a fresh state (t5x's `step_offset` set to the start step).

One difference from t5x, chosen so that a scanned stack always equals the unrolled one: with
factored=False, batch axes still give per-slice clipping and parameter scale (t5x then averages
over the whole stacked array). The paper trained with factored=True, where the two agree.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments.runtime import errors

ROW, COLUMN, BATCH, NONE = "row", "column", "batch", "none"
KINDS = (ROW, COLUMN, BATCH, NONE)
PARAM_SCALE_FLOOR = 1e-3  # t5x's epsilon2 (optax's scale_by_param_block_rms min_scale)

# t5x's standard_logical_factor_rules (the rules its Adafactor gin files bind), restricted to the
# names a parameter of these networks can carry; 'stack' and 'joined_kv' kept for fused layouts.
STANDARD_RULES: Mapping[str, str] = {
    "vocab": COLUMN, "embed": ROW, "mlp": COLUMN, "heads": COLUMN, "kv": COLUMN,
    "joined_kv": COLUMN, "relpos_buckets": NONE, "layers": BATCH, "stack": BATCH,
}
_RULES_BINDING = "experiments.optimizers.adafactor.factor_rules"


class FactorRuleError(errors.ConfigError):
  """The factor map does not fit the parameters' logical axes."""


@dataclasses.dataclass(frozen=True)
class Factoring:
  """One parameter's plan: batch axes, and the row / column axes of a factored moment."""
  batch: tuple[int, ...]
  rows: tuple[int, ...] | None  # None: the full second moment is kept
  cols: tuple[int, ...] | None
  ndim: int

  @property
  def averaged(self) -> tuple[int, ...]:
    """The axes clipping and parameter scale average over (all but the batch axes)."""
    return tuple(d for d in range(self.ndim) if d not in self.batch)

  def state_shapes(self, shape: tuple[int, ...]) -> tuple[tuple, tuple, tuple]:
    """Shapes of (v_row, v_col, v); [1] for the unused ones."""
    if self.rows is None:
      return (1,), (1,), tuple(shape)
    drop = lambda axes: tuple(s for d, s in enumerate(shape) if d not in axes)  # noqa: E731
    return drop(self.cols), drop(self.rows), (1,)


def path_name(path) -> str:
  """'decoder/layers/mlp/wi_0' for a jax key path (t5x's '/'-joined parameter names)."""
  return "/".join(str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k)))) for k in path)


def merged_rules(overrides: Mapping[str, str] | None) -> dict[str, str]:
  """STANDARD_RULES updated by `overrides`, kinds checked."""
  rules = dict(STANDARD_RULES)
  for name, kind in dict(overrides or {}).items():
    kind_l = str(kind).lower()
    kind_l = COLUMN if kind_l == "col" else kind_l
    if kind_l not in KINDS:
      raise FactorRuleError(f"{_RULES_BINDING}: axis {name!r} -> {kind!r}; expected one of "
                            f"{', '.join(KINDS)}.")
    rules[str(name)] = kind_l
  return rules


def axis_kinds(param_axes: Any, rules: Mapping[str, str],
               overrides: Mapping[str, str] | None = None) -> dict[str, tuple[str, ...]]:
  """{parameter name: the kind of each of its axes}, every name checked against the rules.

  `param_axes` is the model's tree of logical names (a PartitionSpec per parameter). Raises
  FactorRuleError, before anything compiles, for an axis without a name or without a rule, an
  incomplete row/column/none spec, or an override naming an axis that no parameter has.
  """
  is_spec = lambda x: isinstance(x, jax.sharding.PartitionSpec) or (  # noqa: E731
      isinstance(x, tuple) and all(a is None or isinstance(a, str) for a in x))
  flat = {path_name(p): tuple(s) for p, s in
          jax.tree_util.tree_leaves_with_path(param_axes, is_leaf=is_spec)}
  kinds, seen = {}, set()
  for name, axes in flat.items():
    if any(a is None or not isinstance(a, str) for a in axes) or not axes:
      raise FactorRuleError(
          f"Parameter {name} has logical axes {axes}: factoring='t5x' needs one name per axis "
          f"(flax nn.with_logical_partitioning); name them, or use "
          f"experiments.optimizers.adafactor.factoring = 'optax'.")
    unknown = [a for a in axes if a not in rules]
    if unknown:
      raise FactorRuleError(
          f"{_RULES_BINDING} has no rule for axis {unknown[0]!r} of parameter {name} "
          f"(axes {axes}); add e.g. {{{unknown[0]!r}: 'none'}} (kinds: {', '.join(KINDS)}).")
    seen.update(axes)
    k = tuple(rules[a] for a in axes)
    if ROW in k and COLUMN in k and NONE in k:
      raise FactorRuleError(
          f"{_RULES_BINDING}: parameter {name} gets {dict(zip(axes, k))}: row, column and none "
          f"together is an incomplete factoring (t5x refuses it); make the 'none' axes row or "
          f"column, or the others none.")
    kinds[name] = k
  unused = sorted(set(overrides or {}) - seen)
  if unused:
    raise FactorRuleError(
        f"{_RULES_BINDING} names axis {unused[0]!r}, which no parameter has (the parameters' "
        f"axes: {', '.join(sorted(seen))}).")
  return kinds


def plan(kinds: tuple[str, ...], shape: tuple[int, ...], factored: bool,
         min_dim_size_to_factor: int, name: str = "parameter") -> Factoring:
  """How one parameter of this shape is factored under its axis kinds (t5x's rules)."""
  if len(kinds) != len(shape):
    raise FactorRuleError(f"Parameter {name} has shape {tuple(shape)} but {len(kinds)} logical "
                          f"axis names.")
  batch = tuple(d for d, k in enumerate(kinds) if k == BATCH)
  ndim = len(shape)
  if not factored:
    return Factoring(batch, None, None, ndim)
  if ndim <= 2 and not batch:  # t5x falls back to the size heuristic here
    order = np.argsort(shape, kind="stable")
    if ndim < 2 or shape[order[-2]] < min_dim_size_to_factor:
      return Factoring((), None, None, ndim)
    return Factoring((), (int(order[-2]),), (int(order[-1]),), ndim)
  rows = tuple(d for d, k in enumerate(kinds) if k == ROW)
  cols = tuple(d for d, k in enumerate(kinds) if k == COLUMN)
  if not rows or not cols:
    return Factoring(batch, None, None, ndim)
  return Factoring(batch, rows, cols, ndim)


def scale_by_adafactor(param_kinds: Mapping[str, tuple[str, ...]], factored: bool = True,
                       decay_rate: float = 0.8, min_dim_size_to_factor: int = 128,
                       epsilon1: float = 1e-30, clipping_threshold: float | None = 1.0,
                       multiply_by_parameter_scale: bool = True) -> optax.GradientTransformation:
  """t5x's Adafactor update (no learning rate, no sign flip) for parameters of `param_kinds`."""

  def plans(tree) -> list[Factoring]:
    out = []
    for path, x in jax.tree_util.tree_leaves_with_path(tree):
      name = path_name(path)
      if name not in param_kinds:
        raise FactorRuleError(f"Parameter {name} is not among the logical axes the optimizer "
                              f"was built for (Optimizer.for_params).")
      out.append(plan(param_kinds[name], tuple(x.shape), factored, min_dim_size_to_factor, name))
    return out

  def init_fn(params):
    treedef = jax.tree_util.tree_structure(params)
    shapes = [f.state_shapes(tuple(p.shape)) for f, p in
              zip(plans(params), jax.tree_util.tree_leaves(params))]
    zeros = lambda i: treedef.unflatten(  # noqa: E731
        [jnp.zeros(s[i], jnp.float32) for s in shapes])
    return optax.FactoredState(count=jnp.zeros([], jnp.int32), v_row=zeros(0), v_col=zeros(1),
                               v=zeros(2))

  def update_fn(grads, state, params=None):
    if params is None:
      raise ValueError("scale_by_adafactor needs the parameters: update(grads, state, params).")
    treedef = jax.tree_util.tree_structure(grads)
    t = jnp.asarray(state.count + 1, jnp.float32)
    beta = 1.0 - t ** (-decay_rate)
    leaves = [treedef.flatten_up_to(x) for x in (grads, state.v_row, state.v_col, state.v, params)]
    outs = [_one(f, *xs, beta=beta, epsilon1=epsilon1, clipping_threshold=clipping_threshold,
                 multiply_by_parameter_scale=multiply_by_parameter_scale)
            for f, xs in zip(plans(params), zip(*leaves))]
    unflat = lambda i: treedef.unflatten([o[i] for o in outs])  # noqa: E731
    return unflat(0), optax.FactoredState(count=optax.safe_increment(state.count),
                                          v_row=unflat(1), v_col=unflat(2), v=unflat(3))

  return optax.GradientTransformation(init_fn, update_fn)


def _one(f: Factoring, grad, v_row, v_col, v, param, *, beta, epsilon1, clipping_threshold,
         multiply_by_parameter_scale):
  """(update, v_row, v_col, v) of one parameter."""
  grad = grad.astype(jnp.float32)
  grad_sqr = jnp.square(grad) + epsilon1
  if f.rows is not None:
    v_row = beta * v_row + (1.0 - beta) * jnp.mean(grad_sqr, axis=f.cols)
    v_col = beta * v_col + (1.0 - beta) * jnp.mean(grad_sqr, axis=f.rows)
    rows_in_v_row = tuple(d - sum(c < d for c in f.cols) for d in f.rows)
    row_factor = (v_row / jnp.mean(v_row, axis=rows_in_v_row, keepdims=True)) ** -0.5
    y = grad * jnp.expand_dims(row_factor, f.cols) * jnp.expand_dims(v_col ** -0.5, f.rows)
  else:
    v = beta * v + (1.0 - beta) * grad_sqr
    y = grad * v ** -0.5
  averaged = f.averaged
  if clipping_threshold is not None:
    rms = jnp.sqrt(jnp.mean(jnp.square(y), axis=averaged, keepdims=True))
    y = y / jnp.maximum(1.0, rms / clipping_threshold)
  if multiply_by_parameter_scale:
    p32 = param.astype(jnp.float32)
    y = y * jnp.maximum(jnp.sqrt(jnp.mean(jnp.square(p32), axis=averaged, keepdims=True)),
                        PARAM_SCALE_FLOOR)
  return y.astype(param.dtype), v_row, v_col, v


def state_size(opt_state: Any) -> int:
  """Number of values in an optimizer state (placeholders included), for tests and logs."""
  return int(sum(np.prod(x.shape) for x in jax.tree_util.tree_leaves(opt_state)))
