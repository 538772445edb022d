"""objectives.validate: bad (task, architecture, lengths, vocabulary) combinations fail at config time."""

import types

import gin
import pytest

import objectives
from experiments.runtime import errors
from objectives import ul2, vocab

SC = {"inputs": 512, "targets": 114}
# Architectures reach objectives duck-typed; these stand for arch/'s three.
CD = types.SimpleNamespace(name="causal_decoder", encoder_decoder=False)
ND = types.SimpleNamespace(name="non_causal_decoder", encoder_decoder=False)
ED = types.SimpleNamespace(name="encoder_decoder", encoder_decoder=True)


@pytest.mark.parametrize("arch", [CD, ND, ED], ids=lambda a: a.name)
@pytest.mark.parametrize("task,lengths,raw", [
    ("embedded_prefix_lm", {"inputs": 626, "targets": 626}, 626),
    ("embedded_span_corruption", SC, 568),
    ("embedded_ul2", {"inputs": 568, "targets": 567}, 568),
])
def test_valid_pairs(arch, task, lengths, raw):
  info = objectives.validate(task, lengths, architecture=arch, vocab_size=4100)
  assert info["raw_length"] == raw and info["corpus"] == "embedded"


def test_full_lm_on_decoders_only():
  for arch in (CD, ND, None):
    info = objectives.validate("embedded_full_lm", {"targets": 626}, architecture=arch)
    assert info["raw_length"] == 626
  with pytest.raises(objectives.ConfigError,
                     match=r"\(objective full_lm, architecture encoder_decoder\) is undefined: "
                           r"it has no 'inputs' feature.*defined on encoder_decoder: prefix_lm, "
                           r"span_corruption, ul2"):
    objectives.validate("embedded_full_lm", {"targets": 626}, architecture=ED)


def test_defined_on_follows_features_and_the_declared_architectures():
  assert [o for o in objectives.names() if not objectives.get(o).defined_on(ED)] == ["full_lm"]
  assert all(objectives.get(o).defined_on(a) for o in objectives.names() for a in (CD, ND))
  only_cd = objectives.Objective(
      name="cd_only", short="X", preprocessor=None, features=("targets",), raw_length=None,
      eos={"targets": False}, tiny_lengths={"targets": 8}, architectures=("causal_decoder",))
  assert only_cd.defined_on(CD) and not only_cd.defined_on(ND)
  assert "registered for causal_decoder only" in only_cd.why_undefined(ND)


def test_errors_are_the_harness_config_errors():
  assert issubclass(objectives.ConfigError, errors.ConfigError)
  for cls in (objectives.UnknownObjectiveError, objectives.UnknownCorpusError,
              objectives.UnknownTaskError):
    assert issubclass(cls, objectives.ConfigError)


def test_unknown_names_list_registered_values():
  tasks, corpora = ", ".join(objectives.task_names()), ", ".join(objectives.corpus_names())
  objs = ", ".join(objectives.names())
  with pytest.raises(objectives.UnknownTaskError,
                     match=f"registered tasks: {tasks}. Corpora: {corpora}; objectives: {objs}"):
    objectives.validate("embedded_bert", SC)
  with pytest.raises(objectives.UnknownTaskError, match=f"Corpora: {corpora};"):
    objectives.validate("wiki_full_lm", {"targets": 626})


def test_lengths_errors():
  with pytest.raises(objectives.ConfigError, match=r"'targets'\]=100 is too short for span corruption.*114 targets"):
    objectives.validate("embedded_span_corruption", {"inputs": 512, "targets": 100}, architecture=ED)
  with pytest.raises(objectives.ConfigError, match=r"expected exactly the keys \['inputs', 'targets'\]"):
    objectives.validate("embedded_span_corruption", {"targets": 626})
  with pytest.raises(objectives.ConfigError, match=r"expected exactly the keys \['targets'\]"):
    objectives.validate("embedded_full_lm", SC, architecture=CD)
  with pytest.raises(objectives.ConfigError, match="must be positive integers"):
    objectives.validate("embedded_full_lm", {"targets": 0})
  with pytest.raises(objectives.ConfigError, match="too short for prefix LM"):
    objectives.validate("embedded_prefix_lm", {"inputs": 100, "targets": 626}, architecture=ND)
  with pytest.raises(objectives.ConfigError, match="on non_causal_decoder: .*too short for UL2"):
    objectives.validate("embedded_ul2", {"inputs": 1, "targets": 1}, architecture=ND)


def test_vocabulary_errors():
  small = vocab.byte_vocabulary(extra_ids=10)
  with pytest.raises(objectives.ConfigError,
                     match=r"VOCABULARY \(ByteVocabulary: 259 pieces \+ 10 extra ids\) differs from "
                           r"the vocabulary the 'embedded' corpus"):
    objectives.validate("embedded_span_corruption", SC, vocabulary=small)
  with pytest.raises(objectives.ConfigError, match="VOCAB_SIZE=4000 is smaller than the vocabulary's 4100 ids"):
    objectives.validate("embedded_span_corruption", SC, vocab_size=4000)
  # The paper's 32,128-row model on the embedded 4,100 ids: rows no task ever produces.
  with pytest.raises(objectives.ConfigError,
                     match=r"VOCAB_SIZE=32128 is larger than the vocabulary's 4100 ids.*up to 4224.*"
                           r"gin_configs/data/embedded.gin"):
    objectives.validate("embedded_span_corruption", SC, vocab_size=32128)
  assert objectives.validate("embedded_span_corruption", SC, vocab_size=4224)["raw_length"] == 568
  # Sentinels needed beyond the extra ids: the embedded model with only 10 extra ids.
  few = vocab.embedded_vocabulary(extra_ids=10)
  gin.clear_config()
  with gin.unlock_config():
    gin.bind_parameter("objectives.corpus_vocabulary.vocabulary", few)
  try:
    with pytest.raises(objectives.ConfigError, match="needs 28 sentinels but the vocabulary has only 10"):
      objectives.validate("embedded_span_corruption", SC, vocabulary=few)
  finally:
    gin.clear_config()


def test_ul2_checks_its_paradigm_ids():
  # Bytes have no paradigm pieces: the unused rows past 359 ids (384 rows) take them...
  assert ul2.paradigm_ids(vocab.byte_vocabulary(), ul2.settings()) == {"R": 359, "X": 360, "S": 361}
  # ...unless the ids fill every row (259 + 125 = 384).
  gin.clear_config()
  with gin.unlock_config():
    gin.bind_parameter("objectives.corpus_vocabulary.vocabulary", vocab.byte_vocabulary(125))
  try:
    with pytest.raises(objectives.ConfigError,
                       match=r"embedded_ul2: UL2 paradigm token '\[NLU\]' has no piece.*384"):
      objectives.validate("embedded_ul2", {"inputs": 64, "targets": 64}, check_corpus=False)
  finally:
    gin.clear_config()
