"""Parameter and training-FLOP accounting without allocating anything (jax.eval_shape).

  python -m arch.accounting --gin_file=gin_configs/arch/encoder_decoder.gin \
      --gin_file=gin_configs/sizes/paper.gin --json

With --memory (and a run file or BATCH_SIZE), also the per-device memory of one train step for the
stack's batch, microbatches, mesh, sharding strategy, optimizer and remat policy (arch/memory.py);
--num_devices=N fills a -1 in Partitioner.mesh_shape (default 1), --device_gib=G says whether it
fits a device of G GiB:

  python -m arch.accounting --memory --num_devices=8 --device_gib=80 \
      --gin_file=gin_configs/arch/causal_decoder.gin --gin_file=gin_configs/objectives/full_lm.gin \
      --gin_file=gin_configs/runs/paper_4b8_8x80gb.gin

Convention (MaxText's): a matmul of an [m, k] by a [k, n] costs 2 m k n FLOPs forward and twice that
backward, so training costs 6 x (parameters in matmuls) x (tokens through them), plus attention's
two matmuls per layer, 12 x heads x head_dim x (query, key) pairs. Which tokens each matmul sees
and how many pairs attention computes is the architecture's own FLOP rule (arch/flops.py, named by
its registry entry), so a new architecture is counted by its rule or refused, never as another.
Embedding lookups, norms and softmax are not counted. An "example" is one row of the converted
batch (the task feature lengths through the architecture's converter, so a decoder row is inputs +
targets, or TASK_FEATURE_LENGTHS['decoder_length'] where set): a packed row counts as one sequence,
as dense attention computes it, with the ND prefix block = the 'inputs' length capped at the row.

Two totals are reported. `train_flops_per_example` is what the hardware does (the encoder-decoder's
cross-attention keys and values are projections of every encoder token, in every decoder layer);
use it for MFU. `paper_flops_per_example` is the paper's approximation, 6 x the parameters of each
stack x that stack's tokens (cross-attention charged to the decoder's tokens): under it ED at
512 + 114 and a decoder at 626 cost the same within 5%, which is how Wang et al. matched compute.
"""

from __future__ import annotations

if __name__ == "__main__":
  from experiments.runtime import cli
  cli.start()  # before JAX loads: see experiments/runtime/cli.py
  # Run the imported module, not this __main__ copy: a run file's gin imports experiments.train,
  # which imports arch.accounting, and gin refuses a configurable registered twice.
  from arch import accounting as _accounting
  cli.run(_accounting.main, doc=_accounting.__doc__)

import json
from typing import Mapping, Optional

import gin
import jax
import numpy as np

from arch import memory as memory_lib
from arch import models as models_lib
from arch import registry
from experiments.runtime import gin_utils

FLOP_CONVENTION = (
    "training FLOPs = 6 x matmul parameters x tokens through them + attention 12 x H x head_dim x "
    "(query, key) pairs per layer (causal halved, bidirectional full, cross S_t x S_in); lookups, "
    "norms and softmax excluded")


def _path_names(path) -> list[str]:
  return [getattr(k, "key", getattr(k, "name", str(k))) for k in path]


def _matmul_role(names: list[str], tied: bool) -> Optional[str]:
  """Which tokens a parameter multiplies: 'enc', 'dec', 'cross_kv' (encoder tokens), or None."""
  leaf_parent, leaf = names[-2] if len(names) > 1 else "", names[-1]
  stack = "enc" if names[0] == "encoder" else "dec"
  if leaf_parent in ("self_attention", "mlp"):
    return stack
  if leaf_parent == "encoder_decoder_attention":
    return "cross_kv" if leaf in ("key", "value") else "dec"
  if leaf_parent == "logits_dense" or (tied and leaf_parent == "token_embedder"):
    return "dec"  # the output projection runs over decoder (target) tokens
  return None


