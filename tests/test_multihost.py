"""Two processes on localhost (CPU, gloo, 4 virtual devices each: one 8-device mesh) train, save,
stop together on one host's SIGTERM, resume and evaluate; one process checks them.

One launch of two processes covers, to keep CPU time low: per-host data shards that differ,
identical parameters on both hosts, a SIGTERM to process 1 only that makes both save one step and
exit 143, a resumed run equal bit for bit to the uninterrupted one, and an evaluation in which each
host scores its share. Then one process with 8 devices: the same training from the same global
batches equals the two-process result within float tolerance, the checkpoint restores onto a
tensor-parallel and an fsdp mesh and into scanned layers, and its evaluation equals the two hosts'.
"""

import json
import os
import pathlib
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from experiments import testing

TRAIN_STEPS = 6
SIGTERM_AFTER_STEP = 2  # process 1 only; the vote is read one step later, so both save step 4
EVAL_BINDINGS = ["EVAL_SUITE = 'embedded:word_order'", "arch.config.TransformerConfig.dtype = "
                 "'float32'", "eval.zero_shot.evaluate_checkpoint.embedded_examples = 24",
                 "eval.zero_shot.evaluate_checkpoint.prompt_source = 'builtin'",
                 # small batches: several to share between the hosts
                 "eval.zero_shot.evaluate_checkpoint.scoring_config = "
                 "@eval.rank_classification.ScoringConfig()",
                 "eval.rank_classification.ScoringConfig.batch_tokens = 256"]

_COMMON = r'''
import json, os, pathlib, sys
import jax
jax.config.update("jax_cpu_collectives_implementation", "gloo")
from experiments import distributed
INITIALIZED = distributed.maybe_initialize()
import numpy as np
from experiments import data as data_lib, loop, testing
from experiments.runtime import checkpoints as ckpt_lib
from eval import zero_shot

out = pathlib.Path(sys.argv[1])
TRAIN_STEPS, EVAL_BINDINGS = int(sys.argv[2]), json.loads(sys.argv[3])
pid = jax.process_index()
saved = {}  # (run, step) -> this process's own copy of every parameter at that save
_save = ckpt_lib.Checkpointer.save
def save(self, step, params, train_state, meta):
  leaves = jax.tree_util.tree_leaves(params)
  saved[(self.directory.parent.name, step)] = [np.asarray(x.addressable_data(0)) for x in leaves]
  return _save(self, step, params, train_state, meta)
ckpt_lib.Checkpointer.save = save

def stack(name):
  return testing.tiny_stack("causal_decoder", "full_lm", out / name, TRAIN_STEPS, batch_size=8,
                            log_period=2, checkpoint_period=2)

def evaluate(name):
  files = ["gin_configs/arch/causal_decoder.gin", "gin_configs/sizes/tiny.gin",
           "gin_configs/data/embedded.gin"]
  from eval import rank_classification as rc
  scorers = []
  original = rc.ModelScorer.__init__
  def init(self, *a, **k):
    original(self, *a, **k)
    scorers.append(self)
  rc.ModelScorer.__init__ = init
  try:
    results = zero_shot.run(files, [f"CHECKPOINT_PATH = '{out / 'A'}'",
                                    f"EVAL_OUTPUT_DIR = '{out / name}'", *EVAL_BINDINGS])
  finally:
    rc.ModelScorer.__init__ = original
  return results["tasks"], scorers[0].stats["batches"]
'''

_TWO = _COMMON + r'''
assert INITIALIZED and jax.process_count() == 2 and jax.device_count() == 8, jax.devices()
batches = []
_next = data_lib.TrainData.__next__
def next_batch(self):
  batch = _next(self)
  if self.model_dir.name == "A":
    batches.append(batch)
  return batch
data_lib.TrainData.__next__ = next_batch

loop.run(*stack("A"), log_config=False)
if pid == 1:
  os.environ["ZEROSHOT_HARNESS_SIGNAL_AT_STEP"] = "%d:SIGTERM" % int(sys.argv[4])
code = testing.cli_exit_code(loop.main, testing.as_flags(*stack("B")))
os.environ.pop("ZEROSHOT_HARNESS_SIGNAL_AT_STEP", None)
preempted_steps = sorted(saved_step for run, saved_step in saved if run == "B")
loop.run(*stack("B"), log_config=False)  # the rerun: resumes
tasks, own_batches = evaluate("eval2")
np.savez(out / f"host{pid}.npz",
         **{f"batch{i}_{k}": v for i, b in enumerate(batches) for k, v in b.items()},
         **{f"{run}{step}_{i}": x for (run, step), xs in saved.items() for i, x in enumerate(xs)})
(out / f"host{pid}.json").write_text(json.dumps(dict(
    code=code, preempted_steps=preempted_steps, tasks=tasks, eval_batches=own_batches,
    devices=[d.id for d in jax.local_devices()])))
'''

