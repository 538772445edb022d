"""Bad configurations fail with a message naming the binding, before any training or saving."""

import pytest

from experiments.runtime import gin_utils
from experiments import run_config
from experiments import testing
from experiments import train
from experiments.runtime import errors


def _stack(model_dir, *extra, steps=10, objective="full_lm"):
  return testing.tiny_stack("causal_decoder", objective, model_dir, steps, extra=list(extra))


def _assert_nothing_written(model_dir):
  assert not (model_dir / "checkpoints").exists() or not any((model_dir / "checkpoints").iterdir())
  assert not (model_dir / "metrics.jsonl").exists()


def test_unset_required_macro_is_named(tmp_path, capsys):
  files, bindings = _stack(tmp_path)
  bindings = [b for b in bindings if not b.startswith("MODEL_DIR")]
  with pytest.raises(errors.ConfigError, match="gin macro MODEL_DIR is required"):
    train.run(files, bindings)
  # The command line says the same in one line and exits with status 2.
  assert testing.cli_exit_code(train.main, testing.as_flags(files, bindings)) == 2
  err = capsys.readouterr().err
  assert err.startswith("error: ") and "MODEL_DIR" in err and len(err.strip().splitlines()) == 1
  files = [f for f in files if "objectives/" not in f]  # no objective: no task, no lengths
  with pytest.raises(errors.ConfigError, match="MIXTURE_OR_TASK_NAME"):
    train.run(files, [f"MODEL_DIR = '{tmp_path}'"])
  _assert_nothing_written(tmp_path)


def test_unknown_binding_is_named(tmp_path):
  files, bindings = _stack(tmp_path, "experiments.train.train.no_such_argument = 3")
  with pytest.raises(gin_utils.GinConfigError, match="no_such_argument"):
    train.run(files, bindings)
  files, bindings = _stack(tmp_path, "NoSuchConfigurable.value = 3")
  with pytest.raises(gin_utils.GinConfigError, match="NoSuchConfigurable"):
    train.run(files, bindings)


def test_unwritable_model_dir(tmp_path):
  blocker = tmp_path / "a_file"
  blocker.write_text("not a directory")
  files, bindings = _stack(blocker / "run")
  with pytest.raises(run_config.ConfigError, match="MODEL_DIR = .* is not writable"):
    train.run(files, bindings)


@pytest.mark.parametrize("extra,message", [
    (["BATCH_SIZE = 3", "experiments.train.train.num_microbatches = 2"],
     "BATCH_SIZE 3 is not divisible by train.num_microbatches 2"),
    (["TRAIN_STEPS = 0"], "TRAIN_STEPS must be a positive integer"),
    (["MIXTURE_OR_TASK_NAME = 'embedded_no_such_objective'"], "not a registered seqio task"),
    (["TASK_FEATURE_LENGTHS = {'inputs': 64}"], r"lacks \['targets'\]"),
    (["INITIAL_CHECKPOINT_PATH = 'no/such/checkpoint'"], "INITIAL_CHECKPOINT_PATH: No complete"),
    (["VOCAB_SIZE = 32128"], r"VOCAB_SIZE = 32,128 \(bound to arch.config.TransformerConfig."
                             r"vocab_size: 32,128 embedding rows\) does not fit .*4,100 ids"),
    (["VOCAB_SIZE = 1000"], r"VOCAB_SIZE = 1,000 .* does not fit"),
    (["experiments.optimizers.adafactor.factor_rules = {'mpl': 'none'}"],
     "adafactor.factor_rules names axis 'mpl', which no parameter has"),
])
def test_bad_values_fail_before_anything_is_written(tmp_path, extra, message):
  files, bindings = _stack(tmp_path / "run", *extra)
  with pytest.raises(ValueError, match=message):
    train.run(files, bindings)
  assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())


def test_decoder_length_on_an_encoder_decoder_is_named(tmp_path):
  # The row length is the decoder converter's; ED's converter does not read it.
  files, bindings = testing.tiny_stack(
      "encoder_decoder", "prefix_lm", tmp_path / "run", 2,
      lengths={"inputs": 16, "targets": 16, "decoder_length": 16})
  with pytest.raises(run_config.ConfigError,
                     match=r"\['decoder_length'\] is neither a feature of task 'embedded_prefix_lm'"
                           r".*encoder_decoder.*EncDecFeatureConverter"):
    train.run(files, bindings)
  assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())
