"""Time and peak temporary memory of each attention kernel available on the backend, fwd + bwd.

  python -m benchmarks.attention --json [--lengths=512,2048,4096] [--repeats=3] [--impls=...]

For each length L and each shape, CD (causal) and ND (causal plus a bidirectional prefix of L/2),
it compiles the gradient of sum(attend(q, k, v, bias, mask) * w) with respect to q, k, v and the
[1, H, L, L] position bias (what the train step differentiates) for every kernel of
arch/kernels this backend runs ('xla', 'blockwise', and 'cpu' on CPU, 'cudnn' on GPU, 'pallas_tpu'
on TPU), and reports the best wall time of `--repeats` calls and the compiled program's temporary
memory (`memory_analysis().temp_size_in_bytes`: what XLA allocates beyond arguments and outputs).
`kernel_used` names the kernel that really ran (the fused ones fall back to 'xla' for the ND
prefix). Batch 2, 4 heads x 64: small enough for a CPU in a few minutes. Never gates tests.
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
import jax.numpy as jnp  # noqa: E402

from arch import kernels  # noqa: E402
from arch import masks  # noqa: E402

BATCH, HEADS, HEAD_DIM = 2, 4, 64
ACCELERATOR_KERNEL = {"cpu": "cpu", "gpu": "cudnn", "tpu": "pallas_tpu"}


def available_impls(platform: str) -> list[str]:
  """The kernels that compile for this platform ('xla' first: the reference)."""
  extra = ACCELERATOR_KERNEL.get(platform)
  return ["xla"] + ([extra] if extra else []) + ["blockwise"]


def inputs(shape: str, length: int, dtype):
  """q, k, v [B, L, H, Dh], a [1, H, L, L] float32 bias and the shape's AttentionMask."""
  keys = jax.random.split(jax.random.PRNGKey(0), 4)
  q, k, v = (jax.random.normal(kk, (BATCH, length, HEADS, HEAD_DIM), dtype) * 0.3
             for kk in keys[:3])
  bias = jax.random.normal(keys[3], (1, HEADS, length, length), jnp.float32) * 0.1
  valid = jnp.ones((BATCH, length), bool)
  marked = None
  if shape == "ND":
    marked = jnp.tile((jnp.arange(length) < length // 2 + 1).astype(jnp.int32), (BATCH, 1))
  return q, k, v, bias, masks.AttentionMask(valid, valid, None, None, marked, marked, causal=True)


def measure(impl: str, shape: str, length: int, dtype, repeats: int) -> dict:
  """Best fwd+bwd seconds and compiled temporary bytes of one kernel at one shape."""
  q, k, v, bias, mask = inputs(shape, length, dtype)
  w = jnp.cos(jnp.arange(HEAD_DIM, dtype=jnp.float32))[None, None, None, :]

  def loss(q, k, v, bias):
    out = kernels.attend(q, k, v, bias, mask, impl=impl)
    return jnp.sum(out.astype(jnp.float32) * w)

  fn = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2, 3)))
  t0 = time.perf_counter()
  compiled = fn.lower(q, k, v, bias).compile()
  compile_s = time.perf_counter() - t0
  mem = compiled.memory_analysis()
  jax.block_until_ready(compiled(q, k, v, bias))
  best = float("inf")
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(compiled(q, k, v, bias))
    best = min(best, time.perf_counter() - t0)
  return {
      "impl": impl, "kernel_used": kernels.select_attention(impl, q, k, mask, False),
      "shape": shape, "length": length, "batch": BATCH, "heads": HEADS, "head_dim": HEAD_DIM,
      "dtype": jnp.dtype(dtype).name, "seconds_fwd_bwd": best, "compile_seconds": compile_s,
      "temp_bytes": int(mem.temp_size_in_bytes) if mem is not None else None,
      "argument_bytes": int(mem.argument_size_in_bytes) if mem is not None else None,
  }


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--json", action="store_true")
  parser.add_argument("--lengths", default="512,2048,4096")
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--impls", default="", help="comma-separated; default: all available")
  parser.add_argument("--dtype", default="", help="float32 or bfloat16; default: float32 on "
                      "CPU, bfloat16 on accelerators")
  args = parser.parse_args(argv)
  platform = jax.devices()[0].platform
  dtype = jnp.dtype(args.dtype or ("float32" if platform == "cpu" else "bfloat16"))
  impls = args.impls.split(",") if args.impls else available_impls(platform)
  results = []
  load_before = os.getloadavg()
  for length in (int(x) for x in args.lengths.split(",")):
    for shape in ("CD", "ND"):
      for impl in impls:
        r = measure(impl, shape, length, dtype, args.repeats)
        results.append(r)
        if not args.json:
          print(f"{shape} L={length:5d} {impl:10s} ({r['kernel_used']:10s}) "
                f"{r['seconds_fwd_bwd'] * 1e3:9.1f} ms  temp {r['temp_bytes'] / 2**20:9.1f} MiB",
                flush=True)
  ratios = {}
  for r in results:
    if r["impl"] == "blockwise":
      ref = next(x for x in results if x["impl"] == "xla" and x["shape"] == r["shape"]
                 and x["length"] == r["length"])
      if ref["temp_bytes"]:
        ratios[f"{r['shape']}_L{r['length']}"] = r["temp_bytes"] / ref["temp_bytes"]
  summary = {"benchmark": "attention", "platform": platform, "device": str(jax.devices()[0]),
             "load_average_before": load_before, "load_average_after": os.getloadavg(),
             "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
             "blockwise_over_xla_temp_bytes": ratios, "results": results}
  if args.json:
    print(json.dumps(summary, indent=1))
  else:
    print(json.dumps({"blockwise_over_xla_temp_bytes": ratios}))
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
