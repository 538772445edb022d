"""Vocabularies: the embedded SentencePiece model, the T5 32k model from a file, bytes.

The embedded vocabulary is a SentencePiece unigram model trained on the training plays
(objectives.plays.documents('train'), one sentence per speech) the first time it is needed, or by

  python -m objectives.vocab --build [--vocab_size=4000] [--cache_dir=DIR]

Training is single-threaded on the whole corpus in a fixed order, so the model file is
byte-identical across runs and machines (tests check it). Ids follow T5: 0 pad, 1 EOS, 2 unk, then
the UL2 paradigm tokens [NLU] [NLG] [S2S] as user-defined pieces (3, 4, 5: never split, never
merged), then the learned pieces. seqio appends `extra_ids` sentinels after the pieces, numbered
descending (<extra_id_0> is the last id), which span corruption uses.

The cache directory is $ZEROSHOT_HARNESS_CACHE, else ~/.cache/zeroshot_harness. The file name carries
a hash of the corpus text and the training settings, so a changed corpus or setting never reuses a
stale model. Writes are atomic (temporary file in the same folder, fsync, os.replace): concurrent
builders (pytest-xdist workers) each write identical bytes and the last rename wins; a crash leaves
only a `.tmp-*` file that is never read.
"""

from __future__ import annotations

import argparse
import contextlib
import contextvars
import functools
import hashlib
import io
import os
import pathlib
import sys
import tempfile
from typing import Iterator, Optional

import gin
import seqio

PARADIGM_TOKENS = ("[NLU]", "[NLG]", "[S2S]")
DEFAULT_EMBEDDED_PIECES = 4000
DEFAULT_EXTRA_IDS = 100
T5_VOCAB_FILE = "gs://t5-data/vocabs/cc_all.32000/sentencepiece.model"
# Embedding rows are the vocabulary's ids rounded up to this multiple (T5: 32,100 ids, 32,128 rows).
EMBEDDING_ROW_MULTIPLE = 128
# Bumped when the training recipe below changes, so old cache files are not reused.
_RECIPE_VERSION = 1


def cache_dir(override: Optional[str] = None) -> pathlib.Path:
  """The data directory for built artefacts ($ZEROSHOT_HARNESS_CACHE or ~/.cache/...)."""
  if override:
    return pathlib.Path(override).expanduser()
  env = os.environ.get("ZEROSHOT_HARNESS_CACHE")
  if env:
    return pathlib.Path(env).expanduser()
  return pathlib.Path.home() / ".cache" / "zeroshot_harness"


def _training_sentences() -> list[str]:
  from objectives import plays  # Local: plays parsing is only needed when building.

  return [line for doc in plays.documents("train") for line in doc.split("\n") if line]


def _trainer_args(vocab_size: int) -> dict:
  return dict(
      vocab_size=vocab_size,
      model_type="unigram",
      pad_id=0,
      eos_id=1,
      unk_id=2,
      bos_id=-1,
      user_defined_symbols=list(PARADIGM_TOKENS),
      # Determinism: one thread, every sentence in corpus order, no sampling.
      num_threads=1,
      input_sentence_size=0,
      shuffle_input_sentence=False,
      max_sentence_length=1 << 16,
      character_coverage=1.0,
      minloglevel=2,
  )


def train_model_proto(sentences: list[str], vocab_size: int) -> bytes:
  """Trains the unigram model in memory and returns the serialized model proto."""
  import sentencepiece as spm

  if vocab_size < 16:
    raise ValueError(f"objectives.vocab.embedded_vocabulary.vocab_size={vocab_size}; need >= 16.")
  if not sentences:
    raise ValueError("Cannot train the embedded vocabulary on an empty corpus.")
  writer = io.BytesIO()
  spm.SentencePieceTrainer.train(
      sentence_iterator=iter(sentences), model_writer=writer, **_trainer_args(vocab_size)
  )
  return writer.getvalue()


def _model_path(directory: pathlib.Path, sentences: list[str], vocab_size: int) -> pathlib.Path:
  digest = hashlib.sha256()
  digest.update(f"recipe={_RECIPE_VERSION};{sorted(_trainer_args(vocab_size).items())}".encode())
  for s in sentences:
    digest.update(s.encode("utf-8") + b"\n")
  return directory / f"embedded_spm_{vocab_size}_{digest.hexdigest()[:16]}.model"


