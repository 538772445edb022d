"""Corpora: the embedded split (disjoint by play, stable), local text files and their bad inputs."""

import hashlib
import subprocess
import sys

import gin
import pytest

from objectives import corpora
from objectives import plays


def test_embedded_split_is_disjoint_by_play():
  train = {p.slug for p in plays.load_plays("train")}
  heldout = {p.slug for p in plays.load_plays("heldout")}
  assert heldout == set(plays.HELDOUT_PLAYS) and not train & heldout
  assert len(train) + len(heldout) == 38
  train_docs = set(corpora.embedded_documents("train"))
  assert not train_docs & set(corpora.embedded_documents("validation"))
  # A held-out play's speech text never appears in a training document.
  line = plays.load_plays("heldout")[0].speeches[10].text
  assert len(line) > 20 and not any(line in d for d in train_docs)


def _digest_in_fresh_process():
  # Loads plays.py alone (no TF): the split and the cleaning are a pure function of the package.
  code = (
      "import hashlib, importlib.util, sys\n"
      "spec = importlib.util.spec_from_file_location('p', 'objectives/plays.py')\n"
      "m = importlib.util.module_from_spec(spec); sys.modules['p'] = m; spec.loader.exec_module(m)\n"
      "print(hashlib.sha256('\\x00'.join(m.documents('train')).encode()).hexdigest())\n"
  )
  return subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True,
                        cwd=corpora.__file__.rsplit("/objectives/", 1)[0]).stdout.strip()


def test_embedded_split_is_stable_across_runs():
  here = hashlib.sha256("\x00".join(plays.documents("train")).encode()).hexdigest()
  assert _digest_in_fresh_process() == here


@pytest.fixture()
def text_gin():
  def bind(**kwargs):
    gin.clear_config()
    with gin.unlock_config():
      for k, v in kwargs.items():
        gin.bind_parameter(f"objectives.corpora.text_files.{k}", v)
  yield bind
  gin.clear_config()


def test_text_files_per_file_and_per_line(tmp_path, text_gin):
  (tmp_path / "a.txt").write_text("first doc\nstill first\n", encoding="utf-8")
  (tmp_path / "b.txt").write_text("second doc ÷ unicode\n\n", encoding="utf-8")
  text_gin(train_files=[str(tmp_path / "*.txt")])
  assert corpora.text_documents("train") == ("first doc\nstill first", "second doc ÷ unicode")
  text_gin(train_files=[str(tmp_path / "*.txt")], document_per="line")
  assert corpora.text_documents("train") == ("first doc", "still first", "second doc ÷ unicode")


def test_text_file_not_utf8_names_file_and_offset(tmp_path, text_gin):
  bad = tmp_path / "latin1.txt"
  bad.write_bytes("caf".encode() + "é".encode("latin-1") + b" au lait")
  text_gin(train_files=[str(bad)])
  with pytest.raises(corpora.CorpusError, match=r"latin1\.txt is not UTF-8: byte offset 3 \(0xe9\)"):
    corpora.check_corpus("text")


def test_empty_or_missing_text_corpus(tmp_path, text_gin):
  (tmp_path / "empty.txt").write_text("  \n\n", encoding="utf-8")
  text_gin(train_files=[str(tmp_path / "empty.txt")])
  with pytest.raises(corpora.CorpusError, match="text corpus is empty"):
    corpora.text_documents("train")
  text_gin(train_files=[str(tmp_path / "nothing_*.txt")])
  with pytest.raises(corpora.CorpusError, match="matches no file"):
    corpora.text_documents("train")
  text_gin()
  with pytest.raises(corpora.CorpusError, match=r"train_files is empty"):
    corpora.text_documents("train")
  text_gin(train_files=[str(tmp_path / "empty.txt")], document_per="page")
  with pytest.raises(corpora.CorpusError, match="valid values: 'file', 'line'"):
    corpora.text_documents("train")


def test_unknown_corpus_and_split():
  with pytest.raises(corpora.CorpusError, match="valid corpora: embedded, c4, text"):
    corpora.make_source("wiki")
  with pytest.raises(corpora.CorpusError, match="valid splits: train, validation"):
    corpora.embedded_documents("test")


def test_c4_not_prepared_is_a_clear_error(tmp_path):
  gin.clear_config()
  with gin.unlock_config():
    gin.bind_parameter("objectives.corpora.c4_settings.data_dir", str(tmp_path))
  try:
    with pytest.raises(corpora.CorpusError, match=r"c4/en:2\.2\.0"):
      corpora.check_c4()
  finally:
    gin.clear_config()
