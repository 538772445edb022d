"""The t5x-style gin flag parsing shared by every entry point."""

import gin
import pytest
import seqio

from experiments import data as data_lib
from experiments import testing
from experiments import train
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


def test_t5x_flags(tmp_path):
  flags = gin_utils.parse_flags(["--gin_search_paths=a,b", "--tfds_data_dir", "/data/tfds",
                                 "--gin_file=x.gin", "--other"])
  assert flags.gin_search_paths == ["a", "b"] and flags.tfds_data_dir == "/data/tfds"
  assert flags.gin_files == ["x.gin"] and flags.rest == ["--other"]
  gin_utils.parse_gin_flags(["--tfds_data_dir=/data/tfds"])
  assert gin_utils.tfds_data_dir() == "/data/tfds"  # the evaluator's default
  gin_utils._tfds_data_dir.clear()  # pylint: disable=protected-access
  seqio.set_tfds_data_dir_override(None)
  (tmp_path / "mine").mkdir()
  (tmp_path / "mine" / "layer.gin").write_text("X = 7\n_take.x = %X\n")
  try:
    gin_utils.parse_gin_flags([f"--gin_search_paths={tmp_path}"])
    gin_utils.parse_gin(["mine/layer.gin"])  # found through the search path
    assert _take() == 7
  finally:
    gin_utils.set_search_paths([])
  include = _write(tmp_path, "inc.gin", "include 'mine/layer.gin'\n")
  with pytest.raises(gin_utils.GinConfigError, match="layer.gin"):  # the folder is gone again
    gin_utils.parse_gin([include])
  with pytest.raises(gin_utils.GinConfigError, match="not a folder"):
    gin_utils.set_search_paths([str(tmp_path / "absent")])


def _write(tmp_path, name, text):
  path = tmp_path / name
  path.write_text(text)
  return str(path)


def test_two_layers_binding_one_key_differently_is_an_error(tmp_path):
  a = _write(tmp_path, "a.gin", "X = 1\n_take.x = %X\n")
  b = _write(tmp_path, "b.gin", "X = 2\n")
  same = _write(tmp_path, "same.gin", "X = 1\n")
  with pytest.raises(gin_utils.GinConfigError, match=r"X is bound by .*a\.gin \(1\) and by "
                                                     r".*b\.gin \(2\)"):
    gin_utils.parse_gin([a, b])
  gin_utils.parse_gin([same, a])  # the same value twice is no conflict
  assert _take() == 1
  gin_utils.parse_gin([a], ["X = 3"])  # a flag overrides a layer
  assert _take() == 3


def test_required_is_filled_whatever_the_order_and_named_when_unset(tmp_path):
  base = _write(tmp_path, "base.gin", "X = %gin.REQUIRED\n_take.x = %X\n")
  layer = _write(tmp_path, "layer.gin", "X = 5\n")
  for files in ([base, layer], [layer, base]):
    gin_utils.parse_gin(files)
    assert _take() == 5
  with pytest.raises(gin_utils.GinConfigError, match="gin macro X is required but not set"):
    gin_utils.parse_gin([base])
  with pytest.raises(gin_utils.GinConfigError,
                     match=r"MODEL_DIR is required .*--gin.MODEL_DIR=\"'runs/my_run'\""):
    gin_utils.parse_gin([], ["MODEL_DIR = %gin.REQUIRED", "_take.x = %MODEL_DIR"])


def test_overlay_applies_last_and_defaults_fill_required(tmp_path):
  layer = _write(tmp_path, "layer.gin", "X = 1\n_take.x = %X\n")
  overlay = _write(tmp_path, "local_small.gin", "X = 2\n")
  for files in ([layer, overlay], [overlay, layer]):
    gin_utils.parse_gin(files)
    assert _take() == 2
  base = _write(tmp_path, "base.gin", "X = %gin.REQUIRED\n_take.x = %X\n")
  gin_utils.parse_gin([base], defaults=["X = 9"])
  assert _take() == 9
  gin_utils.parse_gin([layer], defaults=["X = 9"])  # a file rebinds a default
  assert _take() == 1


