"""The ('data', 'model') device mesh, logical axis rules and the shardings of the train state.

The network names the axes of its parameters and activations (batch, length, embed, mlp, heads,
kv, vocab, ...) with flax's logical partitioning. The rules below map those names onto the mesh:

- data_parallel: batch over 'data'; parameters replicated.
- tensor_parallel: also heads / mlp / vocab (and joined_kv) over 'model' (Megatron-style).
- fsdp: tensor_parallel plus the parameters' 'embed' axis over 'data' (fully sharded data
  parallel, as t5x's "2D" parameter partitioning). Activations keep 'batch' on 'data' because rules
  are applied in order and a mesh axis is used at most once per array.

A rule that would shard a dimension its mesh axis does not divide is dropped for that array (that
dimension is replicated), so odd sizes degrade gracefully instead of failing to compile.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Sequence

import flax.linen as nn
import gin
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

MESH_AXES = ("data", "model")

_BASE_RULES = (
    ("batch", "data"),
    ("length", None),
    ("kv_length", None),
    ("kv", None),
    ("relpos_buckets", None),
    ("abspos_buckets", None),
    ("layers", None),
    ("stack", None),
)
_TENSOR_RULES = (
    ("vocab", "model"),
    ("heads", "model"),
    ("mlp", "model"),
    ("joined_kv", "model"),
)
STRATEGIES = ("data_parallel", "tensor_parallel", "fsdp")


def logical_axis_rules(strategy: str) -> tuple[tuple[str, Any], ...]:
  """The rules for one of STRATEGIES, batch first so activations keep it on 'data'."""
  if strategy == "data_parallel":
    return _BASE_RULES + tuple((name, None) for name, _ in _TENSOR_RULES) + (("embed", None),)
  if strategy == "tensor_parallel":
    return _BASE_RULES + _TENSOR_RULES + (("embed", None),)
  if strategy == "fsdp":
    return _BASE_RULES + _TENSOR_RULES + (("embed", "data"),)
  raise ValueError(
      f"Partitioner.strategy = {strategy!r} is not one of {', '.join(STRATEGIES)}."
  )


@gin.configurable(module="experiments.partitioning")
class Partitioner:
  """Owns the mesh and turns abstract trees into NamedShardings."""

  def __init__(
      self, mesh_shape: Sequence[int] = (-1, 1), strategy: str = "data_parallel",
      extra_rules: Sequence[tuple[str, Any]] = (), devices: Sequence[Any] | None = None,
  ):
    self.strategy = strategy
    self.rules = tuple(extra_rules) + logical_axis_rules(strategy)
    self.mesh = make_mesh(mesh_shape, devices)

  @property
  def platform(self) -> str:
    """The platform of the mesh's devices ('cpu', 'gpu', 'tpu'): what the step compiles for."""
    return self.mesh.devices.flat[0].platform

  @property
  def data_size(self) -> int:
    return self.mesh.shape["data"]

  def replicated(self) -> NamedSharding:
    return NamedSharding(self.mesh, P())

  def batch_sharding(self, ndim: int = 2) -> NamedSharding:
    """Leading (batch) dimension over 'data', the rest replicated."""
    return NamedSharding(self.mesh, P("data", *([None] * (ndim - 1))))

  def params_shardings(self, logical_specs: Any, abstract_params: Any) -> Any:
    """NamedShardings for parameters from their logical PartitionSpecs (P() when unannotated)."""
    return jax.tree_util.tree_map(
        lambda spec, x: self._sharding_for(spec, x.shape), logical_specs, abstract_params,
        is_leaf=lambda s: isinstance(s, P),
    )

  def _sharding_for(self, logical_spec: P, shape: tuple[int, ...]) -> NamedSharding:
    names = tuple(logical_spec) + (None,) * (len(shape) - len(tuple(logical_spec)))
    mesh_axes = nn.logical_to_mesh_axes(names, self.rules)
    fixed = []
    for dim, axes in zip(shape, tuple(mesh_axes)):
      size = _axes_size(self.mesh, axes)
      if size > 1 and dim % size:
        logging.info("Replicating a dimension of size %d: not divisible by mesh axes %s.",
                     dim, axes)
        axes = None
      fixed.append(axes)
    return NamedSharding(self.mesh, P(*fixed))

  def opt_state_shardings(
      self, abstract_opt_state: Any, abstract_params: Any, params_shardings: Any
  ) -> Any:
    """Shardings for optimizer state: sub-trees shaped like the parameters follow them.

    Adam's moments have the parameters' shapes; Adafactor's factored statistics drop one
    dimension, and keep the sharding of the remaining ones; anything else is replicated.
    """
    params_def = jax.tree_util.tree_structure(abstract_params)

    def is_params_like(x):
      try:
        return jax.tree_util.tree_structure(x) == params_def and not _is_array_like(x)
      except Exception:  # pylint: disable=broad-except
        return False

    def per_subtree(sub):
      if is_params_like(sub):
        return jax.tree_util.tree_map(self._follow, sub, abstract_params, params_shardings)
      return jax.tree_util.tree_map(lambda _: self.replicated(), sub)

    return jax.tree_util.tree_map(per_subtree, abstract_opt_state, is_leaf=is_params_like)

  def _follow(self, leaf, param, sharding: NamedSharding) -> NamedSharding:
    spec = tuple(sharding.spec) + (None,) * (len(param.shape) - len(tuple(sharding.spec)))
    if tuple(leaf.shape) == tuple(param.shape):
      return sharding
    if len(leaf.shape) == len(param.shape) - 1:
      for drop in reversed(range(len(param.shape))):
        kept = tuple(param.shape[:drop]) + tuple(param.shape[drop + 1:])
        if kept == tuple(leaf.shape):
          return NamedSharding(self.mesh, P(*(spec[:drop] + spec[drop + 1:])))
    return self.replicated()

  def describe(self) -> str:
    devices = self.mesh.devices
    kind = devices.flat[0].device_kind
    return (f"mesh {dict(self.mesh.shape)} over {devices.size} x {kind} "
            f"({jax.process_count()} process(es)), strategy {self.strategy}")


