"""A checkpoint restores across layer layouts (scanned <-> unrolled, arch/layouts.py).

Meshes (data vs tensor parallel vs fsdp) are covered with 8 devices in tests/test_multihost.py.
"""

import jax
import numpy as np
import pytest

from arch import config as config_lib
from arch import layouts
from arch import models
from arch import stack
from experiments.runtime import checkpoints

_SHAPES = {"inputs": 8, "targets": 8}


def _model(arch, scan, layers=2):
  cfg = config_lib.TransformerConfig(
      vocab_size=64, emb_dim=16, num_heads=2, head_dim=8, mlp_dim=32, num_layers=layers,
      num_encoder_layers=layers, num_decoder_layers=layers, scan_layers=scan, dtype="float32")
  return models.get_model(arch, cfg)


def _params(model, seed=0):
  return model.get_initial_variables(jax.random.PRNGKey(seed),
                                     model.input_shapes(1, _SHAPES))["params"]


def _abstract(model):
  return jax.eval_shape(lambda: _params(model))


def _save(path, params):
  ckpt = checkpoints.Checkpointer(path, async_save=False)
  ckpt.save(1, params, {"step": np.array(1, np.int32)}, {"step": 1})
  ckpt.close()


def _assert_same(a, b):
  assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
  for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["causal_decoder", "encoder_decoder"])
def test_scanned_restores_unrolled_and_back(tmp_path, arch):
  scanned = _params(_model(arch, scan=True))
  _save(tmp_path / "scanned", scanned)
  unrolled = checkpoints.restore_params(tmp_path / "scanned", _abstract(_model(arch, scan=False)),
                                        convert=layouts.plan)
  _assert_same(unrolled, stack.scanned_to_unrolled(scanned))
  _save(tmp_path / "unrolled", unrolled)
  back = checkpoints.restore_params(tmp_path / "unrolled", _abstract(_model(arch, scan=True)),
                                    convert=layouts.plan)
  _assert_same(back, scanned)


def test_same_layout_needs_no_plan():
  model = _model("causal_decoder", scan=True)
  assert layouts.plan(_abstract(model), _abstract(model)) is None
  assert layouts.describe(_abstract(model)) == "2 scanned layers"
  assert layouts.describe(_abstract(_model("encoder_decoder", scan=False, layers=3))) == (
      "decoder: 3 unrolled layers; encoder: 3 unrolled layers")


def test_layers_that_cannot_be_converted_say_what_differs(tmp_path):
  _save(tmp_path, _params(_model("causal_decoder", scan=True, layers=2)))
  with pytest.raises(checkpoints.CheckpointError,
                     match=r"another layer layout: the checkpoint holds 2 scanned layers; "
                           r"the model has 3 unrolled layers"):
    checkpoints.restore_params(tmp_path, _abstract(_model("causal_decoder", scan=False, layers=3)),
                               convert=layouts.plan)
  with pytest.raises(checkpoints.CheckpointError, match="does not fit the configured model"):
    checkpoints.restore_params(tmp_path, _abstract(_model("causal_decoder", scan=False, layers=3)))
