"""Steady-state training throughput of the real train step for every registered architecture.

  python -m benchmarks.train_throughput --json [--steps=10] [--batch_size=8]
      [--archs=causal_decoder,...] [--attention_impl=auto] [--no_probe] [--verbose]

Fixed configuration (the issue's): emb 256, 4 layers (ED: 4 + 4), 4 heads x 64, gated MLP 1024
(GEGLU), vocabulary 32,000 untied, float32, batch 8, 256 token positions per example (a causal
decoder: 256 targets; an architecture with an encoder or a bidirectional prefix: 128 inputs + 128
targets, in one 256-row for ND). Every registered architecture by default. It builds the
trainer's own compiled step (Adafactor, explicit shardings, donated state), runs warm-up steps
after compilation, then times `--steps` steps on synthetic batches (the input pipeline is measured
by benchmarks/data_throughput.py). MFU uses arch.accounting's FLOPs and the float32 matmul peak
measured in the same run. Load average and peak RSS are printed with the figures; this never gates
tests. Like the trainer, it restarts once with the tuned glibc allocator
(experiments/runtime/hostenv.py); `allocator`, `system_cpu_seconds_per_step` and
`page_faults_per_step` show its effect, and ZEROSHOT_HARNESS_ALLOCATOR=system measures the system
default for comparison.
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
import numpy as np  # noqa: E402

from arch import accounting  # noqa: E402
from arch import config as config_lib  # noqa: E402
from arch import models  # noqa: E402
from arch import registry  # noqa: E402
from experiments import metrics as metrics_lib  # noqa: E402
from experiments import optimizers  # noqa: E402
from experiments import partitioning  # noqa: E402
from experiments import trainer  # noqa: E402
from experiments.runtime import hostenv  # noqa: E402


def benchmark_lengths(name: str) -> dict[str, int]:
  """256 token positions per example: an inputs/targets split where the architecture has one."""
  arch = registry.get(name)
  if arch.encoder_decoder or arch.bidirectional_prefix:
    return {"inputs": 128, "targets": 128}
  return {"targets": 256}


def benchmark_config(**overrides) -> config_lib.TransformerConfig:
  fields = dict(vocab_size=32_000, emb_dim=256, num_heads=4, head_dim=64, mlp_dim=1024,
                num_layers=4, num_encoder_layers=4, num_decoder_layers=4, activations="geglu",
                tie_embeddings=False, dtype="float32")
  fields.update(overrides)
  return config_lib.TransformerConfig(**fields)


def synthetic_batch(model, shapes, lengths, seed=0) -> dict[str, np.ndarray]:
  """Unpacked full rows; ND's prefix marks the first `inputs` positions (+1) bidirectional."""
  rng = np.random.RandomState(seed)
  vocab = model.config.vocab_size
  batch = {k: rng.randint(2, vocab, size=s).astype(np.int32) for k, s in shapes.items()}
  batch["decoder_loss_weights"] = np.ones(shapes["decoder_loss_weights"], np.int32)
  if "decoder_causal_attention" in shapes:
    prefix = lengths["inputs"] + 1
    rows, width = shapes["decoder_causal_attention"]
    batch["decoder_causal_attention"] = np.tile(
        (np.arange(width) < prefix).astype(np.int32), (rows, 1))
    batch["decoder_loss_weights"] = 1 - batch["decoder_causal_attention"] + (
        np.arange(width) == prefix - 1).astype(np.int32)
  return batch


