"""objectives.validate: bad (task, architecture, lengths, vocabulary) combinations fail at config time."""

import gin
import pytest

import objectives
from objectives import vocab

SC = {"inputs": 512, "targets": 114}


@pytest.mark.parametrize("arch", objectives.ARCHITECTURES)
@pytest.mark.parametrize("task,lengths,raw", [
    ("embedded_prefix_lm", {"inputs": 626, "targets": 626}, 626),
    ("embedded_span_corruption", SC, 568),
    ("embedded_ul2", {"inputs": 568, "targets": 567}, 568),
])
def test_valid_pairs(arch, task, lengths, raw):
  info = objectives.validate(task, arch, lengths, vocab_size=4100)
  assert info["raw_length"] == raw and info["corpus"] == "embedded"


def test_full_lm_on_decoders_only():
  for arch in ("causal_decoder", "non_causal_decoder"):
    assert objectives.validate("embedded_full_lm", arch, {"targets": 626})["raw_length"] == 626
  with pytest.raises(objectives.ConfigError, match=r"\(objective full_lm, architecture encoder_decoder\) is undefined"):
    objectives.validate("embedded_full_lm", "encoder_decoder", {"targets": 626})


def test_unknown_names_list_valid_values():
  with pytest.raises(objectives.ConfigError, match=r"valid tasks: embedded_full_lm, .*text_ul2.*objectives: full_lm, prefix_lm, span_corruption, ul2"):
    objectives.validate("embedded_bert", "causal_decoder", SC)
  with pytest.raises(objectives.ConfigError, match="Corpora: embedded, c4, text"):
    objectives.validate("wiki_full_lm", "causal_decoder", {"targets": 626})
  with pytest.raises(objectives.ConfigError, match="valid architectures: causal_decoder, non_causal_decoder, encoder_decoder"):
    objectives.validate("embedded_span_corruption", "rnn", SC)


def test_lengths_errors():
  with pytest.raises(objectives.ConfigError, match=r"'targets'\]=100 is too short for span corruption.*114 targets"):
    objectives.validate("embedded_span_corruption", "encoder_decoder", {"inputs": 512, "targets": 100})
  with pytest.raises(objectives.ConfigError, match=r"expected exactly the keys \['inputs', 'targets'\]"):
    objectives.validate("embedded_span_corruption", "encoder_decoder", {"targets": 626})
  with pytest.raises(objectives.ConfigError, match=r"expected exactly the keys \['targets'\]"):
    objectives.validate("embedded_full_lm", "causal_decoder", SC)
  with pytest.raises(objectives.ConfigError, match="must be positive integers"):
    objectives.validate("embedded_full_lm", "causal_decoder", {"targets": 0})
  with pytest.raises(objectives.ConfigError, match="too short for prefix LM"):
    objectives.validate("embedded_prefix_lm", "non_causal_decoder", {"inputs": 100, "targets": 626})
  with pytest.raises(objectives.ConfigError, match="too short for UL2"):
    objectives.validate("embedded_ul2", "non_causal_decoder", {"inputs": 1, "targets": 1})


def test_vocabulary_errors():
  small = vocab.byte_vocabulary(extra_ids=10)
  with pytest.raises(objectives.ConfigError, match="differs from the vocabulary the 'embedded' corpus"):
    objectives.validate("embedded_span_corruption", "encoder_decoder", SC, vocabulary=small)
  with pytest.raises(objectives.ConfigError, match="VOCAB_SIZE=4000 is smaller than the vocabulary's 4100 ids"):
    objectives.validate("embedded_span_corruption", "encoder_decoder", SC, vocab_size=4000)
  # Sentinels needed beyond the extra ids: the embedded model with only 10 extra ids.
  few = vocab.embedded_vocabulary(extra_ids=10)
  gin.clear_config()
  with gin.unlock_config():
    gin.bind_parameter("objectives.tasks.corpus_vocabularies.embedded", few)
  try:
    with pytest.raises(objectives.ConfigError, match="needs 28 sentinels but the vocabulary has only 10"):
      objectives.validate("embedded_span_corruption", "encoder_decoder", SC, vocabulary=few)
  finally:
    gin.clear_config()
