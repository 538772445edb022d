"""Training throughput and MFU of a gin recipe's real train step (e.g. the ~1B decoder on one GPU).

  python -m benchmarks.recipe_throughput --json [--steps=5] [--warmup=2] \
      --gin_file=gin_configs/arch/causal_decoder.gin --gin_file=gin_configs/data/c4.gin \
      --gin_file=gin_configs/objectives/full_lm.gin --gin_file=gin_configs/runs/decoder_1b_1gpu.gin \
      [--gin.BATCH_SIZE=64 ...]

The step is the trainer's own (experiments/trainer.py: the recipe's model, optimizer, batch,
microbatches, mesh and sharding strategy, donated state), timed on synthetic full rows after
`--warmup` steps, so no data or vocabulary file is read (VOCAB_SIZE gives the rows). Reports
tokens/s, MFU against the device's peak (experiments/metrics.py; float32 matmul peak measured on
CPU), the compiled step's memory analysis beside arch/memory.py's estimate, and the load average.
benchmarks/train_throughput.py measures the fixed tiny shapes; benchmarks/accelerator.sh runs
both on a GPU machine. Never gates tests.
"""

from __future__ import annotations

if __name__ == "__main__":
  from experiments.runtime import cli
  cli.start()  # before JAX and TensorFlow load: see experiments/runtime/cli.py

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import time  # noqa: E402

import gin  # noqa: E402
import jax  # noqa: E402

from arch import accounting  # noqa: E402
from arch import memory  # noqa: E402
from benchmarks import train_throughput  # noqa: E402
from experiments import metrics as metrics_lib  # noqa: E402
from experiments import partitioning  # noqa: E402
from experiments import train  # noqa: E402
from experiments import trainer  # noqa: E402
from experiments.runtime import gin_utils  # noqa: E402


def measure(files, bindings, steps: int, warmup: int) -> dict:
  """Seconds per step, tokens/s, MFU and memory of the recipe's compiled train step."""
  train.import_configurables()
  gin_utils.parse_gin(files, list(bindings) + ["arch.models.get_model.vocabulary = None"],
                      finalize=False, defaults=accounting.MODEL_ONLY_DEFAULTS + (
                          "MODEL_DIR = None",),
                      read_macros=("MODEL", "TASK_FEATURE_LENGTHS", "BATCH_SIZE"))
  try:
    model = gin_utils.require_macro("MODEL")
    lengths = dict(gin_utils.require_macro("TASK_FEATURE_LENGTHS"))
    layout = accounting.memory_layout_from_gin(jax.device_count())
    optimizer = gin_utils.value(gin.query_parameter("experiments.train.train.optimizer"))
    part = partitioning.Partitioner(
        gin_utils.value(gin.query_parameter("experiments.partitioning.Partitioner.mesh_shape")),
        layout.strategy)
  finally:
    gin.clear_config()
  shapes = model.input_shapes(layout.batch_size, lengths, pack=False)
  builder = trainer.StepBuilder(model, optimizer, part, shapes, layout.num_microbatches)
  t0 = time.perf_counter()
  step = builder.compile()
  compile_s = time.perf_counter() - t0
  analysis = step.memory_analysis()
  state = builder.make_state(builder.init_params(0), 0, 0)
  batch = trainer.global_batch(
      train_throughput.synthetic_batch(model, shapes, lengths), builder.batch_shardings)
  for _ in range(warmup):
    state, metrics = step(state, batch)
  jax.block_until_ready((state, metrics))
  t0 = time.perf_counter()
  for _ in range(steps):
    state, metrics = step(state, batch)
  jax.block_until_ready((state, metrics))
  seconds = (time.perf_counter() - t0) / steps
  counts = accounting.account(model, lengths)
  flops_per_device = counts["train_flops_per_example"] * layout.batch_size / seconds / (
      jax.device_count())
  gflops = metrics_lib.measure_cpu_matmul_gflops() if jax.devices()[0].platform == "cpu" else None
  peak, peak_source = metrics_lib.peak_flops_per_device(cpu_gflops=gflops)
  est = memory.estimate(model, lengths, layout)
  xla_bytes = None
  if analysis is not None:
    xla_bytes = (analysis.argument_size_in_bytes + analysis.output_size_in_bytes
                 - analysis.alias_size_in_bytes + analysis.temp_size_in_bytes)
  return {
      "model": model.name, "params": counts["params"], "dtype": model.config.dtype,
      "remat_policy": model.config.remat_policy, "scan_layers": model.config.scan_layers,
      "batch_size": layout.batch_size, "num_microbatches": layout.num_microbatches,
      "task_feature_lengths": lengths, "mesh": est["mesh"], "strategy": layout.strategy,
      "compile_seconds": compile_s, "seconds_per_step": seconds,
      "tokens_per_second": layout.batch_size * counts["tokens_per_example"] / seconds,
      "tflops_per_second_per_device": flops_per_device / 1e12,
      "mfu": flops_per_device / peak if peak else None, "peak_source": peak_source,
      "xla_memory_gib": None if xla_bytes is None else xla_bytes / memory.GiB,
      "estimated_memory_gib": est["peak_bytes"] / memory.GiB,
      "loss_per_token": float(metrics["loss_per_token"]),
  }


def main(argv: list[str]) -> int:
  files, bindings, rest = gin_utils.parse_gin_flags(argv)
  parser = argparse.ArgumentParser(prog="python -m benchmarks.recipe_throughput")
  parser.add_argument("--json", action="store_true", help="print one JSON object")
  parser.add_argument("--steps", type=int, default=5, help="timed steps")
  parser.add_argument("--warmup", type=int, default=2, help="untimed steps after compiling")
  args = parser.parse_args(rest)
  if not files:
    raise gin_utils.GinConfigError("give the recipe's stack with --gin_file (see --help)")
  result = measure(files, bindings, args.steps, args.warmup)
  out = {"load_average": list(os.getloadavg()), "device": jax.devices()[0].device_kind,
         "device_count": jax.device_count(), "gin_files": files, "gin_bindings": bindings,
         "result": result}
  if args.json:
    print(json.dumps(out, indent=1))
  else:
    mfu = result["mfu"]
    print(f"{result['model']} {result['params']:,} params: {result['tokens_per_second']:,.0f} "
          f"tokens/s, {result['seconds_per_step']:.3f} s/step, MFU "
          f"{'unknown peak' if mfu is None else f'{mfu:.3f}'}; memory XLA "
          f"{result['xla_memory_gib']} GiB, estimated {result['estimated_memory_gib']:.2f} GiB")
  return 0


if __name__ == "__main__":
  cli.run(main, doc=__doc__)
