"""arch.accounting against XLA's own count of the compiled forward pass."""

import jax
import jax.numpy as jnp
import pytest

from arch import accounting
from arch import models
from arch import registry
from arch.config import TransformerConfig


@pytest.mark.parametrize("name,lengths", [("causal_decoder", {"targets": 64}),
                                          ("encoder_decoder", {"inputs": 48, "targets": 16})])
def test_weight_flops_match_xla_cost_analysis(name, lengths):
  """Weight FLOPs / 3 + dense attention = XLA's forward FLOPs minus elementwise work (< 3%).

  Dense einsum attention computes masked pairs too, so here every block is counted in full. The
  encoder-decoder case checks that cross-attention keys/values are charged to encoder tokens.
  """
  cfg = TransformerConfig(vocab_size=2048, emb_dim=128, num_heads=4, head_dim=32, mlp_dim=512,
                          num_layers=2, num_encoder_layers=2, num_decoder_layers=2)
  model = models.get_model(name, cfg)
  shapes = model.input_shapes(1, lengths, pack=False)
  params = jax.eval_shape(lambda: model.get_initial_variables(jax.random.PRNGKey(0), shapes))
  batch = {k: jax.ShapeDtypeStruct(s, jnp.int32) for k, s in shapes.items()}
  compiled = jax.jit(model.logits).lower(params["params"], batch).compile()
  analysis = compiled.cost_analysis()
  xla_flops = float((analysis[0] if isinstance(analysis, (list, tuple)) else analysis)["flops"])

  counts = accounting.account(model, lengths)
  if name == "encoder_decoder":
    s_in, s_t = lengths["inputs"], lengths["targets"]
    dense_pairs = 2 * (s_in * s_in + s_t * s_t + s_t * s_in)
  else:
    dense_pairs = 2 * lengths["targets"] ** 2
  ours = counts["weight_flops_per_example"] / 3 + 4 * 128 * dense_pairs
  assert 0 <= xla_flops - ours < 0.03 * xla_flops, (xla_flops, ours)


# Each built-in's default lengths (the paper's shape: CD 626, ND and ED 512 + 114) at the paper's
# size: (params, training FLOPs per example, attention FLOPs per example).
PAPER_COUNTS = {
    "causal_decoder": (4_762_357_760, 18_117_615_157_248, 231_137_869_824),
    "non_causal_decoder": (4_762_357_760, 18_272_233_979_904, 385_756_692_480),
    "encoder_decoder": (11_003_736_064, 20_892_700_901_376, 385_756_692_480),
}


@pytest.mark.parametrize("name", sorted(PAPER_COUNTS))
def test_paper_counts_at_the_registered_default_lengths(name):
  cfg = TransformerConfig(emb_dim=4096, num_heads=64, head_dim=64, mlp_dim=10240, num_layers=24,
                          num_encoder_layers=24, num_decoder_layers=24)
  counts = accounting.account(models.get_model(name, cfg))
  assert counts["task_feature_lengths"] == registry.get(name).default_feature_lengths
  assert (counts["params"], counts["train_flops_per_example"],
          counts["attention_flops_per_example"]) == PAPER_COUNTS[name]


def test_nd_prefix_lm_rows_count_decoder_length_positions():
  # The paper's ND:PLM rows: 626 positions, one sequence each (not inputs + targets = 1,252).
  cfg = TransformerConfig(emb_dim=4096, num_heads=64, head_dim=64, mlp_dim=10240, num_layers=24)
  nd = accounting.account(models.get_model("non_causal_decoder", cfg),
                          {"inputs": 626, "targets": 626, "decoder_length": 626})
  cd = accounting.account(models.get_model("causal_decoder", cfg), {"targets": 626})
  assert nd["tokens_per_example"] == 626
  assert nd["attention_shape"] == {"length": 626, "bidirectional_prefix": 626}
  # Same weights over the same 626 tokens as CD:FLM; the prefix block is capped at the row.
  assert nd["weight_flops_per_example"] == cd["weight_flops_per_example"]
  assert nd["attention_flops_per_example"] == 12 * 64 * 64 * 24 * 626 ** 2
  pairs = accounting.account(models.get_model("non_causal_decoder", cfg),
                             {"inputs": 626, "targets": 626})
  assert pairs["tokens_per_example"] == 1252  # seqio's rows: two sequences per row