def measure(name: str, steps: int, batch_size: int, peak_per_device: float,
            warmup: int = 2, **config_overrides) -> dict:
  """Tokens/s and MFU of the compiled train step for one architecture."""
  model = models.get_model(name, benchmark_config(**config_overrides))
  lengths = benchmark_lengths(name)
  shapes = model.input_shapes(batch_size, lengths, pack=False)
  opt = optimizers.adafactor(learning_rate=optimizers.rsqrt_schedule())
  builder = trainer.StepBuilder(model, opt, partitioning.Partitioner(), shapes, 1)
  t0 = time.perf_counter()
  step = builder.compile()
  compile_s = time.perf_counter() - t0
  state = builder.make_state(builder.init_params(0), 0, 0)
  batch = trainer.global_batch(synthetic_batch(model, shapes, lengths), builder.batch_shardings)
  for _ in range(warmup):
    state, metrics = step(state, batch)
  jax.block_until_ready(metrics)
  t0, c0 = time.perf_counter(), time.process_time()
  r0 = resource.getrusage(resource.RUSAGE_SELF)
  for _ in range(steps):
    state, metrics = step(state, batch)
  jax.block_until_ready((state, metrics))
  seconds = (time.perf_counter() - t0) / steps
  r1 = resource.getrusage(resource.RUSAGE_SELF)
  # CPU seconds of this process per step: on a shared machine, a steadier measure of the work.
  cpu_seconds = (time.process_time() - c0) / steps
  tokens = batch_size * sum(v for v in lengths.values())
  counts = accounting.account(model, lengths)
  flops = counts["train_flops_per_example"] * batch_size
  return {
      "arch": name, "attention_impl": builder.model.config.attention_impl,
      "tokens_per_step": tokens, "seconds_per_step": seconds,
      "tokens_per_second": tokens / seconds,
      "cpu_seconds_per_step": cpu_seconds,
      "tokens_per_cpu_second": tokens / cpu_seconds,
      "system_cpu_seconds_per_step": (r1.ru_stime - r0.ru_stime) / steps,
      "page_faults_per_step": (r1.ru_minflt - r0.ru_minflt) / steps,
      "model_gflops_per_second": flops / seconds / 1e9,
      "mfu": metrics_lib.mfu(flops / seconds / jax.device_count(), peak_per_device),
      "params": counts["params"], "compile_seconds": compile_s,
      "loss_per_token": float(metrics["loss_per_token"]),
  }


def _cpu_seconds(fn, *args, repeats: int = 3) -> float:
  jax.block_until_ready(fn(*args))
  start = time.process_time()
  for _ in range(repeats):
    out = fn(*args)
  jax.block_until_ready(out)
  return (time.process_time() - start) / repeats


