"""Shared test set-up: float32 on CPU, strict rank promotion, the real small sets in ../shared/data."""

import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_platforms", "cpu")

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
  """The real small evaluation sets; tests using them skip only when the folder is absent."""
  if not SHARED_DATA.is_dir():
    pytest.skip(f"../shared/data is absent (looked at {SHARED_DATA.name} beside the repo)")
  return SHARED_DATA


@pytest.fixture(scope="session")
def repo_root() -> pathlib.Path:
  return REPO_ROOT


@pytest.fixture(autouse=True)
def _unlocked_gin():
  """A test that leaves gin finalized (locked) must not break a later test's first import of a
  module that registers configurables: clear a locked config after each test."""
  yield
  import gin  # pylint: disable=g-import-not-at-top
  if gin.config_is_locked():
    gin.clear_config()
