"""The embedded vocabulary: deterministic bytes, T5 id layout, atomic cache that never trusts a crash."""

import hashlib
import os

import pytest
import seqio

from objectives import vocab

SMALL_CORPUS = [f"HAMLET: line {i} of words, to be or not to be {i % 7}" for i in range(400)]


def test_two_builds_are_byte_identical(tmp_path):
  # The shared cache's model was usually built by an earlier process: a fresh build must match it.
  a = vocab.build_embedded_model()
  b = vocab.build_embedded_model(directory=str(tmp_path / "b"))
  assert a.name == b.name and a != b
  assert hashlib.sha256(a.read_bytes()).digest() == hashlib.sha256(b.read_bytes()).digest()


def test_id_layout():
  v = vocab.embedded_vocabulary()
  assert (v.pad_id, v.eos_id, v.unk_id) == (0, 1, 2)
  assert v.vocab_size == vocab.DEFAULT_EMBEDDED_PIECES + 100 == 4100
  assert v.extra_ids == 100
  assert [vocab.paradigm_token_id(v, t) for t in vocab.PARADIGM_TOKENS] == [3, 4, 5]
  assert vocab.sentinel_id(v, 0) == 4099 and vocab.sentinel_id(v, 99) == 4000
  assert v.decode([vocab.sentinel_id(v, 0)]) == "<extra_id_0>"
  # The paradigm tokens stay whole inside text.
  assert 4 in v.encode("[NLG] to be")
  with pytest.raises(ValueError, match="more than the 100 extra ids"):
    vocab.sentinel_id(v, 100)


def test_byte_vocabulary_has_no_paradigm_ids():
  v = vocab.byte_vocabulary()
  assert isinstance(v, seqio.ByteVocabulary) and v.extra_ids == 100
  with pytest.raises(ValueError, match="no dedicated id"):
    vocab.paradigm_token_id(v, "[NLU]")


def test_crash_mid_write_leaves_nothing_trusted(tmp_path, monkeypatch):
  monkeypatch.setattr(vocab, "_training_sentences", lambda: SMALL_CORPUS)
  real_replace = os.replace

  def crash(*args):
    raise KeyboardInterrupt("killed during the build")

  monkeypatch.setattr(vocab.os, "replace", crash)
  with pytest.raises(KeyboardInterrupt):
    vocab.build_embedded_model(vocab_size=64, directory=str(tmp_path))
  assert list(tmp_path.iterdir()) == []  # no model and no temporary left behind

  monkeypatch.setattr(vocab.os, "replace", real_replace)
  path = vocab.build_embedded_model(vocab_size=64, directory=str(tmp_path))
  good = path.read_bytes()
  # A truncated file (e.g. written by a tool that is not atomic) is detected and rebuilt.
  path.write_bytes(good[: len(good) // 3])
  rebuilt = vocab.build_embedded_model(vocab_size=64, directory=str(tmp_path))
  assert rebuilt == path and rebuilt.read_bytes() == good
  # A stray temporary from a crashed writer is never read as the model.
  (tmp_path / f".tmp-{path.name}-dead").write_bytes(b"garbage")
  assert vocab.build_embedded_model(vocab_size=64, directory=str(tmp_path)).read_bytes() == good


def test_cache_dir_from_environment(monkeypatch, tmp_path):
  monkeypatch.setenv("ZEROSHOT_HARNESS_CACHE", str(tmp_path))
  assert vocab.cache_dir() == tmp_path
  monkeypatch.delenv("ZEROSHOT_HARNESS_CACHE")
  assert vocab.cache_dir().name == "zeroshot_harness"


def test_build_command(tmp_path, capsys, monkeypatch):
  monkeypatch.setattr(vocab, "_training_sentences", lambda: SMALL_CORPUS)
  assert vocab.main(["--build", "--vocab_size=64", "--cache_dir", str(tmp_path)]) == 0
  out = capsys.readouterr().out
  assert "sha256" in out and len(list(tmp_path.glob("embedded_spm_64_*.model"))) == 1
  with pytest.raises(ValueError, match="need >= 16"):
    vocab.train_model_proto(SMALL_CORPUS, 8)


def test_concurrent_builders_agree(tmp_path, monkeypatch):
  # pytest-xdist workers may build the same cache file at once: every builder gets a valid model.
  import concurrent.futures

  monkeypatch.setattr(vocab, "_training_sentences", lambda: SMALL_CORPUS)
  with concurrent.futures.ThreadPoolExecutor(4) as pool:
    paths = list(pool.map(
        lambda _: vocab.build_embedded_model(vocab_size=64, directory=str(tmp_path), force=True),
        range(4)))
  assert len(set(paths)) == 1 and [p.name for p in tmp_path.iterdir()] == [paths[0].name]
  assert vocab._is_valid_model(paths[0], 64)


def test_sentencepiece_vocabulary_from_a_model_file(tmp_path):
  # The T5 32k model is not shipped; any SentencePiece file exercises the same path.
  path = vocab.build_embedded_model()
  v = vocab.sentencepiece_vocabulary(model_file=str(path), extra_ids=100)
  assert isinstance(v, seqio.SentencePieceVocabulary) and v.vocab_size == 4100
  assert v == vocab.embedded_vocabulary()
  with pytest.raises(FileNotFoundError, match=r"model_file='.*missing\.model' does not exist"):
    vocab.sentencepiece_vocabulary(model_file=str(tmp_path / "missing.model"))


def test_unreadable_c4_vocabulary_is_a_config_error(tmp_path):
  import gin

  import objectives

  gin.clear_config()
  with gin.unlock_config():
    gin.bind_parameter("objectives.vocab.sentencepiece_vocabulary.model_file", str(tmp_path / "t5.model"))
  try:
    with pytest.raises(objectives.ConfigError, match="vocabulary of corpus 'c4' is unusable.*t5.model"):
      objectives.validate("c4_span_corruption", {"inputs": 512, "targets": 114})
  finally:
    gin.clear_config()
