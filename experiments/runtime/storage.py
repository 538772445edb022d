"""Paths of every directory setting: local folders and storage URIs, through etils.epath.

epath is the path library orbax uses, so MODEL_DIR, GRID_DIR, CHECKPOINT_PATH,
INITIAL_CHECKPOINT_PATH, EVAL_OUTPUT_DIR, the data-iterator states and the metrics files reach the
same filesystems as the checkpoints: local paths and epath's URIs (gs://, s3://, az://, hf://;
gs:// through tf.io.gfile when TensorFlow is installed). A URI is never turned into a local path
(pathlib would make `gs://b/run` the local folder `gs:/b/run`); a local path is made absolute,
as orbax needs. `check_dir` reaches the filesystem once, with a time limit, so an unknown scheme,
missing credentials or no network is one ConfigError naming the setting before any compilation.
"""

from __future__ import annotations

import importlib.util
import os
import threading
import uuid
from typing import Any, Callable

from etils import epath

from experiments.runtime import errors

Path = epath.Path
# Orbax writes arrays through tensorstore, which it points at a local folder or at gs:// only
# (orbax/_src/serialization/tensorstore_utils.py): other URIs hold everything but checkpoints.
CHECKPOINT_SCHEMES = ("gs",)
# Long enough for a cold GCS client (credentials, DNS); a dead network fails much sooner.
REACH_TIMEOUT_S = 120.0


class StorageError(errors.ConfigError):
  """A path setting whose filesystem cannot be reached, or that cannot hold what it must."""


class NotAFolderError(StorageError):
  """A folder setting that names a file."""


def is_uri(value: Any) -> bool:
  return "://" in os.fspath(value) if isinstance(value, (str, os.PathLike)) else False


def scheme(value: Any) -> str | None:
  """'gs' for 'gs://b/x', None for a local path."""
  text = os.fspath(value)
  return text.split("://", 1)[0] if is_uri(text) else None


def as_path(value: Any) -> epath.Path:
  """An epath.Path: URIs as given, local paths made absolute (orbax refuses relative ones)."""
  if isinstance(value, epath.Path) and (is_uri(value) or os.path.isabs(os.fspath(value))):
    return value
  text = os.fspath(value)
  if is_uri(text):
    try:
      return epath.Path(text)
    except (KeyError, NotImplementedError) as e:
      raise StorageError(f"{text!r}: unknown scheme '{scheme(text)}://'; {supported()}.") from e
  return epath.Path(os.path.abspath(os.path.expanduser(text)))


def gcs_client_missing() -> str | None:
  """Why orbax cannot list a gs:// folder's steps here (it asks google-cloud-storage whether the
  bucket has a hierarchical namespace), or None."""
  try:
    found = importlib.util.find_spec("google.cloud.storage") is not None
  except (ImportError, ValueError):
    found = False
  return None if found else ("orbax needs the google-cloud-storage package for gs:// "
                             "checkpoints: pip install '.[gcs]'")


def supported() -> str:
  return ("expected a local path or one of the URIs etils.epath reaches (gs://, s3://, az://, "
          "hf://; checkpoints: a local path or gs://)")


def join(base: Any, *parts: str) -> str:
  """`base/parts...` as a string, keeping a URI's 'scheme://' (os.path.join does too, but
  os.path.abspath and relpath would not)."""
  return "/".join([os.fspath(base).rstrip("/"), *parts]) if parts else os.fspath(base)


def relative(path: Any, base: Any) -> str:
  """`path` relative to `base` (both local or both URIs)."""
  path, base = os.fspath(path), os.fspath(base)
  if is_uri(path) or is_uri(base):
    prefix = base.rstrip("/") + "/"
    return path[len(prefix):] if path.startswith(prefix) else path
  return os.path.relpath(path, base)


def _with_timeout(fn: Callable[[], Any], timeout: float) -> Any:
  """fn() in a daemon thread: a filesystem client retrying a dead network must neither hang
  start-up nor keep the process from exiting."""
  outcome: dict[str, Any] = {}

  def target():
    try:
      outcome["value"] = fn()
    except BaseException as e:  # pylint: disable=broad-except  # re-raised in the caller
      outcome["error"] = e

  thread = threading.Thread(target=target, daemon=True, name="storage-probe")
  thread.start()
  thread.join(timeout)
  if thread.is_alive():
    raise TimeoutError
  if "error" in outcome:
    raise outcome["error"]
  return outcome.get("value")


def check_scheme(value: Any, setting: str, *, checkpoints: bool = False) -> epath.Path:
  """`value` as a path of a known scheme, without reaching its filesystem."""
  return check_dir(value, setting, checkpoints=checkpoints, reach=False)