_ONE = _COMMON + r'''
assert not INITIALIZED and jax.process_count() == 1 and jax.device_count() == 8
hosts = [np.load(out / f"host{h}.npz") for h in (0, 1)]

class GlobalBatches:
  """The two hosts' recorded rows, concatenated: the global batches of the two-process run."""
  def __init__(self, *args, **kwargs):
    self.position = 0
  def __iter__(self):
    return self
  def __next__(self):
    keys = sorted({k.split("_", 1)[1] for k in hosts[0].files if k.startswith("batch0_")})
    i, self.position = self.position, self.position + 1
    return {k: np.concatenate([h[f"batch{i}_{k}"] for h in hosts]) for k in keys}
  def save_state(self, *args, **kwargs):
    pass

data_lib.TrainData = GlobalBatches
loop.run(*stack("one"), log_config=False)
report = {"one": {}}
for (run, step), xs in saved.items():
  for i, x in enumerate(xs):
    report["one"][f"{step}_{i}"] = x
np.savez(out / "one.npz", **report["one"])

# The two-process checkpoint onto other meshes and into the scanned layout.
import gin
from arch import models
from experiments import partitioning, trainer, optimizers
from experiments.runtime import gin_utils
loop.parse_and_check(*stack("A"))
model = models.get_model()
restored = {}
from arch import layouts, stack as stack_lib
scanned = models.get_model(config=model.config.replace(scan_layers=True))
for label, shape, strategy, net in [("tp", (2, 4), "tensor_parallel", model),
                                    ("fsdp", (4, 2), "fsdp", model),
                                    ("scanned", (4, 2), "fsdp", scanned)]:
  part = partitioning.Partitioner(shape, strategy)
  builder = trainer.StepBuilder(net, optimizers.adafactor(optimizers.constant_schedule(0.01)),
                                part, net.input_shapes(8, {"targets": 32}), 1)
  params = ckpt_lib.restore_params(out / "A", builder.abstract_state.params,
                                   convert=layouts.plan)
  sharded = [str(x.sharding.spec) for x in jax.tree_util.tree_leaves(params)]
  if net is scanned:  # compared in the saved (unrolled) layout
    params = stack_lib.scanned_to_unrolled(params)
  restored[label] = dict(leaves=[np.asarray(x) for x in jax.tree_util.tree_leaves(params)],
                         sharded=sharded)
np.savez(out / "restored.npz", **{f"{label}_{i}": x for label, r in restored.items()
                                   for i, x in enumerate(r["leaves"])})
tasks, own_batches = evaluate("eval1")
(out / "one.json").write_text(json.dumps(dict(
    tasks=tasks, eval_batches=own_batches,
    specs={label: r["sharded"] for label, r in restored.items()})))
'''


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _env(**extra) -> dict:
  env = {k: v for k, v in os.environ.items()
         if not k.startswith(("JAX_", "SLURM_", "OMPI_")) and k not in ("NNODES", "NODE_RANK")}
  env.update({"PYTHONPATH": str(testing.REPO_ROOT), "JAX_PLATFORMS": "cpu",
              "TF_CPP_MIN_LOG_LEVEL": "3",
              "XLA_FLAGS": "--xla_force_host_platform_device_count=4", **extra})
  return env


def _args(script: str, out: pathlib.Path) -> list[str]:
  return [sys.executable, "-c", script, str(out), str(TRAIN_STEPS), json.dumps(EVAL_BINDINGS),
          str(SIGTERM_AFTER_STEP)]


