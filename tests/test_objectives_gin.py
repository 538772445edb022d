"""The data and objective gin layers: each binds its own macros, and together, in either order, they
name the task {CORPUS}_{OBJECTIVE}, its vocabulary and the registry's tiny lengths."""

import re

import gin
import pytest

import objectives


@gin.configurable
def _objectives_gin_probe(task=None, lengths=None, tiny=None, vocab_size=None):
  # Macros that hold configurable references resolve when passed to a configurable.
  return task, lengths, tiny, vocab_size


def _parse(repo_root, files):
  gin.clear_config()
  gin.parse_config_files_and_bindings(
      [str(repo_root / "gin_configs" / f) for f in files],
      ["_objectives_gin_probe.task = %MIXTURE_OR_TASK_NAME",
       "_objectives_gin_probe.lengths = %TASK_FEATURE_LENGTHS",
       "_objectives_gin_probe.tiny = %TINY_FEATURE_LENGTHS",
       "_objectives_gin_probe.vocab_size = %VOCAB_SIZE"],
      finalize_config=False)
  return _objectives_gin_probe()


@pytest.mark.parametrize("corpus", objectives.corpus_names())
@pytest.mark.parametrize("objective", objectives.names())
def test_data_and_objective_files_name_the_task_in_either_order(repo_root, corpus, objective):
  files = [f"data/{corpus}.gin", f"objectives/{objective}.gin"]
  try:
    task, lengths, tiny, vocab_size = _parse(repo_root, files)
    assert _parse(repo_root, files[::-1]) == (task, lengths, tiny, vocab_size)
    assert task == f"{corpus}_{objective}" and task in objectives.task_names()
    assert tiny == dict(objectives.get(objective).tiny_lengths)
    assert set(lengths) == set(tiny) == set(objectives.get(objective).features)
    assert vocab_size == {"embedded": 4100, "c4": 32128, "text": 4100}[corpus]
    if corpus == "embedded":  # the paper lengths and the tiny ones both fit the objective
      for feature_lengths in (lengths, tiny):
        objectives.validate(task, feature_lengths, vocab_size=vocab_size, check_corpus=False)
  finally:
    gin.clear_config()


def test_data_file_binds_the_run_vocabulary_for_every_task(repo_root):
  try:
    _parse(repo_root, ["data/text.gin", "objectives/full_lm.gin"])
    with gin.unlock_config():
      gin.parse_config("objectives.vocab.embedded_vocabulary.extra_ids = 7")
    # One vocabulary per run: the c4 corpus's tasks follow the data file too.
    assert objectives.corpus_vocabulary("c4").extra_ids == 7
  finally:
    gin.clear_config()
  assert objectives.corpus_vocabulary("embedded").extra_ids == 100  # unbound: the corpus default


def test_task_name_without_a_corpus_is_a_gin_error_and_unknown_names_list_the_registry():
  gin.clear_config()
  try:
    with pytest.raises(Exception, match="corpus"):
      objectives.task_name(objective="full_lm")
    with pytest.raises(objectives.UnknownCorpusError, match="registered: embedded, c4, text"):
      objectives.task_name("wiki", "full_lm")
    with pytest.raises(objectives.UnknownObjectiveError, match=r"registered: full_lm, .*ul2"):
      objectives.tiny_feature_lengths("bert")
  finally:
    gin.clear_config()


def test_every_corpus_and_objective_has_a_gin_file_with_a_header_and_launch_command(repo_root):
  gin_dir = repo_root / "gin_configs"
  assert {f.stem for f in gin_dir.glob("data/*.gin")} == set(objectives.corpus_names())
  assert {f.stem for f in gin_dir.glob("objectives/*.gin")} == set(objectives.names())
  for f in sorted(gin_dir.glob("data/*.gin")) + sorted(gin_dir.glob("objectives/*.gin")):
    text = f.read_text()
    assert text.startswith("# ") and "python -m " in text.split("\n\n")[0], f.name
    assert not re.search(r"\bTASK_(?!FEATURE_LENGTHS)", text), f.name  # no TASK_<OBJECTIVE> macros
