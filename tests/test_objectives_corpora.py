"""Corpora: the embedded split (disjoint by play, stable), local text files and their bad inputs."""

import hashlib
import subprocess
import sys

import gin
import pytest

import objectives
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
    objectives.get_corpus("text").check("train")


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
  registered = ", ".join(objectives.corpus_names())
  with pytest.raises(objectives.UnknownCorpusError, match=f"Unknown corpus 'wiki' .*registered: {registered}"):
    objectives.get_corpus("wiki")
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


class _FakeTfds:
  """Stands in for seqio.TfdsDataSource of c4/en (no TFDS data here): two shards of documents."""

  def __init__(self):
    self.calls = []

  def list_shards(self, split):
    return ["c4-train.tfrecord-00000", "c4-train.tfrecord-00001"]

  def num_input_examples(self, split):
    return 365_000_000

  def get_dataset(self, split, shuffle, seed, shard_info):
    import tensorflow as tf

    self.calls.append((split, shuffle, seed, shard_info))
    docs = [f"web page {i} about the weather in town number {i}" for i in range(200)]
    return tf.data.Dataset.from_tensor_slices(
        {"text": docs, "url": [f"http://x/{i}" for i in range(200)], "timestamp": ["t"] * 200})


def test_c4_tasks_read_text_only_through_the_gin_settings(monkeypatch):
  import seqio

  from objectives import vocab

  fake = _FakeTfds()
  seen = []
  monkeypatch.setattr(corpora, "_c4_source", lambda name, data_dir: seen.append((name, data_dir)) or fake)
  gin.clear_config()
  with gin.unlock_config():
    gin.bind_parameter("objectives.corpora.c4_settings.version", "3.0.1")
    gin.bind_parameter("objectives.corpora.c4_settings.data_dir", "/data/tfds")
    gin.bind_parameter("objectives.corpus_vocabulary.vocabulary", vocab.embedded_vocabulary())
  try:
    task = seqio.get_mixture_or_task("c4_span_corruption")
    ds = task.get_dataset({"inputs": 32, "targets": 12}, split="train", shuffle=True, seed=3,
                          shard_info=seqio.ShardInfo(index=1, num_shards=2))
    examples = list(ds.take(5).as_numpy_iterator())
  finally:
    gin.clear_config()
  assert seen[-1] == ("c4/en:3.0.1", "/data/tfds")
  assert fake.calls[-1][0] == "train" and fake.calls[-1][3].index == 1  # sharded by file
  assert len(examples) == 5 and all(len(e["inputs"]) == 32 for e in examples)


def test_text_task_end_to_end(tmp_path, text_gin):
  import seqio

  for i in range(3):
    (tmp_path / f"{i}.txt").write_text(f"document {i}: " + "words and more words " * 20, "utf-8")
  text_gin(train_files=[str(tmp_path / "*.txt")])
  task = seqio.get_mixture_or_task("text_full_lm")
  ds = task.get_dataset({"targets": 16}, split="train", shuffle=True, seed=0, num_epochs=1)
  tokens = sum(len(e["targets"]) for e in ds.as_numpy_iterator())
  vocab = task.output_features["targets"].vocabulary
  assert tokens == sum(len(vocab.encode(d)) + 1 for d in corpora.text_documents("train"))


def test_text_validation_share_holds_out_spread_documents_not_trained_on(tmp_path, text_gin):
  lines = [f"line {i}" for i in range(45)]
  (tmp_path / "a.txt").write_text("\n".join(lines), encoding="utf-8")
  text_gin(train_files=[str(tmp_path / "a.txt")], document_per="line", validation_share=0.1)
  held = corpora.text_documents("validation")
  train = corpora.text_documents("train")
  assert held == ("line 9", "line 19", "line 29", "line 39")  # every 10th, spread
  assert not set(held) & set(train) and len(held) + len(train) == 45
  assert train == tuple(d for d in lines if d not in held)  # order kept


def test_text_validation_split_errors_name_the_settings(tmp_path, text_gin):
  (tmp_path / "a.txt").write_text("one\ntwo\nthree\n", encoding="utf-8")
  text_gin(train_files=[str(tmp_path / "a.txt")], document_per="line")
  with pytest.raises(corpora.CorpusError, match="validation_files is empty.*validation_share"):
    corpora.text_documents("validation")
  text_gin(train_files=[str(tmp_path / "a.txt")], document_per="line", validation_share=0.05)
  with pytest.raises(corpora.CorpusError, match="validation_share = 0.05 holds out no document of "
                                                "the 3"):
    corpora.text_documents("validation")
  text_gin(train_files=[str(tmp_path / "a.txt")], validation_files=[str(tmp_path / "a.txt")],
           validation_share=0.5)
  with pytest.raises(corpora.CorpusError, match="both validation_files and validation_share"):
    corpora.text_documents("train")
  text_gin(train_files=[str(tmp_path / "a.txt")], validation_share=1.0)
  with pytest.raises(corpora.CorpusError, match=r"validation_share = 1.0; expected a fraction"):
    corpora.text_documents("train")
