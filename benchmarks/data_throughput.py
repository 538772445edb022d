"""Steady-state input-pipeline throughput per objective, against what the trainer consumes.

  python -m benchmarks.data_throughput --json [--batches=20] [--batch_size=8] [--no_trainer]

For each objective on the embedded corpus at the paper's lengths (FLM 626; PLM 626+626 in pairs;
span corruption 512/114; UL2 568/567) and each converter (decoder-only, encoder-decoder where the
objective is defined), it times raw text -> tokenize -> objective -> pack -> convert -> batch after a
warm-up that fills the shuffle buffers, and reports non-padding tokens per second (inputs + targets
tokens; for the decoder converter the packed row tokens). The same run then measures the `small`
model's training consumption with the trainer's own compiled step (experiments.trainer.StepBuilder,
Adafactor; batch_size x 626 tokens, causal decoder, embedded vocabulary) so that `ratio` = pipeline tokens/s / trainer tokens/s can be read directly (>= 5 wanted).

How the pipeline keeps up: every step is a tf.data transformation of TF ops running in tf.data's C++
thread pool (no Python per example); tokenization and the objective maps use parallel map
(AUTOTUNE), the batches are prefetched, and the random objective runs after seqio's cache
boundary, so seqio's offline cache (`seqio_cache_tasks`, which needs apache-beam; then
USE_CACHED_TASKS=True) can hold the tokenized corpus where re-tokenizing every epoch would cost
too much (c4). The embedded corpus is re-tokenized each epoch; the figures below include that.
Figures print with the load average and the peak RSS of this process; this never gates tests.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

CASES = (
    ("full_lm", {"targets": 626}, ("decoder",)),
    ("prefix_lm", {"inputs": 626, "targets": 626}, ("decoder", "encoder_decoder")),
    ("span_corruption", {"inputs": 512, "targets": 114}, ("decoder", "encoder_decoder")),
    ("ul2", {"inputs": 568, "targets": 567}, ("decoder", "encoder_decoder")),
)


def _tokens(batch) -> int:
  total = int((batch["decoder_target_tokens"] > 0).sum())
  if "encoder_input_tokens" in batch:
    total += int((batch["encoder_input_tokens"] > 0).sum())
  return total


def measure_pipeline(objective, lengths, converter_name, batch_size, batches, warmup, seed=0):
  import seqio

  import objectives

  converter = (
      seqio.EncDecFeatureConverter(pack=True)
      if converter_name == "encoder_decoder"
      else seqio.DecoderFeatureConverter(loss_on_targets_only=True, pack=True)
  )
  start = time.perf_counter()
  it = objectives.get_dataset(f"embedded_{objective}", lengths, converter, batch_size, seed)
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
      "converter": converter_name,
      "task_feature_lengths": lengths,
      "batch_size": batch_size,
      "warmup_s": round(first, 2),
      "tokens_per_s": round(tokens / seconds, 1),
      "batches_per_s": round(count / seconds, 2),
  }


def _small_causal_decoder():
  from arch import config as config_lib
  from arch import models

  config = config_lib.TransformerConfig(  # gin_configs/sizes/small.gin on the embedded vocabulary
      vocab_size=4100, emb_dim=256, num_heads=4, head_dim=64, mlp_dim=1024, num_layers=4,
      activations="geglu", tie_embeddings=True, dtype="float32")
  return models.get_model("causal_decoder", config)


def measure_trainer(batch_size, length=626, steps=3, warmup=1):
  """Tokens/s of the trainer's own compiled step (Adafactor, shardings) for `small` at 626 tokens."""
  import jax

  from benchmarks import train_throughput
  from experiments import optimizers
  from experiments import partitioning
  from experiments import trainer

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


def main(argv):
  parser = argparse.ArgumentParser(prog="python -m benchmarks.data_throughput")
  parser.add_argument("--json", action="store_true", help="print one JSON object")
  parser.add_argument("--batches", type=int, default=60)
  parser.add_argument("--warmup", type=int, default=10)
  parser.add_argument("--batch_size", type=int, default=8)
  parser.add_argument("--no_trainer", action="store_true", help="skip the trainer measurement")
  args = parser.parse_args(argv)

  results = [
      measure_pipeline(obj, lengths, conv, args.batch_size, args.batches, args.warmup)
      for obj, lengths, convs in CASES
      for conv in convs
  ]
  trainer = None
  if not args.no_trainer:
    try:
      trainer = measure_trainer(args.batch_size)
    except (ImportError, AttributeError, TypeError) as e:  # other areas' APIs: report, not fail.
      trainer = {"error": f"trainer step unavailable: {e!r}"}
  if trainer and "tokens_per_s" in trainer:
    for r in results:
      r["ratio_to_trainer"] = round(r["tokens_per_s"] / trainer["tokens_per_s"], 1)
  report = {
      "benchmark": "data_throughput",
      "corpus": "embedded",
      "pipeline": results,
      "trainer_small": trainer,
      "min_ratio_to_trainer": min((r.get("ratio_to_trainer", float("inf")) for r in results)),
      "cpu_count": os.cpu_count(),
      "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
      "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
  }
  if args.json:
    print(json.dumps(report, indent=1))
  else:
    for r in results:
      print(f"{r['objective']:>16} {r['converter']:>16} {r['tokens_per_s']:>10.0f} tokens/s "
            f"ratio {r.get('ratio_to_trainer', '-')}")
    print(f"trainer (small): {trainer}")
    print(f"load {report['load_average_1_5_15']}  peak RSS {report['peak_rss_mb']} MB")
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