def account(model: models_lib.BaseModel,
            task_feature_lengths: Optional[Mapping[str, int]] = None) -> dict:
  """Parameter count and per-example training FLOPs for `model` at these task feature lengths.

  Without task_feature_lengths, the architecture's default (the paper's shape) is counted.
  """
  arch = registry.get(model.name)
  if task_feature_lengths is None:
    task_feature_lengths = arch.default_feature_lengths
  task_feature_lengths = {k: int(v) for k, v in dict(task_feature_lengths).items()}
  shapes = model.input_shapes(1, task_feature_lengths)
  abstract = jax.eval_shape(lambda: model.get_initial_variables(jax.random.PRNGKey(0), shapes))
  cfg = model.config

  total = embedding = 0
  by_role = {"enc": 0, "dec": 0, "cross_kv": 0}
  for path, leaf in jax.tree_util.tree_flatten_with_path(abstract["params"])[0]:
    size = int(np.prod(leaf.shape))
    total += size
    if _path_names(path)[-2:-1] in (["token_embedder"], ["logits_dense"]):
      embedding += size
    role = _matmul_role(_path_names(path), cfg.tie_embeddings)
    if role is not None:
      by_role[role] += size

  work = arch.flop_rule(cfg, shapes, task_feature_lengths, arch)
  uncounted = [r for r, n in by_role.items() if n and r not in work.tokens]
  if uncounted:
    raise ValueError(f"The FLOP rule of {arch.name!r} gives no token count for the matmul "
                     f"roles {uncounted}, which hold parameters (see arch/flops.py).")
  tokens = {r: work.tokens.get(r, 0) for r in by_role}
  weight_flops = 6.0 * sum(by_role[r] * tokens[r] for r in by_role)
  attention_flops = 12.0 * cfg.num_heads * cfg.head_dim * work.attention_pairs
  # The paper's per-stack approximation: cross-attention K/V charged to the decoder's tokens.
  paper_weight_flops = 6.0 * (by_role["enc"] * tokens["enc"]
                              + (by_role["dec"] + by_role["cross_kv"]) * tokens["dec"])
  return {
      "model": model.name,
      "params": total,
      "matmul_params": sum(by_role.values()),
      # Kaplan et al. (2020)'s N for scaling laws: without the vocabulary's embedding and output
      # matrices, which at small widths are most of the parameters.
      "non_embedding_params": total - embedding,
      "task_feature_lengths": task_feature_lengths,
      "tokens_per_example": work.tokens_per_example,
      "attention_shape": dict(work.attention_shape),
      "train_flops_per_example": weight_flops + attention_flops,
      "weight_flops_per_example": weight_flops,
      "attention_flops_per_example": attention_flops,
      "paper_flops_per_example": paper_weight_flops + attention_flops,
      "flop_convention": FLOP_CONVENTION,
  }


@gin.configurable(module="arch.accounting")
def account_from_gin(model=gin.REQUIRED, task_feature_lengths=None) -> dict:
  """`account` with MODEL and TASK_FEATURE_LENGTHS taken from gin."""
  return account(model, task_feature_lengths)


# What an arch + size stack needs to build a model when no data or run file is given: T5's
# vocabulary rows (the paper's 32,128), no vocabulary object to check, no dropout (FLOPs and
# parameter counts do not depend on it). Any gin file or flag rebinds them.
MODEL_ONLY_DEFAULTS = ("VOCABULARY = None", "VOCAB_SIZE = 32128", "DROPOUT_RATE = 0.0")


def _bound(name: str, default):
  """A gin parameter's bound value, or `default` when nothing binds it (names stay strings: arch
  reads the run layer's settings without importing experiments)."""
  try:
    return gin_utils.value(gin.query_parameter(name))
  except (ValueError, KeyError):
    return default


