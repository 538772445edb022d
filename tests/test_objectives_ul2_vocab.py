"""UL2 paradigm tokens on a T5-style vocabulary (no [NLU] [NLG] [S2S] pieces): ids from the unused
embedding rows past the vocabulary's ids, never a piece or a sentinel; bad bindings are ConfigErrors;
the c4.gin stack validates offline with a local stand-in for T5's model file."""

import io
import types

import gin
import pytest
import seqio

import objectives
from arch import config as arch_config
from objectives import plays, ul2, vocab

ND = types.SimpleNamespace(name="non_causal_decoder", encoder_decoder=False)
UL2_LENGTHS = {"inputs": 568, "targets": 567}


def _train_spm(path, pieces):
  """A SentencePiece model laid out as T5's (0 pad, 1 EOS, 2 unk, no paradigm pieces)."""
  import sentencepiece as spm

  docs = [d for d, _ in zip(plays.documents("train"), range(40))]
  lines = [line for doc in docs for line in doc.split("\n") if line]
  out = io.BytesIO()
  spm.SentencePieceTrainer.train(
      sentence_iterator=iter(lines), model_writer=out, vocab_size=pieces, model_type="unigram",
      pad_id=0, eos_id=1, unk_id=2, bos_id=-1, num_threads=1, minloglevel=2)
  path.write_bytes(out.getvalue())
  return str(path)


@pytest.fixture(scope="module")
def t5_like(tmp_path_factory):
  """128 pieces + 100 extra ids = 228 ids on 256 rows: 28 unused rows, as T5's 32,100 on 32,128."""
  return _train_spm(tmp_path_factory.mktemp("spm") / "t5_like.model", 128)


@pytest.fixture()
def clean_gin():
  gin.clear_config()
  yield
  gin.clear_config()


def test_unused_rows_become_the_paradigm_ids(t5_like):
  v = vocab.sentencepiece_vocabulary(model_file=t5_like, extra_ids=100)
  assert v.vocab_size == 228 and vocab.embedding_rows(228) == 256
  ids = ul2.paradigm_ids(v, ul2.settings())
  assert ids == {"R": 228, "X": 229, "S": 230}
  sentinels = {vocab.sentinel_id(v, i) for i in range(v.extra_ids)}
  assert max(sentinels) == 227 and not sentinels & set(ids.values())
  # The model's table is still the vocabulary's ids padded to 128 (arch's check).
  arch_config.check_vocabulary(arch_config.TransformerConfig(vocab_size=228), v)
  # T5's own numbers: 32,100 ids -> 32,128 rows, paradigm ids 32,100-32,102.
  assert vocab.embedding_rows(32_100) == 32_128


def test_dedicated_pieces_keep_their_ids():
  assert ul2.paradigm_ids(vocab.embedded_vocabulary(), ul2.settings()) == {"R": 3, "X": 4, "S": 5}


def test_ul2_examples_on_the_t5_like_vocabulary(clean_gin, t5_like):
  v = vocab.sentencepiece_vocabulary(model_file=t5_like, extra_ids=100)
  with gin.unlock_config():
    gin.bind_parameter("objectives.corpus_vocabulary.vocabulary", v)
  task = seqio.get_mixture_or_task("embedded_ul2")
  exs = list(task.get_dataset(ul2.feature_lengths(64), split="train", shuffle=True, seed=5)
             .take(300).as_numpy_iterator())
  assert {int(e["inputs"][0]) for e in exs} == {228, 229, 230}
  for e in exs:
    assert (e["inputs"][1:] < 228).all() and (e["targets"] < 228).all()


def test_ul2_on_the_c4_gin_stack_validates_offline(clean_gin, repo_root, t5_like):
  files = [str(repo_root / "gin_configs" / f) for f in ("data/c4.gin", "objectives/ul2.gin")]
  gin.parse_config_files_and_bindings(files, [], finalize_config=False)
  # The shipped binding is T5's gs:// file: not read offline, its checks named as skipped.
  info = objectives.validate_offline("c4_ul2", UL2_LENGTHS, architecture=ND, vocab_size=32128)
  assert info["raw_length"] is None and "remote" in info["skipped"]
  with gin.unlock_config():
    gin.bind_parameter("objectives.vocab.sentencepiece_vocabulary.model_file", t5_like)
  info = objectives.validate_offline("c4_ul2", UL2_LENGTHS, architecture=ND, vocab_size=256)
  assert info == {"corpus": "c4", "objective": "ul2", "raw_length": 568, "skipped": None}


@pytest.mark.parametrize("bound,message", [
    ({"R": 10, "X": 229, "S": 230}, r"\['R'\] = 10 \(\[NLU\]\) is the vocabulary's piece '.+'"),
    ({"R": 1, "X": 229, "S": 230}, r"is the vocabulary's piece '</s>'"),
    ({"R": 228, "X": 229, "S": 256}, r"\['S'\] = 256 \(\[S2S\]\) is beyond the model's embedding.*"
                                      r"0-255"),
    ({"R": 228, "X": 200, "S": 230}, r"\['X'\] = 200 .*is the sentinel <extra_id_27>"),
    ({"R": 228, "X": 228, "S": 230}, "the three ids must differ"),
    ({"R": 228, "X": 229}, r"expected one id per family"),
    ({"R": True, "X": 229, "S": 230}, "expected an integer id"),
])
def test_bad_paradigm_ids_are_config_errors(clean_gin, t5_like, bound, message):
  v = vocab.sentencepiece_vocabulary(model_file=t5_like, extra_ids=100)
  with gin.unlock_config():
    gin.bind_parameter("objectives.corpus_vocabulary.vocabulary", v)
    gin.bind_parameter("objectives.ul2.settings.paradigm_ids", bound)
  with pytest.raises(objectives.ConfigError, match=r"embedded_ul2.*paradigm_ids"):
    objectives.validate("embedded_ul2", UL2_LENGTHS, check_corpus=False)
  with pytest.raises(objectives.ConfigError, match=message):
    ul2.paradigm_ids(v, ul2.settings())
  good = {"R": 228, "X": 229, "S": 230}
  with gin.unlock_config():
    gin.bind_parameter("objectives.ul2.settings.paradigm_ids", good)
  assert ul2.paradigm_ids(v, ul2.settings()) == good


def test_no_unused_row_is_a_config_error(clean_gin, tmp_path):
  full = vocab.sentencepiece_vocabulary(model_file=_train_spm(tmp_path / "full.model", 156),
                                        extra_ids=100)
  assert full.vocab_size == vocab.embedding_rows(full.vocab_size) == 256
  with gin.unlock_config():
    gin.bind_parameter("objectives.corpus_vocabulary.vocabulary", full)
  with pytest.raises(objectives.ConfigError,
                     match=r"embedded_ul2.*'\[NLU\]' has no piece.*no unused row.*paradigm_ids"):
    objectives.validate("embedded_ul2", UL2_LENGTHS, check_corpus=False)
