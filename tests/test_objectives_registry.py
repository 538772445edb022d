"""The objective and corpus registries: one entry per name, clear errors, and an objective registered
from user code (after `import objectives`) gets its seqio task on every corpus and validates."""

import types

import pytest
import seqio

import objectives
from objectives import common
from objectives import registry

ED = types.SimpleNamespace(name="encoder_decoder", encoder_decoder=True)


def _halves(ds, sequence_length, output_features):
  """A test objective: a chunk of the stream, its first half as inputs, the rest as targets."""
  del output_features
  n = sequence_length["inputs"] + sequence_length["targets"]
  pieces = common.chunk_stream(ds, n, min_length=2)
  return pieces.map(lambda t: {"inputs": t[: n // 2], "targets": t[n // 2:]})


def _halves_raw_length(task_feature_lengths, vocabulary):
  del vocabulary
  if task_feature_lengths["inputs"] != task_feature_lengths["targets"]:
    raise ValueError("halves needs equal inputs and targets lengths.")
  return 2 * task_feature_lengths["inputs"]


HALVES = objectives.Objective(
    name="halves", short="HLV", preprocessor=_halves, features=("inputs", "targets"),
    raw_length=_halves_raw_length, eos={"inputs": False, "targets": False},
    tiny_lengths={"inputs": 8, "targets": 8})


@pytest.fixture()
def isolated_registry(monkeypatch):
  """Registrations inside a test are undone after it (registry entries and seqio tasks)."""
  for reg in (registry._OBJECTIVES, registry._CORPORA):  # pylint: disable=protected-access
    monkeypatch.setattr(reg, "_entries", dict(reg._entries))  # pylint: disable=protected-access
  before = set(seqio.TaskRegistry.names())
  yield
  for name in set(seqio.TaskRegistry.names()) - before:
    seqio.TaskRegistry.remove(name)


def test_builtins_are_registered_with_their_short_names():
  shorts = {"full_lm": "FLM", "prefix_lm": "PLM", "span_corruption": "MLM", "ul2": "UL2"}
  assert {o: objectives.get(o).short for o in shorts} == shorts
  assert {"embedded", "c4", "text"} <= set(objectives.corpus_names())
  expected = {f"{c}_{o}" for c in objectives.corpus_names() for o in objectives.names()}
  assert set(objectives.task_names()) == expected
  assert expected <= set(seqio.TaskRegistry.names())


def test_builtin_eos_and_features_reach_the_seqio_tasks():
  for name in objectives.task_names():
    corpus, objective = objectives.parse_task_name(name)
    spec = objectives.get(objective)
    features = seqio.get_mixture_or_task(name).output_features
    assert tuple(features) == spec.features, name
    assert {k: f.add_eos for k, f in features.items()} == dict(spec.eos), name
    assert corpus in objectives.corpus_names()


def test_unknown_names_list_the_registered_ones():
  with pytest.raises(objectives.UnknownObjectiveError,
                     match=r"Unknown objective 'bert' \(OBJECTIVE\); registered: "
                           + ", ".join(objectives.names())):
    objectives.get("bert")
  with pytest.raises(objectives.UnknownCorpusError,
                     match=r"Unknown corpus 'wiki' \(CORPUS\); registered: "
                           + ", ".join(objectives.corpus_names())):
    objectives.get_corpus("wiki")


def test_a_duplicate_is_refused_unless_replaced(isolated_registry):
  full_lm = objectives.get("full_lm")
  with pytest.raises(ValueError, match="'full_lm' is already registered; pass replace=True"):
    objectives.register(full_lm)
  with pytest.raises(ValueError, match="'embedded' is already registered"):
    objectives.register_corpus(objectives.get_corpus("embedded"))
  objectives.register(full_lm, replace=True)
  assert objectives.names().count("full_lm") == 1


def test_entries_check_their_own_tables():
  with pytest.raises(ValueError, match=r"eos keys \['targets'\] must be its features"):
    objectives.Objective(name="bad", short="B", preprocessor=_halves, features=("inputs", "targets"),
                         raw_length=_halves_raw_length, eos={"targets": True},
                         tiny_lengths={"inputs": 8, "targets": 8})
  with pytest.raises(ValueError, match="must be an identifier"):
    objectives.Objective(name="two words", short="B", preprocessor=_halves, features=("targets",),
                         raw_length=_halves_raw_length, eos={"targets": True},
                         tiny_lengths={"targets": 8})


def test_an_objective_registered_after_import_gets_its_tasks_and_validates(isolated_registry):
  objectives.register(HALVES)
  names = [f"{c}_halves" for c in objectives.corpus_names()]
  assert set(names) <= set(objectives.task_names()) & set(seqio.TaskRegistry.names())
  assert objectives.parse_task_name("embedded_halves") == ("embedded", "halves")
  assert objectives.tiny_feature_lengths("halves") == {"inputs": 8, "targets": 8}
  assert objectives.task_name("c4", "halves") == "c4_halves"
  assert objectives.validate("embedded_halves", HALVES.tiny_lengths, architecture=ED,
                             vocab_size=4100)["raw_length"] == 16
  with pytest.raises(objectives.ConfigError, match="embedded_halves on encoder_decoder: halves needs equal"):
    objectives.validate("embedded_halves", {"inputs": 8, "targets": 4}, architecture=ED)
  ds = seqio.get_mixture_or_task("embedded_halves").get_dataset(
      HALVES.tiny_lengths, split="validation", shuffle=False, seed=0)
  ex = next(ds.as_numpy_iterator())
  assert len(ex["inputs"]) == len(ex["targets"]) == 8


def test_a_corpus_registered_after_import_gets_a_task_per_objective(isolated_registry):
  embedded = objectives.get_corpus("embedded")
  objectives.register_corpus(objectives.Corpus(
      name="plays", source=embedded.source, vocabulary=embedded.vocabulary, check=embedded.check))
  assert {f"plays_{o}" for o in objectives.names()} <= set(seqio.TaskRegistry.names())
  assert objectives.validate("plays_full_lm", {"targets": 64})["corpus"] == "plays"
