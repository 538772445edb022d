"""The t5x-style gin flag parsing shared by every entry point."""

import gin
import pytest

from experiments.runtime import gin_utils


@gin.configurable
def _take(x=gin.REQUIRED):
  return x


def test_flags_split_in_order():
  files, bindings, rest = gin_utils.parse_gin_flags(
      ["--gin_file=a.gin", "--gin.MODEL_DIR='/tmp/run'", "--gin_file", "b.gin",
       "--gin_bindings", "X = 1", "--dry_run"])
  assert files == ["a.gin", "b.gin"]
  assert bindings == ["MODEL_DIR = '/tmp/run'", "X = 1"]
  assert rest == ["--dry_run"]


def test_later_binding_wins(tmp_path):
  f = tmp_path / "a.gin"
  f.write_text("X = 1\n_take.x = %X\n")
  gin_utils.parse_gin([str(f)], ["X = 2"])
  assert _take() == 2
  assert gin_utils.query_macro("X") == 2
  assert gin_utils.query_macro("UNSET", "dflt") == "dflt"


@pytest.mark.parametrize("flag", ["--gin.=3", "--gin.KEY", "--gin_file"])
def test_malformed_flags(flag):
  with pytest.raises(gin_utils.GinConfigError):
    gin_utils.parse_gin_flags([flag])


def test_errors_name_their_source(tmp_path):
  with pytest.raises(gin_utils.GinConfigError, match="unknown_thing"):
    gin_utils.parse_gin([], ["unknown_thing.x = 1"])
  bad = tmp_path / "bad.gin"
  bad.write_text("_take.x = (\n")
  with pytest.raises(gin_utils.GinConfigError, match="bad.gin"):
    gin_utils.parse_gin([str(bad)])
  with pytest.raises(gin_utils.GinConfigError, match="no such file"):
    gin_utils.parse_gin(["gin_configs/does_not_exist.gin"])
  gin_utils.parse_gin([], [])
  with pytest.raises(gin_utils.GinConfigError, match="MODEL_DIR"):
    gin_utils.require_macro("MODEL_DIR")