def test_undefined_macro_is_named_with_its_user(tmp_path):
  f = _write(tmp_path, "a.gin", "_take.x = [%NOT_DEFINED]\n")
  with pytest.raises(gin_utils.GinConfigError,
                     match=r"macro NOT_DEFINED is used by .*_take\.x but never defined"):
    gin_utils.parse_gin([f])


def test_unquoted_string_gets_the_quoting_hint():
  with pytest.raises(gin_utils.GinConfigError, match=r"--gin.KEY=\"'runs/x'\""):
    gin_utils.parse_gin([], ["MODEL_DIR = runs/x"])


def test_a_misspelled_macro_flag_is_an_error_naming_the_close_names(tmp_path):
  f = _write(tmp_path, "a.gin", "TRAIN_STEPS = 131072\n_take.x = %TRAIN_STEPS\n")
  with pytest.raises(gin_utils.GinConfigError,
                     match=r"--gin.TRAIN_STEP: no gin file .* uses the macro TRAIN_STEP "
                           r"\(did you mean TRAIN_STEPS"):
    gin_utils.parse_gin([f], ["TRAIN_STEP = 20"])
  gin_utils.parse_gin([f], ["TRAIN_STEPS = 20"])
  assert _take() == 20
  gin_utils.parse_gin([f], ["GRID_DIR = 'x'"], read_macros=["GRID_DIR"])  # read by the caller


def test_a_macro_that_a_users_file_sets_and_nothing_uses_warns_or_fails(tmp_path, caplog):
  f = _write(tmp_path, "mine.gin", "TRAIN_STEPS = 5\nTRAIN_STEP = 20\n_take.x = %TRAIN_STEPS\n")
  with caplog.at_level("WARNING"):
    gin_utils.parse_gin([f])
  assert "TRAIN_STEP, which no binding uses" in caplog.text
  with pytest.raises(gin_utils.GinConfigError, match="TRAIN_STEP, which no binding uses"):
    gin_utils.parse_gin([f], ["UNUSED_MACROS = 'error'"])


def test_a_missing_include_names_the_file_and_line(tmp_path):
  f = _write(tmp_path, "a.gin", "X = 1\n\ninclude 'gin_configs/base/no_such.gin'\n")
  with pytest.raises(gin_utils.GinConfigError,
                     match=r"a\.gin:3: include 'gin_configs/base/no_such.gin': no such file"):
    gin_utils.parse_gin([f])


@pytest.mark.parametrize("flag, suggestion", [("--gin-file=a.gin", "--gin_file"),
                                              ("--gin_files=a.gin", "--gin_file"),
                                              ("--gin_binding=X=1", "--gin_bindings"),
                                              ("--tfds_datadir=/x", "--tfds_data_dir")])
def test_unknown_flags_get_a_did_you_mean(flag, suggestion):
  with pytest.raises(gin_utils.GinConfigError, match=f"unknown flag .*did you mean {suggestion}"):
    gin_utils.parse_flags([flag])


_TASK_MODULE = '''
import seqio

seqio.TaskRegistry.add(
    "{task}",
    source=seqio.FunctionDataSource(lambda split, shuffle_files: None, splits=["train"]),
    preprocessors=[],
    output_features={{"targets": seqio.Feature(seqio.PassThroughVocabulary(8))}})
'''


