"""Sharded training on 8 virtual CPU devices equals one device (run in a subprocess)."""

import json
import os
import subprocess
import sys

import pytest

_SCRIPT = r'''
import json, sys
import jax, jax.numpy as jnp, numpy as np
from arch import config as config_lib, models
from experiments import optimizers, partitioning, trainer

assert jax.device_count() == 8, jax.devices()
cfg = config_lib.TransformerConfig(vocab_size=250, emb_dim=32, num_heads=4, head_dim=8,
                                   mlp_dim=64, num_layers=2, attention_impl=sys.argv[1])
model = models.get_model("causal_decoder", cfg)
shapes = model.input_shapes(8, {"targets": 32})
rng = np.random.RandomState(0)
batch = {k: rng.randint(2, 250, size=s).astype(np.int32) for k, s in shapes.items()}
batch["decoder_loss_weights"] = (rng.rand(*shapes["decoder_loss_weights"]) < 0.8).astype(np.int32)
batch["decoder_segment_ids"] = np.ones(shapes["decoder_segment_ids"], np.int32)
batch["decoder_positions"] = np.tile(np.arange(32, dtype=np.int32), (8, 1))
opt = optimizers.adafactor(learning_rate=optimizers.constant_schedule(0.01))

def build(mesh_shape, strategy, devices=None):
  part = partitioning.Partitioner(mesh_shape, strategy, devices=devices)
  return trainer.StepBuilder(model, opt, part, shapes, 1)

def host(tree):
  return [np.asarray(x) for x in jax.tree_util.tree_leaves(tree)]

ref = build((1, 1), "data_parallel", jax.devices()[:1])
params = host(ref.init_params(0))
def run(builder):
  p = jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(builder.abstract_params), params)
  p = jax.device_put(p, builder.params_shardings)
  b = trainer.global_batch(batch, builder.batch_shardings)
  loss, grads = builder.loss_and_grads()(p, b)
  state, metrics = builder.compile()(builder.make_state(p, 0, 0), b)
  return float(loss), host(grads), host(state.params), float(metrics["grad_norm"])

out = {}
base = run(ref)
for label, shape, strategy in [("data8", (8, 1), "data_parallel"),
                               ("data4_model2_tp", (4, 2), "tensor_parallel"),
                               ("data4_model2_fsdp", (4, 2), "fsdp")]:
  builder = build(shape, strategy)
  specs = [str(s.spec) for s in jax.tree_util.tree_leaves(builder.params_shardings)]
  loss, grads, new_params, gnorm = run(builder)
  rel = lambda a, b: max(float(np.abs(x - y).max() / (np.abs(y).max() + 1e-30)) for x, y in zip(a, b))
  out[label] = {
      "loss_rel": abs(loss - base[0]) / abs(base[0]),
      "grads_rel": rel(grads, base[1]),
      "params_rel": rel(new_params, base[2]),
      "grad_norm_rel": abs(gnorm - base[3]) / base[3],
      "sharded_on_model": sum("model" in s for s in specs),
      "sharded_on_data": sum("data" in s for s in specs),
  }
try:
  trainer.StepBuilder(model, opt, partitioning.Partitioner((8, 1)), model.input_shapes(4, {"targets": 32}), 1)
  out["indivisible_error"] = None
except ValueError as e:
  out["indivisible_error"] = str(e)
print("RESULT " + json.dumps(out))
'''


@pytest.mark.multidevice
@pytest.mark.slow
@pytest.mark.parametrize("impl", ["cpu", "xla"])
def test_meshes_match_one_device(repo_root, impl):
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
             JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(repo_root))
  proc = subprocess.run([sys.executable, "-c", _SCRIPT, impl], cwd=repo_root, env=env,
                        capture_output=True, text=True, timeout=900, check=False)
  lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
  assert proc.returncode == 0 and lines, proc.stderr[-3000:]
  out = json.loads(lines[-1][len("RESULT "):])
  # Tolerance: float32 reductions split across devices change the summation order only.
  for label in ("data8", "data4_model2_tp", "data4_model2_fsdp"):
    r = out[label]
    assert r["loss_rel"] < 1e-5, (label, r)
    assert r["grads_rel"] < 1e-4, (label, r)
    assert r["grad_norm_rel"] < 1e-5, (label, r)
    assert r["params_rel"] < 1e-4, (label, r)
  # The meshes really shard: tensor parallel splits heads/mlp/vocab, fsdp also 'embed' over data.
  assert out["data8"]["sharded_on_model"] == 0 and out["data8"]["sharded_on_data"] == 0
  assert out["data4_model2_tp"]["sharded_on_model"] > 0
  assert out["data4_model2_fsdp"]["sharded_on_data"] > 0
  assert "not divisible by the mesh's data axis" in out["indivisible_error"]
