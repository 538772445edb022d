"""Bad configurations fail at construction, naming the gin binding and the values allowed."""

import gin
import jax
import pytest
import seqio

from arch import config as config_lib
from arch import models
from arch import registry
from arch import testing
from experiments.runtime import gin_utils


# What the data and run layers bind; a test's own bindings come later and win.
_OTHER_LAYERS = ("VOCABULARY = None", "VOCAB_SIZE = 32128", "DROPOUT_RATE = 0.0")


def _build(*bindings, files=("gin_configs/arch/causal_decoder.gin", "gin_configs/sizes/tiny.gin")):
  gin_utils.parse_gin(list(files), [*_OTHER_LAYERS, *bindings])
  try:
    return gin.query_parameter("%MODEL").scoped_configurable_fn()
  finally:
    gin.clear_config()


@pytest.mark.parametrize("binding,needles", [
    ("arch.config.TransformerConfig.num_heads = 5",
     ["TransformerConfig.num_heads", "emb_dim = 32"]),
    ("arch.config.TransformerConfig.activations = 'swishglu'",
     ["TransformerConfig.activations", "'swishglu'", "'geglu'", "'swiglu'", "'relu'"]),
    ("arch.config.TransformerConfig.position_scheme = 'sinusoid'",
     ["TransformerConfig.position_scheme", "'relative'", "'rotary'", "'alibi'"]),
    ("arch.config.TransformerConfig.remat_policy = 'everything'",
     ["TransformerConfig.remat_policy", "'dots'"]),
    ("arch.models.get_model.name = 'prefix_decoder'",
     ["arch.models.get_model.name", "'prefix_decoder'", *map(repr, registry.names())]),
    ("arch.models.get_model.z_loss = -0.1", ["arch.models.get_model.z_loss", ">= 0"]),
    ("VOCAB_SIZE = 0", ["TransformerConfig.vocab_size", "positive integer"]),
])
def test_bad_gin_value_is_named(binding, needles):
  with pytest.raises(ValueError) as err:
    _build(binding)
  for needle in needles:
    assert needle in str(err.value), (needle, str(err.value))


def test_vocabulary_larger_than_vocab_size_is_rejected():
  # 300 ids of which the top 100 are sentinels; the model only has 200 rows in use.
  vocab = seqio.PassThroughVocabulary(size=300, eos_id=1)
  with pytest.raises(ValueError, match=r"VOCAB_SIZE = 200 .*\(300 ids.*VOCAB_SIZE = 300"):
    models.get_model("encoder_decoder", testing.tiny_config(vocab_size=200), vocabulary=vocab)
  ok = models.get_model("encoder_decoder", testing.tiny_config(vocab_size=300), vocabulary=vocab)
  assert ok.config.padded_vocab_size == 384
  # Inside the row padding a larger VOCAB_SIZE is fine (T5: 32,100 ids on 32,128 rows) ...
  assert models.get_model("encoder_decoder", testing.tiny_config(vocab_size=384),
                          vocabulary=vocab).config.padded_vocab_size == 384


def test_a_table_much_larger_than_the_vocabulary_is_rejected():
  """... beyond it, it is a mistake: T5's 32,128 rows on the embedded 4,100-id vocabulary."""
  vocab = seqio.PassThroughVocabulary(size=4100, eos_id=1)
  with pytest.raises(config_lib.ConfigError,
                     match=r"VOCAB_SIZE = 32,128 \(bound to arch.config.TransformerConfig.vocab_size"
                           r": 32,128 embedding rows\) does not fit VOCABULARY \(4,100 ids, "
                           r"4,224 rows\)"):
    models.get_model("causal_decoder", testing.tiny_config(vocab_size=32128), vocabulary=vocab)


@gin.configurable("arch_test_vocabulary")
def _vocabulary(size=gin.REQUIRED):
  return seqio.PassThroughVocabulary(size=size, eos_id=1)


def test_vocabulary_check_through_gin():
  with pytest.raises(ValueError, match="VOCAB_SIZE = 32,128 .* does not fit VOCABULARY"):
    _build("VOCABULARY = @arch_test_vocabulary()", "arch_test_vocabulary.size = 40000")
  assert _build("VOCABULARY = @arch_test_vocabulary()", "arch_test_vocabulary.size = 32100")


def test_padded_vocab_rows_and_defaults_match_the_paper():
  cfg = config_lib.TransformerConfig()
  assert cfg.vocab_size == 32128 and cfg.padded_vocab_size == 32128
  assert cfg.relative_num_buckets == 32 and cfg.relative_max_distance == 128
  assert cfg.activations == "geglu" and cfg.tie_embeddings
  assert models.get_model("causal_decoder", testing.tiny_config()).z_loss == 1e-4
  assert config_lib.TransformerConfig(vocab_size=32100).padded_vocab_size == 32128
  assert config_lib.TransformerConfig(vocab_size=129).padded_vocab_size == 256


def test_model_classes_refuse_names_of_the_other_kind():
  with pytest.raises(registry.UnknownArchitectureError, match="'causal_decoder'"):
    models.DecoderOnlyModel(testing.tiny_config(), name="bidirectional_decoder")
  with pytest.raises(ValueError, match="encoder-decoder"):
    models.DecoderOnlyModel(testing.tiny_config(), name="encoder_decoder")
  with pytest.raises(ValueError, match="decoder-only"):
    models.EncoderDecoderModel(testing.tiny_config(), name="non_causal_decoder")


@pytest.mark.parametrize("activation,mlp_params", [("geglu", ["wi_0", "wi_1", "wo"]),
                                                   ("swiglu", ["wi_0", "wi_1", "wo"]),
                                                   ("relu", ["wi", "wo"])])
def test_activation_choice_shapes_the_mlp(activation, mlp_params):
  model = models.get_model("causal_decoder", testing.tiny_config(activations=activation))
  shapes = model.input_shapes(1, {"targets": 8})
  tree = jax.eval_shape(lambda: model.get_initial_variables(jax.random.PRNGKey(0), shapes))
  assert sorted(tree["params"]["layers_0"]["mlp"]) == mlp_params
  batch = {k: jax.ShapeDtypeStruct(s, "int32") for k, s in shapes.items()}
  assert jax.eval_shape(model.loss_fn, tree["params"], batch)[0].shape == ()