def make_mesh(mesh_shape: Sequence[int], devices: Sequence[Any] | None = None) -> Mesh:
  """A ('data', 'model') mesh; -1 in one place takes the devices left over."""
  devices = list(jax.devices() if devices is None else devices)
  shape = list(mesh_shape)
  if len(shape) != 2:
    raise ValueError(
        f"Partitioner.mesh_shape = {tuple(mesh_shape)}: expected two sizes (data, model).")
  if shape.count(-1) > 1:
    raise ValueError(f"Partitioner.mesh_shape = {tuple(mesh_shape)}: at most one -1.")
  if -1 in shape:
    known = math.prod(s for s in shape if s != -1)
    if known <= 0 or len(devices) % known:
      raise ValueError(
          f"Partitioner.mesh_shape = {tuple(mesh_shape)} does not divide the {len(devices)} "
          f"available devices.")
    shape[shape.index(-1)] = len(devices) // known
  if math.prod(shape) != len(devices) or min(shape) < 1:
    raise ValueError(
        f"Partitioner.mesh_shape = {tuple(mesh_shape)} needs {math.prod(shape)} devices; "
        f"{len(devices)} are available.")
  try:
    from jax.experimental import mesh_utils  # pylint: disable=g-import-not-at-top
    grid = mesh_utils.create_device_mesh(shape, devices=devices)
  except Exception:  # pylint: disable=broad-except
    # Virtual CPU devices and odd counts have no topology to respect.
    grid = np.asarray(devices).reshape(shape)
  return Mesh(grid, MESH_AXES)


def _axes_size(mesh: Mesh, axes) -> int:
  if axes is None:
    return 1
  if isinstance(axes, str):
    return mesh.shape[axes]
  return math.prod(mesh.shape[a] for a in axes)


def _is_array_like(x) -> bool:
  return hasattr(x, "shape") and hasattr(x, "dtype")
