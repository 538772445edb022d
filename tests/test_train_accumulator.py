"""The gradient accumulator of microbatched steps keeps the parameters' shardings (8 CPU devices)."""

import json
import os
import subprocess
import sys

import pytest

_SCRIPT = r'''
import collections, json, re
import jax, numpy as np
from arch import config as config_lib, models
from experiments import optimizers, partitioning, trainer

assert jax.device_count() == 8, jax.devices()
cfg = config_lib.TransformerConfig(vocab_size=250, emb_dim=64, num_heads=4, head_dim=16,
                                   mlp_dim=128, num_layers=2)
model = models.get_model("causal_decoder", cfg)
shapes = model.input_shapes(16, {"targets": 32})
opt = optimizers.adafactor(learning_rate=optimizers.constant_schedule(0.01))
builder = trainer.StepBuilder(model, opt, partitioning.Partitioner((8, 1), "fsdp"), shapes, 2)
param_shardings = jax.tree_util.tree_leaves(builder.params_shardings)
params = jax.tree_util.tree_leaves(builder.abstract_params)

# The scan's carry: every accumulated gradient leaves the body through a sharding constraint
# equal to its parameter's sharding.
with builder._context():
  jaxpr = jax.make_jaxpr(builder._step)(builder.abstract_state, builder.abstract_batch)
scan, = [e for e in jaxpr.eqns if e.primitive.name == "scan"]
body = scan.params["jaxpr"].jaxpr
producer = {id(v): e for e in body.eqns for v in e.outvars}
grads_out = body.outvars[scan.params["num_carry"] - len(params):scan.params["num_carry"]]
carry = []
for v, s in zip(grads_out, param_shardings):
  e = producer.get(id(v))
  constrained = e is not None and e.primitive.name == "sharding_constraint"
  carry.append([constrained, constrained and e.params["sharding"].spec == s.spec, str(s.spec)])

# The compiled loop carries each gradient as its parameter's per-device shard.
hlo = builder.compile().as_text()
loop, = [l for l in hlo.splitlines() if " while(" in l and "known_trip_count" in l]
carried = collections.Counter(re.findall(r"f32\[([\d,]*)\]", loop.split(" while(")[0]))
shards = collections.Counter(
    ",".join(map(str, s.shard_shape(p.shape))) for s, p in zip(param_shardings, params))
missing = {k: n - carried[k] for k, n in shards.items() if carried[k] < n}
sharded = sum(s.shard_shape(p.shape) != p.shape for s, p in zip(param_shardings, params))
print("RESULT " + json.dumps({"carry": carry, "missing": missing, "sharded": sharded}))
'''


@pytest.mark.multidevice
@pytest.mark.slow
def test_microbatch_accumulator_is_sharded_as_the_params_under_fsdp(repo_root):
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
             JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(repo_root))
  proc = subprocess.run([sys.executable, "-c", _SCRIPT], cwd=repo_root, env=env,
                        capture_output=True, text=True, timeout=600, check=False)
  lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
  assert proc.returncode == 0 and lines, proc.stderr[-3000:]
  out = json.loads(lines[-1][len("RESULT "):])
  assert out["sharded"] > 10  # fsdp really splits the parameters over the 8 devices
  assert all(c[0] and c[1] for c in out["carry"]), out["carry"]
  assert out["missing"] == {}, out