def check_dir(value: Any, setting: str, *, create: bool = False, writable: bool = False,
              checkpoints: bool = False, timeout: float | None = None,
              reach: bool = True) -> epath.Path:
  """`value` as a folder path whose filesystem answers; raises StorageError naming `setting`.

  create: make the folder (and parents); writable: write and delete a probe file in it;
  checkpoints: the scheme must be one orbax can write arrays to. Nothing is created when the
  filesystem does not answer, so a bad URI never leaves a local folder behind.
  """
  if not isinstance(value, (str, os.PathLike)) or not os.fspath(value):
    raise StorageError(f"{setting} must be a path string (a local path or a URI such as "
                       f"'gs://bucket/run'), got {value!r}.")
  text = os.fspath(value)
  try:
    path = as_path(text)
  except StorageError as e:
    raise StorageError(f"{setting} = {text!r}: unknown scheme '{scheme(text)}://'; "
                       f"{supported()}.") from e.__cause__
  if checkpoints and is_uri(text) and scheme(text) not in CHECKPOINT_SCHEMES:
    raise StorageError(f"{setting} = {text!r}: orbax writes checkpoints to local paths and "
                       f"{', '.join(s + '://' for s in CHECKPOINT_SCHEMES)} only.")
  if checkpoints and scheme(text) == "gs" and gcs_client_missing():
    raise StorageError(f"{setting} = {text!r}: {gcs_client_missing()}.")
  if not reach:
    return path

  def probe():
    if path.exists() and not path.is_dir():
      raise _IsAFile()
    if create:
      path.mkdir(parents=True, exist_ok=True)
    if writable:
      test = path / f".write_test_{uuid.uuid4().hex}"
      test.write_text("")
      test.unlink()

  limit = REACH_TIMEOUT_S if timeout is None else timeout
  try:
    _with_timeout(probe, limit) if is_uri(text) else probe()
  except TimeoutError:
    raise StorageError(f"{setting} = {text!r}: its filesystem did not answer within {limit:g} s "
                       f"(no network, or no credentials for '{scheme(text)}://'?).") from None
  except _IsAFile as e:
    raise NotAFolderError(f"{setting} = {text!r} is a file, expected a folder.") from e
  except Exception as e:  # pylint: disable=broad-except  # each backend raises its own
    what = ("cannot be reached" if is_uri(text) else
            "is not writable" if writable else "is not readable")
    raise StorageError(f"{setting} = {text!r} {what}: {_reason(e)}.") from e
  return path


class _IsAFile(Exception):
  """The folder setting names a file."""


def _reason(e: BaseException) -> str:
  text = " ".join(str(e).split()) or type(e).__name__
  return (getattr(e, "strerror", None) or text)[:300]


def write_text(path: Any, text: str) -> None:
  """Replaces the file at `path` at once (UTF-8): see write_bytes."""
  write_bytes(path, text.encode("utf-8"))


def write_bytes(path: Any, data: bytes) -> None:
  """Replaces the file at `path` at once: a temporary file renamed locally; one object upload
  on an object store (which replaces whole objects atomically)."""
  path = as_path(path)
  if not is_uri(path):
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # processes may share a file
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return
  path.write_bytes(data)


def upload_tree(local_dir: Any, dest: Any) -> None:
  """Copies the files under a local folder to `dest` (any scheme)."""
  dest = as_path(dest)
  for root, _, files in os.walk(os.fspath(local_dir)):
    rel = os.path.relpath(root, os.fspath(local_dir))
    target = dest if rel == "." else dest / rel
    target.mkdir(parents=True, exist_ok=True)
    for name in files:
      with open(os.path.join(root, name), "rb") as f:
        (target / name).write_bytes(f.read())


def download_tree(src: Any, local_dir: Any) -> None:
  """Copies the files under `src` (any scheme) into a local folder."""
  src = as_path(src)
  os.makedirs(os.fspath(local_dir), exist_ok=True)
  for child in src.iterdir():
    target = os.path.join(os.fspath(local_dir), child.name)
    if child.is_dir():
      download_tree(child, target)
    else:
      with open(target, "wb") as f:
        f.write(child.read_bytes())


class _BufferedRecordWriter:
  """tensorboardX's record writer for URIs: each flush uploads the whole event file (object
  stores cannot append; event files of a run's scalars stay small)."""

  def __init__(self, path: str):
    self._path = as_path(path)
    self._data = bytearray()
    self._lock = threading.Lock()

  def write(self, data: bytes) -> None:
    with self._lock:
      self._data.extend(data)

  def flush(self) -> None:
    with self._lock:
      self._path.write_bytes(bytes(self._data))

  def close(self) -> None:
    self.flush()


class _RecordWriterFactory:

  def open(self, path: str) -> _BufferedRecordWriter:
    return _BufferedRecordWriter(path)

  def directory_check(self, path: str) -> None:
    as_path(path).mkdir(parents=True, exist_ok=True)


def register_tensorboard(uri: Any) -> None:
  """Routes tensorboardX's event files under `uri`'s scheme through epath (tensorboardX alone
  needs google-cloud-storage for gs:// and knows no other scheme)."""
  if not is_uri(uri):
    return
  from tensorboardX import record_writer  # pylint: disable=g-import-not-at-top
  record_writer.register_writer_factory(scheme(uri), _RecordWriterFactory())


def is_file(path: Any) -> bool:
  return as_path(path).is_file()


def exists(path: Any) -> bool:
  return as_path(path).exists()


def is_abs(path: Any) -> bool:
  return is_uri(path) or os.path.isabs(os.fspath(path))


def makedirs(path: Any) -> None:
  as_path(path).mkdir(parents=True, exist_ok=True)


def read_text(path: Any) -> str:
  return as_path(path).read_text()


def write_csv(df: Any, path: Any, **kwargs) -> None:
  """A pandas DataFrame as CSV at `path` (pandas alone would need fsspec's own driver)."""
  write_text(path, df.to_csv(**kwargs))


def read_csv(path: Any, **kwargs) -> Any:
  import io  # pylint: disable=g-import-not-at-top
  import pandas as pd  # pylint: disable=g-import-not-at-top
  return pd.read_csv(io.StringIO(read_text(path)), **kwargs)