def _is_valid_model(path: pathlib.Path, vocab_size: int) -> bool:
  import sentencepiece as spm

  try:
    sp = spm.SentencePieceProcessor(model_proto=path.read_bytes())
  except Exception:  # A truncated or foreign file: rebuild rather than trust it.
    return False
  return sp.GetPieceSize() == vocab_size and sp.PieceToId(PARADIGM_TOKENS[0]) == 3


def atomic_write(path: pathlib.Path, data: bytes) -> None:
  """Writes `data` to `path` so that readers only ever see a complete file."""
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix=f".tmp-{path.name}-", dir=path.parent)
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.chmod(tmp, 0o644)  # mkstemp makes 0600; the cache may be shared.
    os.replace(tmp, path)
  except BaseException:
    pathlib.Path(tmp).unlink(missing_ok=True)
    raise


def build_embedded_model(
    vocab_size: int = DEFAULT_EMBEDDED_PIECES, directory: Optional[str] = None, force: bool = False
) -> pathlib.Path:
  """Returns the path of the cached embedded model, training it first if absent or invalid."""
  sentences = _training_sentences()
  path = _model_path(cache_dir(directory), sentences, vocab_size)
  if not force and path.exists() and _is_valid_model(path, vocab_size):
    return path
  atomic_write(path, train_model_proto(sentences, vocab_size))
  if not _is_valid_model(path, vocab_size):
    raise RuntimeError(f"The embedded SentencePiece model written to {path} does not load.")
  return path


@functools.lru_cache(maxsize=None)
def _embedded(vocab_size: int, extra_ids: int, directory: Optional[str]) -> seqio.Vocabulary:
  path = build_embedded_model(vocab_size, directory)
  return seqio.SentencePieceVocabulary(str(path), extra_ids=extra_ids)


@gin.configurable(module="objectives.vocab")
def embedded_vocabulary(
    vocab_size: int = DEFAULT_EMBEDDED_PIECES,
    extra_ids: int = DEFAULT_EXTRA_IDS,
    cache_dir: Optional[str] = None,
) -> seqio.Vocabulary:
  """The embedded SentencePiece vocabulary: `vocab_size` pieces + `extra_ids` sentinels."""
  return _embedded(int(vocab_size), int(extra_ids), cache_dir)


@gin.configurable(module="objectives.vocab")
def sentencepiece_vocabulary(
    model_file: str = T5_VOCAB_FILE, extra_ids: int = DEFAULT_EXTRA_IDS
) -> seqio.Vocabulary:
  """A SentencePiece model from a file path (default: T5's 32k C4 model, 32,100 ids)."""
  return _sentencepiece(model_file, int(extra_ids))


class RemoteVocabularyError(FileNotFoundError):
  """A vocabulary file behind a URI (gs://...) that an offline check may not read."""


_OFFLINE = contextvars.ContextVar("objectives_vocab_offline", default=False)


@contextlib.contextmanager
def offline() -> Iterator[None]:
  """Within it, a SentencePiece file behind a URI is not opened (RemoteVocabularyError instead)."""
  token = _OFFLINE.set(True)
  try:
    yield
  finally:
    _OFFLINE.reset(token)


def _sentencepiece(model_file: str, extra_ids: int) -> seqio.Vocabulary:
  if _OFFLINE.get() and "://" in model_file:
    raise RemoteVocabularyError(
        f"objectives.vocab.sentencepiece_vocabulary.model_file={model_file!r} is remote and this "
        "check does not read the network; bind a local copy to check the vocabulary too.")
  return _open_sentencepiece(model_file, extra_ids)


