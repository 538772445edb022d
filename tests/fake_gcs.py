"""gs:// without a network, for tests: the bucket's objects live under a local root folder.

Every layer keeps seeing the URI 'gs://bucket/...' (the harness, etils.epath, orbax's GCS code
paths: commit-file atomicity, rmtree); only the two places that would talk to Cloud Storage are
redirected: epath's backend for gs:// paths, and the tensorstore kvstore orbax builds for a gs://
path ('gcs' driver -> 'file' driver under the root). orbax's hierarchical-namespace query (a
google-cloud-storage call) answers no.

`python tests/fake_gcs.py ROOT MODULE ARGS...` runs `python -m MODULE ARGS...` with the redirect
installed (a subprocess that can be killed like a real run).
"""

from __future__ import annotations

import os
import runpy
import sys

from etils.epath import backend as backend_lib
from etils.epath import gpath

PREFIX = "gs://"


class _RootedBackend(backend_lib.Backend):
  """epath's local backend with 'gs://x' read as ROOT/x, and ROOT/x given back as 'gs://x'."""

  def __init__(self, root: str):
    self.root = os.path.abspath(root)
    self.os = backend_lib.os_backend

  def _l(self, path) -> str:
    text = os.fspath(path)
    return os.path.join(self.root, text[len(PREFIX):]) if text.startswith(PREFIX) else text

  def _u(self, path: str) -> str:
    return PREFIX + path[len(self.root) + 1:] if path.startswith(self.root + "/") else path

  def open(self, path, mode):
    return self.os.open(self._l(path), mode)

  def exists(self, path):
    return self.os.exists(self._l(path))

  def isdir(self, path):
    return self.os.isdir(self._l(path))

  def listdir(self, path):
    return self.os.listdir(self._l(path))

  def glob(self, path):
    return [self._u(p) for p in self.os.glob(self._l(path))]

  def walk(self, top, *, top_down=True, on_error=None):
    for root, dirs, files in self.os.walk(self._l(top), top_down=top_down, on_error=on_error):
      yield self._u(root), dirs, files

  def makedirs(self, path, *, exist_ok=False, mode=0o777):
    return self.os.makedirs(self._l(path), exist_ok=exist_ok, mode=mode)

  def mkdir(self, path, *, exist_ok=False, mode=0o777):
    return self.os.mkdir(self._l(path), exist_ok=exist_ok, mode=mode)

  def rmtree(self, path):
    return self.os.rmtree(self._l(path))

  def remove(self, path):
    return self.os.remove(self._l(path))

  def rename(self, path, dst):
    return self.os.rename(self._l(path), self._l(dst))

  def replace(self, path, dst):
    return self.os.replace(self._l(path), self._l(dst))

  def copy(self, path, dst, overwrite):
    return self.os.copy(self._l(path), self._l(dst), overwrite=overwrite)

  def stat(self, path):
    return self.os.stat(self._l(path))


def install(root: str, setattr=setattr) -> None:  # pylint: disable=redefined-builtin
  """Redirects gs:// to `root` in this process (epath, orbax's tensorstore specs); a test passes
  pytest's monkeypatch.setattr to undo it afterwards."""
  from orbax.checkpoint._src.path import gcs_utils  # pylint: disable=g-import-not-at-top
  os.makedirs(root, exist_ok=True)
  backend = _RootedBackend(root)
  original = gpath._GPath._backend  # pylint: disable=protected-access

  def _backend(self):
    return backend if self._uri_scheme == "gs" else original.fget(self)

  setattr(gpath._GPath, "_backend", property(_backend))  # pylint: disable=protected-access
  local = backend._l  # pylint: disable=protected-access
  setattr(gcs_utils, "get_kvstore_for_gcs", lambda path: {"driver": "file", "path": local(path)})
  setattr(gcs_utils, "is_hierarchical_namespace_enabled", lambda path: False)
  from experiments.runtime import storage  # pylint: disable=g-import-not-at-top
  setattr(storage, "gcs_client_missing", lambda: None)


if __name__ == "__main__":
  install(sys.argv[1])
  module = sys.argv[2]
  sys.argv = [module, *sys.argv[3:]]
  runpy.run_module(module, run_name="__main__", alter_sys=True)