def test_mixture_or_task_module_is_imported_before_the_task_is_looked_up(tmp_path, monkeypatch):
  # t5x's MIXTURE_OR_TASK_MODULE: a user's module, imported when the stack is parsed, registers the
  # task that MIXTURE_OR_TASK_NAME names; the trainer's lookup (experiments.data) then finds it.
  gin.clear_config()  # unlocked, as an entry point starts: it imports its task modules first
  data_lib.import_task_modules()
  module, task = "my_tasks_for_gin_utils_test", "my_gin_utils_test_task"
  (tmp_path / f"{module}.py").write_text(_TASK_MODULE.format(task=task))
  monkeypatch.syspath_prepend(str(tmp_path))
  f = _write(tmp_path, "mine.gin", f"MIXTURE_OR_TASK_NAME = '{task}'\n"
                                   "_take.x = %MIXTURE_OR_TASK_NAME\n")
  try:
    with pytest.raises(ValueError, match=f"{task}.*not a registered"):
      gin_utils.parse_gin([f])
      data_lib.get_task(_take())
    gin_utils.parse_gin([f], [f"MIXTURE_OR_TASK_MODULE = '{module}'"])  # a flag; no file uses it
    assert data_lib.get_task(_take()).name == task
  finally:
    seqio.TaskRegistry.remove(task)
    monkeypatch.delitem(__import__("sys").modules, module, raising=False)


def test_an_unimportable_task_module_is_a_config_error_before_training(tmp_path, monkeypatch,
                                                                        capsys):
  gin.clear_config()  # unlocked, as at an entry point's start
  with pytest.raises(gin_utils.GinConfigError,
                     match=r"MIXTURE_OR_TASK_MODULE = 'no_such_task_module'.*PYTHONPATH"):
    gin_utils.parse_gin([], ["MIXTURE_OR_TASK_MODULE = 'no_such_task_module'"])
  (tmp_path / "broken_task_module.py").write_text("raise RuntimeError('half-written')\n")
  monkeypatch.syspath_prepend(str(tmp_path))
  with pytest.raises(gin_utils.GinConfigError, match=r"broken_task_module.*half-written"):
    gin_utils.parse_gin([], ["MIXTURE_OR_TASK_MODULE = 'broken_task_module'"])
  with pytest.raises(gin_utils.GinConfigError, match=r"MIXTURE_OR_TASK_MODULE = 3: expected"):
    gin_utils.parse_gin([], ["MIXTURE_OR_TASK_MODULE = 3"])
  gin_utils.parse_gin([], ["MIXTURE_OR_TASK_MODULE = None"])  # t5x's default: nothing imported
  # The trainer's command line: exit 2 with one error line, before a model is built.
  model_dir = tmp_path / "run"
  files, bindings = testing.tiny_stack("causal_decoder", "full_lm", model_dir, 2,
                                       extra=["MIXTURE_OR_TASK_MODULE = 'no_such_task_module'"])
  assert testing.cli_exit_code(train.main, testing.as_flags(files, bindings)) == 2
  err = capsys.readouterr().err
  assert err.startswith("error: ") and "MIXTURE_OR_TASK_MODULE" in err
  assert not model_dir.exists()
  gin.clear_config()


def test_tfds_data_dir_reaches_the_c4_task_and_its_start_up_check(tmp_path):
  # --tfds_data_dir is where the c4 task reads (seqio's override) and where the trainer's start-up
  # check (objectives.validate -> corpora.check_c4) looks for the prepared dataset.
  from objectives import corpora  # pylint: disable=g-import-not-at-top
  gin.clear_config()
  try:
    gin_utils.parse_gin_flags([f"--tfds_data_dir={tmp_path}"])
    settings = corpora.c4_settings()
    source = corpora._c4_source(settings["name"], settings["data_dir"])  # pylint: disable=protected-access
    assert source.tfds_dataset.data_dir == str(tmp_path)
    with pytest.raises(corpora.CorpusError, match=f"not prepared under {tmp_path}"):
      corpora.check_c4()
  finally:
    gin_utils._tfds_data_dir.clear()  # pylint: disable=protected-access
    seqio.set_tfds_data_dir_override(None)
    corpora._c4_source.cache_clear()  # pylint: disable=protected-access