@functools.lru_cache(maxsize=None)
def _open_sentencepiece(model_file: str, extra_ids: int) -> seqio.Vocabulary:
  import tensorflow as tf

  try:
    exists = tf.io.gfile.exists(model_file)
  except tf.errors.OpError as e:  # e.g. gs:// without network or credentials
    raise FileNotFoundError(
        f"objectives.vocab.sentencepiece_vocabulary.model_file={model_file!r} cannot be read "
        f"({e.message.splitlines()[0]}); bind it to a local copy of the SentencePiece model."
    ) from None
  if not exists:
    raise FileNotFoundError(
        f"objectives.vocab.sentencepiece_vocabulary.model_file={model_file!r} does not exist; "
        "bind it to a local copy of the SentencePiece model (e.g. T5's cc_all.32000)."
    )
  return seqio.SentencePieceVocabulary(model_file, extra_ids=extra_ids)


@gin.configurable(module="objectives.vocab")
def byte_vocabulary(extra_ids: int = DEFAULT_EXTRA_IDS) -> seqio.Vocabulary:
  """UTF-8 bytes (3 special ids + 256 bytes) + `extra_ids` sentinels."""
  return seqio.ByteVocabulary(extra_ids=int(extra_ids))


def sentinel_id(vocabulary: seqio.Vocabulary, index: int) -> int:
  """The id of <extra_id_index>: extra ids count down from the end of the vocabulary."""
  if not 0 <= index < vocabulary.extra_ids:
    raise ValueError(f"Sentinel {index} needs more than the {vocabulary.extra_ids} extra ids.")
  return vocabulary.vocab_size - 1 - index


def embedding_rows(ids: int) -> int:
  """Embedding rows of a model over `ids` ids: T5 pads to a multiple of 128 (32,100 -> 32,128)."""
  return -(-int(ids) // EMBEDDING_ROW_MULTIPLE) * EMBEDDING_ROW_MULTIPLE


def dedicated_piece_id(vocabulary: seqio.Vocabulary, token: str) -> Optional[int]:
  """The id of the piece spelled exactly `token` (e.g. '[NLU]'), or None if there is none."""
  vocabulary = getattr(vocabulary, "resolved", vocabulary)  # objectives.tasks.CorpusVocabulary
  if isinstance(vocabulary, seqio.SentencePieceVocabulary):
    sp = vocabulary.tokenizer
    piece_id = sp.PieceToId(token)
    if piece_id != sp.unk_id() and sp.IdToPiece(piece_id) == token:
      return int(piece_id)
  return None


def piece_name(vocabulary: seqio.Vocabulary, token_id: int) -> str:
  """A readable name of an id of the vocabulary's own pieces, for error messages."""
  vocabulary = getattr(vocabulary, "resolved", vocabulary)
  if isinstance(vocabulary, seqio.SentencePieceVocabulary):
    return repr(vocabulary.tokenizer.IdToPiece(int(token_id)))
  return {vocabulary.pad_id: "PAD", vocabulary.eos_id: "EOS"}.get(token_id, f"id {token_id}")


def paradigm_token_id(vocabulary: seqio.Vocabulary, token: str) -> int:
  """The dedicated id of a UL2 paradigm token; errors if the vocabulary has none."""
  piece_id = dedicated_piece_id(vocabulary, token)
  if piece_id is None:
    raise ValueError(
        f"UL2 paradigm token {token!r} has no dedicated id in "
        f"{type(getattr(vocabulary, 'resolved', vocabulary)).__name__}; objectives.ul2 gives it an "
        "unused embedding row, or bind objectives.ul2.settings.paradigm_ids.")
  return piece_id


def main(argv: list[str]) -> int:
  parser = argparse.ArgumentParser(prog="python -m objectives.vocab", description=__doc__.split("\n")[0])
  parser.add_argument("--build", action="store_true", help="train (if needed) and cache the model")
  parser.add_argument("--force", action="store_true", help="retrain even if a valid cache exists")
  parser.add_argument("--vocab_size", type=int, default=DEFAULT_EMBEDDED_PIECES)
  parser.add_argument("--cache_dir", default=None)
  args = parser.parse_args(argv)
  if not args.build:
    parser.print_help()
    return 2
  path = build_embedded_model(args.vocab_size, args.cache_dir, force=args.force)
  digest = hashlib.sha256(path.read_bytes()).hexdigest()
  print(f"{path}\nsha256 {digest}\npieces {args.vocab_size} + {DEFAULT_EXTRA_IDS} extra ids")
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
