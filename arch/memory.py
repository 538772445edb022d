"""Per-device memory of one train step, estimated before launching (nothing is allocated).

  python -m arch.accounting --memory --gin_file=gin_configs/arch/causal_decoder.gin \
      --gin_file=gin_configs/data/c4.gin --gin_file=gin_configs/objectives/full_lm.gin \
      --gin_file=gin_configs/runs/decoder_1b_1gpu.gin

What it counts, per device, in bytes:
- params: float32 parameters, each divided by the mesh axes its logical axes map to
  (arch/axis_rules.py, as experiments/partitioning.py shards them).
- optimizer: Adafactor's factored second moment (a row and a column vector per factored matrix,
  the whole array for vectors and small matrices) or Adam's two float32 moments.
- gradients: float32, sharded as the parameters; with microbatches, the accumulator as well.
- activations: one microbatch's residuals kept for the backward pass, per layer as the remat policy
  saves them (arch/stack.py), plus one layer's recomputed working set, the attention masks and
  biases, and the float32 logits of the loss; in the activation dtype except where the network
  keeps float32 (scores, softmax, logits).
- gathered: under fsdp, one layer's parameters gathered whole (the scan gathers layer by layer).
peak = params + optimizer + max(gradients + activations + gathered, gradients + one float32
update of the parameters). XLA's own figure on CPU is within 25% at tiny sizes
(tests/test_arch_memory.py); on accelerators its fusion and scheduling differ, so keep ~10-20% of
the device free (allocator fragmentation, XLA workspace, cuDNN/NCCL buffers).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Mapping, Optional

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import PartitionSpec as P

from arch import axis_rules
from arch import registry
from arch import stack

OPTIMIZERS = ("adafactor", "adam")
GiB = 1024 ** 3
_F32 = 4


@dataclasses.dataclass(frozen=True)
class Layout:
  """How one step is laid out: global batch, microbatches, mesh sizes and sharding strategy."""
  batch_size: int
  num_microbatches: int = 1
  data: int = 1  # devices on the mesh's 'data' axis
  model: int = 1  # devices on the mesh's 'model' axis
  strategy: str = "data_parallel"
  optimizer: str = "adafactor"
  factored: bool = True  # Adafactor's second moment factored (the paper's setting)

  def __post_init__(self):
    if self.optimizer not in OPTIMIZERS:
      raise ValueError(f"optimizer {self.optimizer!r} is not one of {OPTIMIZERS}")
    axis_rules.logical_axis_rules(self.strategy)  # a clear error for an unknown strategy
    if min(self.batch_size, self.num_microbatches, self.data, self.model) < 1:
      raise ValueError(f"{self}: every size must be a positive integer")
    rows = self.batch_size // self.num_microbatches
    if self.batch_size % self.num_microbatches or rows % self.data:
      raise ValueError(
          f"BATCH_SIZE {self.batch_size} does not split into {self.num_microbatches} "
          f"microbatches of rows divisible by the mesh's data axis ({self.data} devices).")


def _shard_shape(names, shape, rules, mesh: Mapping[str, int]) -> tuple[int, ...]:
  """The per-device shape, as experiments.partitioning shards it (indivisible dims replicated)."""
  names = tuple(names) + (None,) * (len(shape) - len(tuple(names)))
  out = []
  for dim, axes in zip(shape, nn.logical_to_mesh_axes(names, rules)):
    axes = () if axes is None else (axes,) if isinstance(axes, str) else tuple(axes)
    size = math.prod(mesh[a] for a in axes)
    out.append(dim // size if size > 1 and dim % size == 0 else dim)
  return tuple(out)


def _adafactor_state(shape: tuple[int, ...], names, factored: bool) -> int:
  """Elements of Adafactor's second moment for one parameter shard, factored as t5x does by
  logical axes: 'embed' rows x the other axes joined as columns (heads x kv, mlp, vocab), the
  'layers' axis a batch axis; unfactored when either side is under 128."""
  size = math.prod(shape)
  names = tuple(names) + (None,) * (len(shape) - len(tuple(names)))
  layers = math.prod(d for d, n in zip(shape, names) if n == "layers")
  rows = math.prod(d for d, n in zip(shape, names) if n == "embed")
  cols = size // layers // rows
  if not factored or min(rows, cols) < 128:
    return size
  return layers * (rows + cols)


def _stacks(model, shapes) -> list[dict]:
  """(tokens per row, key length, layers, cross-attention length) of each stack of the network."""
  cfg = model.config
  if registry.get(model.name).encoder_decoder:
    s_in = shapes["encoder_input_tokens"][1]
    s_t = shapes["decoder_target_tokens"][1]
    return [dict(L=s_in, K=s_in, layers=cfg.num_encoder_layers, cross=0, relpos_per_layer=False),
            dict(L=s_t, K=s_t, layers=cfg.num_decoder_layers, cross=s_in,
                 relpos_per_layer=False)]
  length = shapes["decoder_target_tokens"][1]
  return [dict(L=length, K=length, layers=cfg.num_layers, cross=0,
               relpos_per_layer=cfg.position_scheme == "relative")]


def _layer_bytes(cfg, layout: Layout, b: int, st: dict) -> dict:
  """Bytes per layer on one device: what each remat policy saves, and the full working set."""
  a = np.dtype(cfg.activation_dtype).itemsize
  m = layout.model if layout.strategy != "data_parallel" else 1
  heads = cfg.num_heads // m if cfg.num_heads % m == 0 else cfg.num_heads
  f = cfg.mlp_dim // m if cfg.mlp_dim % m == 0 else cfg.mlp_dim
  hd, d, g = heads * cfg.head_dim, cfg.emb_dim, 2 if cfg.gated else 1
  t, tk = b * st["L"], b * st["K"]
  scores = b * heads * st["L"] * st["K"]
  x = t * d * a
  qkv = (t + 2 * tk) * hd * a
  proj = qkv + 2 * x + g * t * f * a  # + attention out, MLP wi (one or two), MLP out
  full = 4 * x + qkv + scores * (_F32 + a) + t * hd * a + g * t * f * a + t * f * a
  if st["cross"]:
    tc = b * st["cross"]
    cross_scores = b * heads * st["L"] * st["cross"]
    cross_qkv = (t + 2 * tc) * hd * a
    qkv += cross_qkv
    proj += cross_qkv + x
    full += 2 * x + cross_qkv + cross_scores * (_F32 + a) + t * hd * a
    scores += cross_scores
  saved = {
      "none": full,
      "dots": proj + scores * a + t * hd * a,
      "save_projections": proj,
      "save_qkv": qkv,
      "full": 0,
  }
  saved["dots_no_batch"] = saved["minimal"] = saved["save_projections"]
  if set(saved) != {"none"} | set(stack.REMAT_POLICIES):
    raise ValueError(f"arch/memory.py has no rule for the remat policies "
                     f"{sorted(set(stack.REMAT_POLICIES) - set(saved))}")
  return {"saved": x + saved[cfg.remat_policy], "working": full}


def estimate(model, task_feature_lengths: Mapping[str, int], layout: Layout) -> dict:
  """Per-device bytes of one train step of `model` laid out as `layout` (see the module doc)."""
  cfg = model.config
  rules = axis_rules.logical_axis_rules(layout.strategy)
  mesh = {"data": layout.data, "model": layout.model}
  rows = layout.batch_size // layout.num_microbatches // layout.data  # per device, per microbatch
  shapes = model.input_shapes(rows, task_feature_lengths)
  axes = model.param_logical_axes(model.input_shapes(1, task_feature_lengths))
  abstract = jax.eval_shape(lambda: model.get_initial_variables(
      jax.random.PRNGKey(0), model.input_shapes(1, task_feature_lengths)))["params"]
  flat_axes = jax.tree_util.tree_leaves(axes, is_leaf=lambda s: isinstance(s, P))
  flat_params = jax.tree_util.tree_leaves(abstract)

  params = opt = 0
  layer_full = 0  # one scanned layer's parameters, gathered whole under fsdp
  for names, p in zip(flat_axes, flat_params):
    shard = _shard_shape(tuple(names), p.shape, rules, mesh)
    params += math.prod(shard)
    if layout.optimizer == "adam":
      opt += 2 * math.prod(shard)
    else:
      opt += _adafactor_state(shard, tuple(names), layout.factored)
    if "layers" in tuple(names):
      layer_full += math.prod(p.shape) // p.shape[tuple(names).index("layers")]
  params *= _F32
  opt *= _F32
  grads = params * (2 if layout.num_microbatches > 1 else 1)
  gathered = 2 * layer_full * _F32 if layout.strategy == "fsdp" and layout.data > 1 else 0

  a = np.dtype(cfg.activation_dtype).itemsize
  activations = 0
  working = 0
  for st in _stacks(model, shapes):
    per_layer = _layer_bytes(cfg, layout, rows, st)
    activations += st["layers"] * (per_layer["saved"] if cfg.remat_policy != "none"
                                   else per_layer["working"])
    working = max(working, per_layer["working"] if cfg.remat_policy != "none" else 0)
    # The mask bias [B, 1, L, K] (float32) and relative buckets [B, L, K] (int32) per stack; the
    # decoder-only stack also builds a [B, H, L, L] float32 bias in every layer.
    activations += rows * st["L"] * st["K"] * (2 * _F32)
    if st["relpos_per_layer"]:
      m = layout.model if layout.strategy != "data_parallel" else 1
      heads = cfg.num_heads // m if cfg.num_heads % m == 0 else cfg.num_heads
      per_bias = rows * heads * st["L"] * st["K"] * _F32
      working += per_bias
      if cfg.remat_policy == "none":
        activations += st["layers"] * per_bias
    if st["cross"]:
      activations += rows * st["L"] * st["cross"] * _F32
  target_tokens = rows * shapes["decoder_target_tokens"][1]
  vocab = cfg.padded_vocab_size
  if layout.strategy != "data_parallel" and vocab % layout.model == 0:
    vocab //= layout.model
  # Logits in the activation dtype, their float32 copy and its gradient; the final norm's output.
  logits = target_tokens * vocab * (a + 2 * _F32) + target_tokens * cfg.emb_dim * a
  activations += working + logits
  update = params  # one float32 update of the parameters before it is applied
  peak = params + opt + max(grads + activations + gathered, grads + update)
  return {
      "params_bytes": params, "optimizer_bytes": opt, "gradients_bytes": grads,
      "activations_bytes": activations, "logits_bytes": logits, "gathered_bytes": gathered,
      "peak_bytes": peak,
      "rows_per_device_microbatch": rows, "num_microbatches": layout.num_microbatches,
      "mesh": dict(mesh), "strategy": layout.strategy, "optimizer": layout.optimizer,
      "remat_policy": cfg.remat_policy, "dtype": str(np.dtype(cfg.activation_dtype)),
      "scan_layers": cfg.scan_layers,
  }


def format_estimate(est: dict, device_bytes: Optional[float] = None) -> str:
  """A short table in GiB; names the device's memory and says whether the step fits."""
  gib = lambda k: est[k] / GiB  # noqa: E731
  lines = [
      f"per-device memory estimate (mesh {est['mesh']}, {est['strategy']}, {est['optimizer']}, "
      f"remat {est['remat_policy']}, {est['dtype']}, {est['num_microbatches']} microbatch(es) of "
      f"{est['rows_per_device_microbatch']} rows per device)",
      f"  parameters   {gib('params_bytes'):8.2f} GiB",
      f"  optimizer    {gib('optimizer_bytes'):8.2f} GiB",
      f"  gradients    {gib('gradients_bytes'):8.2f} GiB"
      + (" (incl. accumulator)" if est["num_microbatches"] > 1 else ""),
      f"  activations  {gib('activations_bytes'):8.2f} GiB (logits {gib('logits_bytes'):.2f})",
  ]
  if est["gathered_bytes"]:
    lines.append(f"  fsdp gather  {gib('gathered_bytes'):8.2f} GiB")
  lines.append(f"  peak         {gib('peak_bytes'):8.2f} GiB")
  if device_bytes:
    verdict = "fits" if est["peak_bytes"] <= 0.9 * device_bytes else "DOES NOT FIT (90% rule)"
    lines.append(f"  device       {device_bytes / GiB:8.2f} GiB: {verdict}")
  return "\n".join(lines)
