"""Greedy decoding speed: the model API's cached predict_batch against the no-cache loop.

  python -m benchmarks.decoding [--sizes=tiny,small] [--archs=causal_decoder,...]
      [--new_tokens=256] [--prompt_length=32] [--batch_size=1] [--vocab_size=32128] [--repeats=1]

Prints one JSON object: the load average before and after, the device, and per (size,
architecture) the seconds of a first call (compiles included) and the best of `repeats` compiled
calls for both paths, tokens/s (batch x new tokens / seconds) and the speed-up. Both paths are one
jitted lax.while_loop over a buffer of fixed size (arch/decoding.py): the no-cache loop runs the
model's own network over the whole [BOS, prompt, generated] row at every step; EOS is off so both
generate exactly `new_tokens`. Untrained parameters (the speed does not depend on them). Never part
of the test pass/fail.
"""

from __future__ import annotations

if __name__ == "__main__":
  from experiments.runtime import cli
  cli.start()  # before JAX and TensorFlow load: see experiments/runtime/cli.py

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402

from arch import config as config_lib  # noqa: E402
from arch import decoding  # noqa: E402
from arch import models  # noqa: E402
from arch import registry  # noqa: E402
from benchmarks import model_sizes  # noqa: E402

_SIZES = model_sizes.SIZES


def _timed(fn, repeats: int):
  """(output, seconds of the first call, best seconds of `repeats` more)."""
  start = time.perf_counter()
  out = jax.block_until_ready(fn())
  first = time.perf_counter() - start
  best = float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    best = min(best, time.perf_counter() - start)
  return out, first, best


def measure(arch: str, size: str, *, new_tokens: int, prompt_length: int, batch_size: int,
            vocab_size: int, repeats: int) -> dict:
  cfg = config_lib.TransformerConfig(vocab_size=vocab_size, **_SIZES[size])
  model = models.get_model(arch, cfg)
  shapes = model.input_shapes(1, {"inputs": 8, "targets": 8})
  params = model.get_initial_variables(jax.random.PRNGKey(0), shapes)["params"]
  rng = np.random.RandomState(0)
  batch = {"inputs": rng.randint(2, vocab_size, size=(batch_size, prompt_length)).astype(np.int32)}
  cached = lambda: model.predict_batch(params, batch, max_new_tokens=new_tokens,  # noqa: E731
                                       eos_id=None)
  full = lambda: decoding.greedy_no_cache(model, params, batch,  # noqa: E731
                                          max_new_tokens=new_tokens, eos_id=None)
  out = {"arch": arch, "size": size, "new_tokens": new_tokens, "prompt_length": prompt_length,
         "batch_size": batch_size, "vocab_size": vocab_size}
  tokens = batch_size * new_tokens
  generated = []
  for label, fn in (("cached", cached), ("no_cache", full)):
    toks, first, best = _timed(fn, repeats)
    generated.append(np.asarray(toks))
    out[label] = {"first_call_s": round(first, 3), "seconds": round(best, 4),
                  "tokens_per_second": round(tokens / best, 1)}
  out["same_tokens"] = bool(np.array_equal(*generated))
  out["speedup"] = round(out["no_cache"]["seconds"] / out["cached"]["seconds"], 2)
  return out


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--sizes", default="tiny,small")
  parser.add_argument("--archs", default=",".join(registry.names()))
  parser.add_argument("--new_tokens", type=int, default=256)
  parser.add_argument("--prompt_length", type=int, default=32)
  parser.add_argument("--batch_size", type=int, default=1)
  parser.add_argument("--vocab_size", type=int, default=32128)
  parser.add_argument("--repeats", type=int, default=1)
  args = parser.parse_args(argv)
  for size in args.sizes.split(","):
    if size not in _SIZES:
      raise config_lib.ConfigError(f"--sizes: {size!r} is not one of {sorted(_SIZES)}.")
  archs = [registry.get(a).name for a in args.archs.split(",")]
  report = {"load_average_before": [round(x, 2) for x in os.getloadavg()],
            "device": str(jax.devices()[0]), "results": []}
  for size in args.sizes.split(","):
    for arch in archs:
      report["results"].append(measure(
          arch, size, new_tokens=args.new_tokens, prompt_length=args.prompt_length,
          batch_size=args.batch_size, vocab_size=args.vocab_size, repeats=args.repeats))
  report["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
  print(json.dumps(report, indent=1))
  return 0


if __name__ == "__main__":
  cli.run(main, doc=__doc__)
