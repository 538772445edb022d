"""arch/memory.py's per-device estimate against XLA's compiled memory analysis of the train step."""

import contextlib
import io
import json

import gin
import jax
import pytest

from arch import accounting
from arch import memory
from arch import models
from arch.config import TransformerConfig
from experiments import optimizers
from experiments import partitioning
from experiments import trainer
from experiments.runtime import gin_utils

CASES = [  # (architecture, lengths, remat policy, scanned, microbatches, optimizer)
    ("causal_decoder", {"targets": 128}, "none", False, 1, "adafactor"),
    ("causal_decoder", {"targets": 128}, "full", True, 1, "adafactor"),
    ("causal_decoder", {"targets": 128}, "save_projections", True, 2, "adam"),
    pytest.param("causal_decoder", {"targets": 128}, "dots", True, 1, "adafactor",
                 marks=pytest.mark.slow),
    pytest.param("encoder_decoder", {"inputs": 96, "targets": 32}, "none", False, 1, "adafactor",
                 marks=pytest.mark.slow),
    pytest.param("encoder_decoder", {"inputs": 96, "targets": 32}, "save_qkv", True, 2,
                 "adafactor", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("name,lengths,policy,scan,microbatches,optimizer", CASES)
def test_estimate_is_within_a_quarter_of_xla(name, lengths, policy, scan, microbatches, optimizer):
  """XLA's peak: arguments + outputs - donated (aliased) outputs + temporaries, float32 on CPU
  (XLA:CPU computes bfloat16 dots in float32, so its bfloat16 figures say nothing of a GPU's)."""
  cfg = TransformerConfig(vocab_size=1000, emb_dim=128, num_heads=4, head_dim=32, mlp_dim=512,
                          num_layers=4, num_encoder_layers=2, num_decoder_layers=2,
                          scan_layers=scan, remat_policy=policy)
  model = models.get_model(name, cfg)
  schedule = optimizers.constant_schedule(0.01)
  opt = (optimizers.adafactor(learning_rate=schedule) if optimizer == "adafactor"
         else optimizers.adamw(learning_rate=schedule))
  part = partitioning.Partitioner((1, 1), "data_parallel", devices=jax.devices()[:1])
  builder = trainer.StepBuilder(model, opt, part, model.input_shapes(8, lengths), microbatches)
  analysis = builder.compile().memory_analysis()
  xla = (analysis.argument_size_in_bytes + analysis.output_size_in_bytes
         - analysis.alias_size_in_bytes + analysis.temp_size_in_bytes)
  est = memory.estimate(model, lengths, memory.Layout(8, microbatches, optimizer=optimizer))
  assert 0.75 * xla <= est["peak_bytes"] <= 1.25 * xla, (est, xla)
  # The state itself is exact: parameters as the compiled step's float32 arguments.
  params = sum(x.size * 4 for x in jax.tree_util.tree_leaves(builder.abstract_params))
  assert est["params_bytes"] == params


def test_sharded_layout_divides_the_state():
  cfg = TransformerConfig(vocab_size=1000, emb_dim=128, num_heads=4, head_dim=32, mlp_dim=512,
                          num_layers=2, scan_layers=True, remat_policy="full")
  model = models.get_model("causal_decoder", cfg)
  lengths = {"targets": 64}
  one = memory.estimate(model, lengths, memory.Layout(16))
  fsdp = memory.estimate(model, lengths, memory.Layout(16, data=8, strategy="fsdp"))
  dp = memory.estimate(model, lengths, memory.Layout(16, data=8))
  assert dp["params_bytes"] == one["params_bytes"]  # replicated
  assert fsdp["params_bytes"] < one["params_bytes"] / 6  # embed over 8 (norm scales too)
  assert fsdp["activations_bytes"] == dp["activations_bytes"] < one["activations_bytes"] / 6
  with pytest.raises(ValueError, match="microbatches"):
    memory.Layout(16, 3)


def _cli(*args):
  out = io.StringIO()
  with contextlib.redirect_stdout(out):
    assert accounting.main(list(args)) == 0
  gin.clear_config()
  return out.getvalue()


def test_cli_reads_the_run_layer_and_says_when_a_step_does_not_fit():
  stack = ["--gin_file=gin_configs/arch/causal_decoder.gin", "--gin_file=gin_configs/data/c4.gin",
           "--gin_file=gin_configs/objectives/full_lm.gin"]
  adam = json.loads(_cli(*stack, "--gin_file=gin_configs/runs/decoder_1b_8gpu.gin", "--memory",
                         "--json", "--num_devices=8",
                         "--gin.experiments.train.train.optimizer=@experiments.optimizers.adamw()"))
  mem = adam["memory"]
  assert (mem["optimizer"], mem["mesh"], mem["num_microbatches"]) == ("adam", {"data": 8, "model": 1}, 8)
  assert mem["optimizer_bytes"] == 2 * mem["params_bytes"]
  # The paper's size with the plain pretraining run file: one microbatch, data parallel.
  table = _cli(*stack, "--gin_file=gin_configs/sizes/paper.gin",
               "--gin_file=gin_configs/runs/pretrain.gin", "--memory", "--num_devices=8",
               "--device_gib=80")
  assert "DOES NOT FIT" in table and "256 rows per device" in table
  with pytest.raises(gin_utils.GinConfigError, match="--num_devices"):
    _cli(*stack, "--gin_file=gin_configs/runs/decoder_1b_8gpu.gin", "--memory", "--num_devices=0.5")