def memory_layout_from_gin(num_devices: int = 1) -> memory_lib.Layout:
  """The train step's layout as the parsed gin stack binds it; -1 in the mesh takes num_devices."""
  batch = gin_utils.require_macro("BATCH_SIZE")
  mesh = list(_bound("experiments.partitioning.Partitioner.mesh_shape", (-1, 1)))
  if -1 in mesh:
    known = int(np.prod([s for s in mesh if s != -1]))
    if num_devices % known:
      raise gin_utils.GinConfigError(
          f"Partitioner.mesh_shape = {tuple(mesh)} does not divide {num_devices} devices "
          f"(--num_devices)")
    mesh[mesh.index(-1)] = num_devices // known
  try:  # the reference's name (@experiments.optimizers.adamw() or adafactor()), not evaluated
    ref = gin.query_parameter("experiments.train.train.optimizer")
  except (ValueError, KeyError):
    ref = None
  name = getattr(getattr(ref, "configurable", None), "name", "adafactor")
  try:
    return memory_lib.Layout(
        batch_size=int(batch),
        num_microbatches=int(_bound("experiments.train.train.num_microbatches", 1)),
        data=int(mesh[0]), model=int(mesh[1]),
        strategy=_bound("experiments.partitioning.Partitioner.strategy", "data_parallel"),
        optimizer="adam" if "adam" in name else "adafactor",
        factored=bool(_bound("experiments.optimizers.adafactor.factored", True)))
  except ValueError as e:
    raise gin_utils.GinConfigError(f"{e} (BATCH_SIZE, experiments.train.train.num_microbatches, "
                                   f"experiments.partitioning.Partitioner.*)") from e


def _flag_value(rest: list[str], name: str, default: float) -> float:
  for arg in rest:
    if arg.startswith(f"--{name}="):
      try:
        return float(arg.split("=", 1)[1])
      except ValueError:
        raise gin_utils.GinConfigError(f"--{name} expects a number, got {arg!r}") from None
  return default


def main(argv: list[str]) -> int:
  """CLI (under experiments.runtime.cli): gin flags in, one JSON object (--json) or a table out."""
  files, bindings, rest = gin_utils.parse_gin_flags(argv)
  unknown = [a for a in rest if a not in ("--json", "--memory")
             and not a.startswith(("--num_devices=", "--device_gib="))]
  if unknown:
    raise gin_utils.GinConfigError(
        f"unknown arguments {unknown}; expected gin flags, --json, --memory, --num_devices=N, "
        f"--device_gib=G")
  # Counting needs no vocabulary (VOCAB_SIZE gives the rows), so a data file whose vocabulary is
  # out of reach (c4's on gs://, from a laptop planning a pod run) still works.
  gin_utils.parse_gin(files, list(bindings) + ["arch.models.get_model.vocabulary = None"],
                      finalize=False, defaults=MODEL_ONLY_DEFAULTS + ("MODEL_DIR = None",),
                      read_macros=("MODEL", "TASK_FEATURE_LENGTHS", "BATCH_SIZE"))
  gin_utils.require_macro("MODEL")
  extra = ["arch.accounting.account_from_gin.model = %MODEL"]
  if gin_utils.query_macro("TASK_FEATURE_LENGTHS") is not None:
    extra.append("arch.accounting.account_from_gin.task_feature_lengths = %TASK_FEATURE_LENGTHS")
  layout = None
  if "--memory" in rest:
    num_devices = _flag_value(rest, "num_devices", 1)
    if num_devices < 1 or num_devices != int(num_devices):
      raise gin_utils.GinConfigError(f"--num_devices={num_devices:g}: expected a positive integer")
    layout = memory_layout_from_gin(int(num_devices))
  gin_utils.parse_gin([], extra, finalize=True, clear=False)
  try:
    result = account_from_gin()
    if layout is not None:
      model = gin.query_parameter("%MODEL").scoped_configurable_fn()
      result["memory"] = memory_lib.estimate(model, result["task_feature_lengths"], layout)
  except ValueError as e:  # bad sizes / names: the message names the gin binding to fix
    raise gin_utils.GinConfigError(str(e)) from e
  if "--json" in rest:
    print(json.dumps(result, indent=2))
  else:
    for k, v in result.items():
      if k != "memory":
        print(f"{k:30s} {v:,.0f}" if isinstance(v, (int, float)) else f"{k:30s} {v}")
    if layout is not None:
      device = _flag_value(rest, "device_gib", 0.0) * memory_lib.GiB
      print(memory_lib.format_estimate(result["memory"], device or None))
  return 0

