"""The train state and the one jit-compiled step (state, batch) -> (state, metrics).

The step is built once with explicit NamedShardings for the state (from the partitioner's logical
axis rules) and the batch (leading axis over 'data'), and donates the incoming state. Gradient
accumulation scans over `num_microbatches` slices of the batch; since the model's loss is a sum
over tokens, summing the slices' gradients gives the full batch's update.

The step knows the model only through `loss_fn(params, batch, rng) -> (loss, metrics)`.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any, Callable, Mapping

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from jax.sharding import NamedSharding, PartitionSpec as P

from experiments import optimizers as optimizers_lib
from experiments import partitioning

# Model metrics that are ratios: recomputed from their sums instead of being summed.
_RATIO_METRICS = ("accuracy",)


@flax.struct.dataclass
class TrainState:
  step: jnp.ndarray  # int32 scalar: the number of updates applied so far
  params: Any
  opt_state: Any
  rng: jnp.ndarray  # uint32[2] raw key; the step's dropout key is fold_in(rng, step)

  def train_state_item(self) -> dict:
    """Everything but the parameters (the checkpoint's `train_state` item)."""
    return {"step": self.step, "rng": self.rng, "opt_state": self.opt_state}


@dataclasses.dataclass
class StepBuilder:
  """Builds the sharded init and step functions for one model, optimizer and mesh."""
  model: Any
  optimizer: optimizers_lib.Optimizer
  partitioner: partitioning.Partitioner
  input_shapes: Mapping[str, tuple[int, ...]]
  num_microbatches: int = 1

  def __post_init__(self):
    # 'auto' settings (TransformerConfig.dtype, attention_impl) follow the mesh's platform, not
    # the default backend, resolved before anything is traced (a kernel bound for another
    # platform fails here); self.model is the resolved model the step, logs and MFU use.
    if hasattr(self.model, "for_platform"):
      self.model = self.model.for_platform(self.partitioner.platform)
    batch_size = next(iter(self.input_shapes.values()))[0]
    if batch_size % self.num_microbatches:
      raise ValueError(
          f"BATCH_SIZE {batch_size} is not divisible by train.num_microbatches "
          f"{self.num_microbatches}.")
    micro = batch_size // self.num_microbatches
    data = self.partitioner.data_size
    if batch_size % data or micro % data:
      raise ValueError(
          f"BATCH_SIZE {batch_size} (microbatch {micro}) is not divisible by the mesh's data "
          f"axis ({data} devices; Partitioner.mesh_shape). Choose a batch that is a multiple "
          f"of {data * self.num_microbatches}.")
    self.micro_shapes = {k: (micro,) + tuple(v[1:]) for k, v in self.input_shapes.items()}
    self._abstract()

  # -- shapes and shardings ---------------------------------------------------------------------

  def _init_variables(self, rng):
    return self.model.get_initial_variables(rng, self.micro_shapes)

  def _abstract(self) -> None:
    with self._context():
      boxed = jax.eval_shape(self._init_variables, jax.random.PRNGKey(0))
      if hasattr(self.model, "param_logical_axes"):  # the model API's own annotations
        specs = self.model.param_logical_axes(self.micro_shapes)
      else:
        specs = nn.get_partition_spec(boxed)["params"]
    self.abstract_params = nn.meta.unbox(boxed)["params"]
    self.params_shardings = self.partitioner.params_shardings(specs, self.abstract_params)
    # An optimizer that factors by logical axes (t5x's Adafactor) is built from them here.
    self.optimizer = self.optimizer.for_params(specs)
    abstract_opt = jax.eval_shape(self.optimizer.tx.init, self.abstract_params)
    opt_shardings = self.partitioner.opt_state_shardings(
        abstract_opt, self.abstract_params, self.params_shardings)
    replicated = self.partitioner.replicated()
    self.state_shardings = TrainState(
        step=replicated, params=self.params_shardings, opt_state=opt_shardings, rng=replicated)
    abstract_state = TrainState(
        step=jax.ShapeDtypeStruct((), jnp.int32), params=self.abstract_params,
        opt_state=abstract_opt, rng=jax.ShapeDtypeStruct(jax.random.PRNGKey(0).shape, jnp.uint32))
    self.abstract_state = jax.tree_util.tree_map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), abstract_state,
        self.state_shardings)
    self.batch_shardings = {
        k: self.partitioner.batch_sharding(len(v)) for k, v in self.input_shapes.items()}
    self.abstract_batch = {
        k: jax.ShapeDtypeStruct(v, jnp.int32, sharding=self.batch_shardings[k])
        for k, v in self.input_shapes.items()}

  def _context(self) -> contextlib.ExitStack:
    """The mesh and the logical axis rules, active while tracing model code."""
    stack = contextlib.ExitStack()
    stack.enter_context(jax.set_mesh(self.partitioner.mesh))
    stack.enter_context(nn.logical_axis_rules(self.partitioner.rules))
    return stack

  # -- init -------------------------------------------------------------------------------------

  def init_params(self, seed: int):
    """Freshly initialised parameters, created sharded."""

    def init(rng):
      return nn.meta.unbox(self._init_variables(rng))["params"]

    with self._context():
      return jax.jit(init, out_shardings=self.params_shardings)(jax.random.PRNGKey(seed))

  def make_state(self, params, step: int, seed: int, opt_state=None) -> TrainState:
    """A state around `params`: fresh optimizer state unless one is given."""
    rng = jax.random.PRNGKey(seed)
    if opt_state is None:
      with self._context():
        opt_state = jax.jit(self.optimizer.tx.init,
                            out_shardings=self.state_shardings.opt_state)(params)
    put = lambda x, s: jax.device_put(x, s)  # noqa: E731
    return TrainState(
        step=put(jnp.asarray(step, jnp.int32), self.state_shardings.step),
        params=params, opt_state=opt_state,
        rng=put(jnp.asarray(rng, jnp.uint32), self.state_shardings.rng))

  # -- the step ---------------------------------------------------------------------------------

  def _microbatches(self, batch):
    """[m, B/m, ...] per feature; microbatch i takes rows i, i+m, ..., so each stays spread over
    every data shard."""
    m = self.num_microbatches

    def split(x):
      x = x.reshape((x.shape[0] // m, m) + x.shape[1:]).swapaxes(0, 1)
      return jax.lax.with_sharding_constraint(
          x, NamedSharding(self.partitioner.mesh, P(None, "data", *([None] * (x.ndim - 2)))))

    return {k: split(v) for k, v in batch.items()}

  def _grads(self, params, batch, rng):
    """Summed loss, metrics and gradients over the batch (scanned over microbatches)."""
    grad_fn = jax.value_and_grad(self.model.loss_fn, has_aux=True)
    if self.num_microbatches == 1:
      (loss, metrics), grads = grad_fn(params, batch, rng)
      return loss, dict(metrics), grads
    m = self.num_microbatches
    micro = self._microbatches(batch)
    abstract_metrics = jax.eval_shape(
        lambda p, b: self.model.loss_fn(p, b, rng)[1], params,
        {k: v[0] for k, v in micro.items()})
    zeros_metrics = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, jnp.float32),
                                           dict(abstract_metrics))
    # The accumulator lives in the parameters' shardings: under fsdp each device then keeps its
    # shard of the summed gradients (reduce-scattered per microbatch) instead of XLA being free
    # to carry a replicated copy through the scan.
    constrain = lambda tree: jax.lax.with_sharding_constraint(  # noqa: E731
        tree, self.params_shardings)
    zeros_grads = constrain(
        jax.tree_util.tree_map(lambda p: jnp.zeros(p.shape, jnp.float32), params))

    def body(carry, xs):
      loss_acc, metrics_acc, grads_acc = carry
      i, mb = xs
      (loss, metrics), grads = grad_fn(params, mb, jax.random.fold_in(rng, i))
      metrics_acc = jax.tree_util.tree_map(lambda a, b: a + b.astype(jnp.float32), metrics_acc,
                                           dict(metrics))
      grads_acc = constrain(
          jax.tree_util.tree_map(lambda a, g: a + g.astype(jnp.float32), grads_acc, grads))
      return (loss_acc + loss, metrics_acc, grads_acc), None

    (loss, metrics, grads), _ = jax.lax.scan(
        body, (jnp.zeros((), jnp.float32), zeros_metrics, zeros_grads),
        (jnp.arange(m), micro))
    return loss, metrics, grads

  def _step(self, state: TrainState, batch: Mapping[str, jnp.ndarray]):
    rng = jax.random.fold_in(state.rng, state.step)
    loss, metrics, grads = self._grads(state.params, batch, rng)
    updates, opt_state = self.optimizer.tx.update(grads, state.opt_state, state.params)
    lr = self.optimizer.schedule(state.step)
    updates = jax.tree_util.tree_map(lambda u: (lr * u).astype(u.dtype), updates)
    params = optax.apply_updates(state.params, updates)
    grad_norm = optax.global_norm(grads)
    out = {k: v for k, v in metrics.items() if k not in _RATIO_METRICS}
    num_tokens = out.get("num_tokens", jnp.ones(()))
    if "num_correct" in out:
      out["accuracy"] = out["num_correct"] / jnp.maximum(num_tokens, 1.0)
    out.update(
        loss=loss, loss_per_token=loss / jnp.maximum(num_tokens, 1.0), learning_rate=lr,
        grad_norm=grad_norm, param_norm=optax.global_norm(params),
        finite=jnp.isfinite(loss) & jnp.isfinite(grad_norm))
    new_state = TrainState(step=state.step + 1, params=params, opt_state=opt_state, rng=state.rng)
    return new_state, out

  def compile(self):
    """The AOT-compiled step with explicit shardings and donated state, built once."""
    jitted = jax.jit(
        self._step, in_shardings=(self.state_shardings, self.batch_shardings),
        out_shardings=(self.state_shardings, self.partitioner.replicated()),
        donate_argnums=(0,))
    with self._context():
      lowered = jitted.lower(self.abstract_state, self.abstract_batch)
    return lowered.compile()

  # -- evaluation (experiments/validation.py) ---------------------------------------------------

  def _eval_sums(self, params, batch):
    """The model's summed metrics on `batch` without dropout or update (microbatched as the step,
    so evaluation never needs more memory than training)."""
    metric_fn = lambda p, b: self.model.loss_fn(p, b, None)  # noqa: E731  # None: no dropout
    if self.num_microbatches == 1:
      loss, metrics = metric_fn(params, batch)
      sums = {k: v.astype(jnp.float32) for k, v in dict(metrics).items()}
    else:
      micro = self._microbatches(batch)

      def body(acc, mb):
        loss, metrics = metric_fn(params, mb)
        metrics = {**dict(metrics), "loss": loss}
        return {k: acc[k] + metrics[k].astype(jnp.float32) for k in acc}, None

      abstract = jax.eval_shape(lambda b: metric_fn(params, b)[1],
                                {k: v[0] for k, v in micro.items()})
      zeros = {k: jnp.zeros(s.shape, jnp.float32) for k, s in {**dict(abstract)}.items()}
      zeros["loss"] = jnp.zeros((), jnp.float32)
      sums, _ = jax.lax.scan(body, zeros, micro)
      loss = sums["loss"]
    out = {k: v for k, v in sums.items() if k not in _RATIO_METRICS}
    out["loss"] = loss.astype(jnp.float32)
    return out

  def compile_eval(self):
    """AOT-compiled (params, batch) -> summed metrics, sharded as the step, replicated out."""
    jitted = jax.jit(self._eval_sums, in_shardings=(self.params_shardings, self.batch_shardings),
                     out_shardings=self.partitioner.replicated())
    with self._context():
      lowered = jitted.lower(self.abstract_state.params, self.abstract_batch)
    return lowered.compile()

  def loss_and_grads(self) -> Callable:
    """A jitted (params, batch) -> (loss, grads) with the same shardings, for parity tests."""

    def f(params, batch):
      loss, _, grads = self._grads(params, batch, jax.random.PRNGKey(0))
      return loss, grads

    jitted = jax.jit(f, in_shardings=(self.params_shardings, self.batch_shardings))

    def call(params, batch):
      with self._context():
        return jitted(params, batch)

    return call


def global_batch(local_batch: Mapping[str, Any], shardings: Mapping[str, NamedSharding]) -> dict:
  """This host's rows of the batch as global arrays sharded over 'data'."""
  return {
      k: jax.make_array_from_process_local_data(shardings[k], v) for k, v in local_batch.items()
  }
