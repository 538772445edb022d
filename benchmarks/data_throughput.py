"""Steady-state input-pipeline throughput per objective, against what the trainer consumes.

  python -m benchmarks.data_throughput --json [--batches=60] [--warmup=10] [--batch_size=8]
      [--objectives=full_lm,...] [--no_trainer] [--verbose]

Every registered objective (objectives.names()) on the embedded corpus at the paper's lengths
(PAPER_LENGTHS; an objective without an entry is skipped with a note), once per seqio feature
converter of the registered architectures it is defined on (the decoder converter serves CD and
ND). Each case times raw text -> tokenize -> objective -> pack -> convert -> batch after a warm-up
that fills the shuffle buffers and reports non-padding tokens per second (inputs + targets tokens;
for the decoder converter the packed row tokens). The same run then measures the `small` causal
decoder's training consumption with the trainer's own compiled step (experiments.trainer
.StepBuilder, Adafactor, batch_size x 626 tokens, embedded vocabulary), so that `ratio_to_trainer`
= pipeline tokens/s / trainer tokens/s reads directly (>= 5 wanted).

How the pipeline keeps up: every step is a tf.data transformation of TF ops running in tf.data's C++
thread pool (no Python per example); tokenization and the objective maps use parallel map
(AUTOTUNE), the batches are prefetched, and the random objective runs after seqio's cache
boundary, so seqio's offline cache (`seqio_cache_tasks`, which needs apache-beam; then
USE_CACHED_TASKS=True) can hold the tokenized corpus where re-tokenizing every epoch would cost
too much (c4). The embedded corpus is re-tokenized each epoch, and the figures include that.
Figures print with the load average and the peak RSS of this process; this never gates tests.
"""

from __future__ import annotations

if __name__ == "__main__":
  from experiments.runtime import cli
  cli.start()  # before JAX and TensorFlow load: see experiments/runtime/cli.py

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402

import objectives  # noqa: E402
from arch import config as config_lib  # noqa: E402
from arch import models  # noqa: E402
from arch import registry  # noqa: E402
from benchmarks import train_throughput  # noqa: E402
from experiments import optimizers  # noqa: E402
from experiments import partitioning  # noqa: E402
from experiments import trainer  # noqa: E402

CORPUS = "embedded"
# The paper's TASK_FEATURE_LENGTHS per objective (gin_configs/objectives/*.gin bind the same); the
# objective registry holds only tiny lengths.
PAPER_LENGTHS = {
    "full_lm": {"targets": 626},
    "prefix_lm": {"inputs": 626, "targets": 626},
    "span_corruption": {"inputs": 512, "targets": 114},
    "ul2": {"inputs": 568, "targets": 567},
}


def cases(objective_names) -> tuple[list[tuple], list[str]]:
  """([(objective, lengths, converter class, architecture names)], notes on skipped objectives).

  One case per objective and distinct feature converter of the registered architectures the
  objective is defined on.
  """
  archs = [registry.get(name) for name in registry.names()]
  found, notes = [], []
  for name in objective_names:
    objective = objectives.get(name)
    if name not in PAPER_LENGTHS:
      notes.append(f"{name}: skipped, no paper lengths in PAPER_LENGTHS "
                   "(benchmarks/data_throughput.py)")
      continue
    by_converter = {}
    for arch in archs:
      if objective.defined_on(arch):
        by_converter.setdefault(arch.feature_converter_cls, []).append(arch.name)
    if not by_converter:
      notes.append(f"{name}: skipped, defined on no registered architecture")
    for converter_cls, arch_names in by_converter.items():
      found.append((name, PAPER_LENGTHS[name], converter_cls, tuple(arch_names)))
  return found, notes


def _tokens(batch) -> int:
  total = int((batch["decoder_target_tokens"] > 0).sum())
  if "encoder_input_tokens" in batch:
    total += int((batch["encoder_input_tokens"] > 0).sum())
  return total