@pytest.fixture(scope="module")
def launched(tmp_path_factory):
  out = tmp_path_factory.mktemp("multihost")
  start = time.perf_counter()
  port = _free_port()
  procs = [subprocess.Popen(_args(_TWO, out), cwd=testing.REPO_ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            env=_env(JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
                                     JAX_NUM_PROCESSES="2", JAX_PROCESS_ID=str(i)))
           for i in range(2)]
  logs = [p.communicate(timeout=900)[0] for p in procs]
  two_s = time.perf_counter() - start
  for p, log in zip(procs, logs):
    assert p.returncode == 0, log[-6000:]
  one = subprocess.run(_args(_ONE, out), cwd=testing.REPO_ROOT, capture_output=True, text=True,
                       timeout=900, env=_env(XLA_FLAGS="--xla_force_host_platform_device_count=8"),
                       check=False)
  assert one.returncode == 0, (one.stdout + one.stderr)[-6000:]
  print(f"multihost wall time: two processes {two_s:.1f} s, "
        f"one process {time.perf_counter() - start - two_s:.1f} s")
  hosts = [json.loads((out / f"host{h}.json").read_text()) for h in (0, 1)]
  return out, hosts, json.loads((out / "one.json").read_text())


def _leaves(npz, prefix):
  return [npz[f"{prefix}_{i}"] for i in range(sum(k.startswith(prefix + "_") for k in npz.files))]


@pytest.mark.slow
def test_hosts_read_different_shards_and_hold_identical_parameters(launched):
  out, hosts, _ = launched
  h0, h1 = (np.load(out / f"host{h}.npz") for h in (0, 1))
  assert h0["batch0_decoder_target_tokens"].shape[0] == 4  # BATCH_SIZE 8 / 2 hosts
  assert not np.array_equal(h0["batch0_decoder_target_tokens"], h1["batch0_decoder_target_tokens"])
  for step in (2, 4, TRAIN_STEPS):
    for a, b in zip(_leaves(h0, f"A{step}"), _leaves(h1, f"A{step}")):
      np.testing.assert_array_equal(a, b)
  assert hosts[0]["devices"] != hosts[1]["devices"]


@pytest.mark.slow
def test_two_processes_equal_one_process_on_eight_devices(launched):
  out, _, _ = launched
  two, one = np.load(out / "host0.npz"), np.load(out / "one.npz")
  a, b = _leaves(two, f"A{TRAIN_STEPS}"), _leaves(one, str(TRAIN_STEPS))
  assert len(a) == len(b) > 0
  for x, y in zip(a, b):
    np.testing.assert_allclose(x, y, rtol=2e-5, atol=2e-6)
  initial = _leaves(two, "A2")
  assert any(not np.allclose(x, y) for x, y in zip(initial, a))  # training moved them


@pytest.mark.slow
def test_sigterm_to_one_process_saves_one_step_on_all_and_resumes_bitwise(launched):
  out, hosts, _ = launched
  assert [h["code"] for h in hosts] == [143, 143]
  # checkpoints every 2 steps; the signal after step 2 is agreed at step 4 on both hosts
  assert hosts[0]["preempted_steps"] == hosts[1]["preempted_steps"] == [2, 4]
  h0 = np.load(out / "host0.npz")
  for x, y in zip(_leaves(h0, f"B{TRAIN_STEPS}"), _leaves(h0, f"A{TRAIN_STEPS}")):
    np.testing.assert_array_equal(x, y)


@pytest.mark.slow
def test_checkpoint_restores_onto_other_meshes(launched):
  out, _, one = launched
  saved = _leaves(np.load(out / "host0.npz"), f"A{TRAIN_STEPS}")
  restored = np.load(out / "restored.npz")
  for label in ("tp", "fsdp", "scanned"):
    for x, y in zip(_leaves(restored, label), saved):
      np.testing.assert_array_equal(x, y)
  assert any("model" in s for s in one["specs"]["tp"])
  assert any("data" in s for s in one["specs"]["fsdp"])
  assert any(s.startswith("P(None, ") and "data" in s for s in one["specs"]["scanned"])


@pytest.mark.slow
def test_each_host_scores_its_share_and_results_equal_one_host(launched):
  out, hosts, one = launched
  assert hosts[0]["tasks"] == hosts[1]["tasks"] == one["tasks"]
  assert hosts[0]["eval_batches"] + hosts[1]["eval_batches"] == one["eval_batches"]
  assert 0 < hosts[1]["eval_batches"] < one["eval_batches"]
  assert (out / "eval2" / "results.json").is_file()
