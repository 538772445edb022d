"""Logical axis rules: the network's axis names (arch/layers.py) onto the ('data', 'model') mesh.

- data_parallel: batch over 'data'; parameters replicated.
- tensor_parallel: also heads / mlp / vocab (and joined_kv) over 'model' (Megatron-style).
- fsdp: tensor_parallel plus the parameters' 'embed' axis over 'data' (fully sharded data
  parallel, as t5x's "2D" parameter partitioning). Activations keep 'batch' on 'data' because rules
  are applied in order and a mesh axis is used at most once per array.

They live beside the network so that arch/memory.py sizes a device's share without a mesh of real
devices; experiments/partitioning.py builds the mesh and the shardings from the same rules.
"""

from __future__ import annotations

from typing import Any

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