def measure_pipeline(objective, lengths, converter_cls, batch_size, batches, warmup, seed=0):
  """Tokens/s and batches/s of one objective through one converter, after `warmup` batches."""
  start = time.perf_counter()
  it = objectives.get_dataset(objectives.task_name(CORPUS, objective), lengths,
                              converter_cls(pack=True), batch_size, seed)
  for _ in range(warmup):
    next(it)
  first = time.perf_counter() - start
  # Steady state: at least `batches` batches and 3 s, far beyond what the prefetch buffers hold.
  tokens, count, start = 0, 0, time.perf_counter()
  while count < batches or time.perf_counter() - start < 3.0:
    tokens += _tokens(next(it))
    count += 1
  seconds = time.perf_counter() - start
  return {
      "objective": objective,
      "converter": converter_cls.__name__,
      "task_feature_lengths": lengths,
      "batch_size": batch_size,
      "warmup_s": round(first, 2),
      "tokens_per_s": round(tokens / seconds, 1),
      "batches_per_s": round(count / seconds, 2),
  }


def _small_causal_decoder():
  config = config_lib.TransformerConfig(  # gin_configs/sizes/small.gin on the embedded vocabulary
      vocab_size=4100, emb_dim=256, num_heads=4, head_dim=64, mlp_dim=1024, num_layers=4,
      activations="geglu", tie_embeddings=True, dtype="float32")
  return models.get_model("causal_decoder", config)


def measure_trainer(batch_size, length=626, steps=3, warmup=1):
  """Tokens/s of the trainer's compiled step (Adafactor, shardings) for `small`, `length` tokens."""
  model = _small_causal_decoder()
  lengths = {"targets": length}
  shapes = model.input_shapes(batch_size, lengths, pack=False)
  opt = optimizers.adafactor(learning_rate=optimizers.rsqrt_schedule())
  builder = trainer.StepBuilder(model, opt, partitioning.Partitioner(), shapes, 1)
  step = builder.compile()
  state = builder.make_state(builder.init_params(0), 0, 0)
  batch = trainer.global_batch(
      train_throughput.synthetic_batch(model, shapes, lengths), builder.batch_shardings)
  for _ in range(warmup):
    state, metrics = step(state, batch)
  jax.block_until_ready(metrics)
  start = time.perf_counter()
  for _ in range(steps):
    state, metrics = step(state, batch)
  jax.block_until_ready((state, metrics))
  seconds = (time.perf_counter() - start) / steps
  return {"size": "small", "arch": "causal_decoder", "batch_size": batch_size, "length": length,
          "step_s": round(seconds, 3), "tokens_per_s": round(batch_size * length / seconds, 1)}


def main(argv: list[str]) -> int:
  parser = argparse.ArgumentParser(prog="python -m benchmarks.data_throughput")
  parser.add_argument("--json", action="store_true", help="print one JSON object")
  parser.add_argument("--batches", type=int, default=60,
                      help="minimum timed batches per case (and at least 3 s)")
  parser.add_argument("--warmup", type=int, default=10, help="untimed batches per case")
  parser.add_argument("--batch_size", type=int, default=8)
  parser.add_argument("--objectives", default=",".join(objectives.names()),
                      help="comma-separated registered objectives")
  parser.add_argument("--no_trainer", action="store_true", help="skip the trainer measurement")
  args = parser.parse_args(argv)

  found, notes = cases(args.objectives.split(","))
  for note in notes:
    print(f"note: {note}", file=sys.stderr)
  results = []
  for objective, lengths, converter_cls, arch_names in found:
    result = measure_pipeline(objective, lengths, converter_cls, args.batch_size, args.batches,
                              args.warmup)
    results.append(dict(result, architectures=list(arch_names)))
  trainer_small = None if args.no_trainer else measure_trainer(args.batch_size)
  if trainer_small:
    for r in results:
      r["ratio_to_trainer"] = round(r["tokens_per_s"] / trainer_small["tokens_per_s"], 1)
  report = {
      "benchmark": "data_throughput",
      "corpus": CORPUS,
      "pipeline": results,
      "skipped": notes,
      "trainer_small": trainer_small,
      "min_ratio_to_trainer": min((r["ratio_to_trainer"] for r in results if trainer_small),
                                  default=None),
      "cpu_count": os.cpu_count(),
      "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
      "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
  }
  if args.json:
    print(json.dumps(report, indent=1))
  else:
    for r in results:
      print(f"{r['objective']:>16} {r['converter']:>24} {r['tokens_per_s']:>10.0f} tokens/s "
            f"ratio {r.get('ratio_to_trainer', '-')}")
    print(f"trainer (small): {trainer_small}")
    print(f"load {report['load_average_1_5_15']}  peak RSS {report['peak_rss_mb']} MB")
  return 0


if __name__ == "__main__":
  cli.run(main, doc=__doc__)
