"""Rank-classification throughput: the embedded suite scored by each architecture, packed or not.

  python -m benchmarks.eval_throughput [--size=tiny] [--examples=200] [--archs=causal_decoder,...]
      [--no_unpacked] [--row_lengths=N,...] [--verbose]

Prints one JSON line per architecture, packing mode and row length: examples x prompts scored, the
seconds of a first call (compiles included) and a second (compiled), examples/s, the compiled
shapes, the second call's forward seconds, positions, scored and padding fractions, the load
average and the process's peak RSS so far. The parameters are untrained (the speed does not
depend on them). Never part of the test pass/fail.
"""

from __future__ import annotations

if __name__ == "__main__":
  from experiments.runtime import cli
  cli.start()  # before JAX and TensorFlow load: see experiments/runtime/cli.py

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402

from arch import config as config_lib  # noqa: E402
from arch import models  # noqa: E402
from arch import registry  # noqa: E402
from benchmarks import model_sizes  # noqa: E402
from eval import rank_classification as rc  # noqa: E402
from eval import zero_shot  # noqa: E402
from experiments.runtime import hostenv  # noqa: E402
from objectives import vocab  # noqa: E402

_SIZES = model_sizes.SIZES


def _count_pairs(results: dict) -> int:
  return sum(p["n"] for t in results["tasks"].values() for p in t["prompts"].values())


def measure(arch: str, size: str, examples: int, pack: bool, vocabulary,
            row_length: int = rc.ScoringConfig.row_length) -> dict:
  cfg = config_lib.TransformerConfig(vocab_size=vocabulary.vocab_size, **_SIZES[size])
  model = models.get_model(arch, cfg)
  shapes = model.input_shapes(1, {"inputs": 8, "targets": 8})
  params = jax.jit(lambda r: model.get_initial_variables(r, shapes))(jax.random.PRNGKey(0))
  scorer = rc.ModelScorer(model, params["params"], vocabulary,
                          rc.ScoringConfig(pack=pack, row_length=row_length, progress=False))
  out = {"arch": arch, "size": size, "pack": pack, "row_length": row_length}
  for label in ("first_s", "second_s"):
    scorer.stats = dict.fromkeys(scorer.stats, 0)  # keep the counters of the compiled call only
    start = time.perf_counter()
    results = zero_shot.evaluate(model, None, vocabulary, "embedded", scorer=scorer,
                                 embedded_examples=examples)
    out[label] = round(time.perf_counter() - start, 3)
  out["examples_x_prompts"] = _count_pairs(results)
  out["examples_per_s"] = round(out["examples_x_prompts"] / out["second_s"], 1)
  out["compiled_shapes"] = len(scorer.shapes_compiled)
  # Most of the time is the forward pass, and of its positions only the scored fraction needs
  # logits (the unembedding and log-softmax over the vocabulary dominate a tiny model's forward).
  stats = scorer.stats
  out["forward_s"] = round(stats["forward_s"], 3)
  out["batches"] = int(stats["batches"])
  out["decoder_positions"] = int(stats["decoder_positions"])
  out["scored_fraction"] = round(stats["scored_tokens"] / max(1, stats["decoder_positions"]), 4)
  out["padding_fraction"] = round(1 - stats["decoder_tokens"] / max(1, stats["decoder_positions"]),
                                  4)
  out["medians"] = {k: round(v["median"], 3) for k, v in results["tasks"].items()}
  return out


def main(argv: list[str]) -> int:
  parser = argparse.ArgumentParser(prog="python -m benchmarks.eval_throughput")
  parser.add_argument("--size", default="tiny", choices=sorted(_SIZES))
  parser.add_argument("--examples", type=int, default=200,
                      help="examples per family of the embedded suite")
  parser.add_argument("--archs", default=",".join(registry.names()),
                      help="comma-separated registered architectures")
  parser.add_argument("--no_unpacked", action="store_true", help="skip the unpacked baseline")
  parser.add_argument("--row_lengths", default=str(rc.ScoringConfig.row_length),
                      help="comma-separated minimum row lengths to compare")
  args = parser.parse_args(argv)
  vocabulary = vocab.embedded_vocabulary()
  for arch in args.archs.split(","):
    for pack, row_length in [(p, int(r)) for p in ((True,) if args.no_unpacked else (True, False))
                             for r in args.row_lengths.split(",")]:
      load_before = os.getloadavg()
      run = measure(arch, args.size, args.examples, pack, vocabulary, row_length)
      print(json.dumps({"benchmark": "eval_throughput", "suite": "embedded", **run,
                        "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
                        "cpu_count": os.cpu_count(), "backend": jax.default_backend(),
                        "allocator": hostenv.allocator_summary(),
                        "peak_rss_mb": round(
                            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}),
            flush=True)
  return 0


if __name__ == "__main__":
  cli.run(main, doc=__doc__)