def vocab_loss_probe(tokens: int = 2048, emb: int = 256, vocab: int = 32_000, chunk: int = 512,
                     z_loss: float = 1e-4) -> dict:
  """CPU seconds of loss+grads of the output projection: materialized logits vs fused chunks.

  The materialized form (what a model's loss usually does) writes [tokens, vocab] logits and
  walks them several times (logsumexp, target gather, softmax gradient, a transpose for dW). The
  fused form computes the gradient during the forward pass, chunk by chunk, so each [chunk, vocab]
  block stays in cache (the "fused linear cross-entropy" trick). Evidence for arch/, where the
  loss lives; the trainer cannot change it through the model API.
  """
  keys = jax.random.split(jax.random.PRNGKey(0), 3)
  x_NxD = jax.random.normal(keys[0], (tokens, emb))
  w_DxV = jax.random.normal(keys[1], (emb, vocab)) * 0.05
  t_N = jax.random.randint(keys[2], (tokens,), 0, vocab)

  def materialized(w_DxV, x_NxD):
    logits_NxV = x_NxD @ w_DxV
    lse_N = jax.nn.logsumexp(logits_NxV, -1)
    target_N = jnp.take_along_axis(logits_NxV, t_N[:, None], -1)[:, 0]
    return jnp.sum(lse_N - target_N) + z_loss * jnp.sum(lse_N ** 2)

  def chunk_terms(x_CxD, t_C, w_DxV):
    logits_CxV = x_CxD @ w_DxV
    max_Cx1 = jnp.max(logits_CxV, -1, keepdims=True)
    exp_CxV = jnp.exp(logits_CxV - max_Cx1)
    sum_Cx1 = jnp.sum(exp_CxV, -1, keepdims=True)
    lse_C = (jnp.log(sum_Cx1) + max_Cx1)[:, 0]
    onehot_CxV = jnp.arange(vocab)[None, :] == t_C[:, None]
    target_C = jnp.sum(jnp.where(onehot_CxV, logits_CxV, 0.0), -1)
    loss = jnp.sum(lse_C - target_C) + z_loss * jnp.sum(lse_C ** 2)
    dlogits_CxV = (1 + 2 * z_loss * lse_C)[:, None] * (exp_CxV / sum_Cx1) - onehot_CxV
    return loss, dlogits_CxV @ w_DxV.T, x_CxD.T @ dlogits_CxV

  def fused_forward(w_DxV, x_NxD):
    n = tokens // chunk

    def body(carry, xs):
      loss, dw_DxV = carry
      loss_c, dx_CxD, dw_c = chunk_terms(xs[0], xs[1], w_DxV)
      return (loss + loss_c, dw_DxV + dw_c), dx_CxD

    (loss, dw_DxV), dx = jax.lax.scan(
        body, (jnp.zeros(()), jnp.zeros_like(w_DxV)),
        (x_NxD.reshape(n, chunk, emb), t_N.reshape(n, chunk)))
    return loss, (dw_DxV, dx.reshape(tokens, emb))

  @jax.custom_vjp
  def fused(w_DxV, x_NxD):
    return fused_forward(w_DxV, x_NxD)[0]

  fused.defvjp(fused_forward, lambda res, g: (g * res[0], g * res[1]))
  grad_a = jax.jit(jax.value_and_grad(materialized, argnums=(0, 1)))
  grad_b = jax.jit(jax.value_and_grad(fused, argnums=(0, 1)))
  (loss_a, (dw_a, dx_a)), (loss_b, (dw_b, dx_b)) = grad_a(w_DxV, x_NxD), grad_b(w_DxV, x_NxD)
  rel = lambda a, b: float(jnp.abs(a - b).max() / jnp.abs(a).max())  # noqa: E731
  return {
      "shape": {"tokens": tokens, "emb": emb, "vocab": vocab, "chunk": chunk},
      "materialized_cpu_seconds": _cpu_seconds(grad_a, w_DxV, x_NxD),
      "fused_chunked_cpu_seconds": _cpu_seconds(grad_b, w_DxV, x_NxD),
      "max_rel_diff": {"loss": abs(float(loss_a - loss_b)) / abs(float(loss_a)),
                       "dw": rel(dw_a, dw_b), "dx": rel(dx_a, dx_b)},
  }


def main(argv: list[str]) -> int:
  parser = argparse.ArgumentParser(prog="python -m benchmarks.train_throughput")
  parser.add_argument("--json", action="store_true", help="print one JSON object")
  parser.add_argument("--steps", type=int, default=10, help="timed steps per architecture")
  parser.add_argument("--batch_size", type=int, default=8)
  parser.add_argument("--archs", default=",".join(registry.names()),
                      help="comma-separated registered architectures")
  parser.add_argument("--no_probe", action="store_true", help="skip the vocab-loss probe")
  parser.add_argument("--attention_impl", default="auto",
                      help="TransformerConfig.attention_impl: the kernel set (arch/kernels)")
  args = parser.parse_args(argv)
  gflops = metrics_lib.measure_cpu_matmul_gflops() if jax.devices()[0].platform == "cpu" else None
  peak, peak_source = metrics_lib.peak_flops_per_device(cpu_gflops=gflops)
  results = [measure(a, args.steps, args.batch_size, peak, attention_impl=args.attention_impl)
             for a in args.archs.split(",")]
  out = {
      "load_average": list(os.getloadavg()),
      "matmul_peak_gflops": gflops,
      "peak_source": peak_source,
      "device": jax.devices()[0].device_kind,
      "xla_flags": os.environ.get("XLA_FLAGS", ""),
      "allocator": hostenv.allocator_summary(),
      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
      "results": results,
  }
  if not args.no_probe:
    out["vocab_loss_probe"] = vocab_loss_probe()
  if args.json:
    print(json.dumps(out, indent=1))
  else:
    for r in results:
      print(f"{r['arch']:>20}: {r['tokens_per_second']:8.0f} tokens/s, MFU {metrics_lib.format_mfu(r['mfu'])}")
    print(f"load average {out['load_average']}, matmul peak {gflops} GFLOP/s")
  return 0


if __name__ == "__main__":
  cli.run(main, doc=__doc__)
