"""Evaluation faults (issue 18): each test fails on the evaluator's behaviour before the fix.

- EVAL_OUTPUT_DIR and LOCAL_DATA_DIR are checked before the restore (they were checked after all
  scoring, or never), naming the macro.
- An evaluation that scores nothing exits 2 and keeps a results.json that has scores (it exited 0
  and replaced it with an empty one); results.json records checkpoint, harness and protocol.
- Expected errors (suite, task, checkpoint, data row, templates) are one `error:` line and exit 2
  (they were tracebacks, exit 1); a non-UTF-8 data file names file and line.
- `EVAL_SUITE='embedded:'` is an error (it ran the whole suite).

The CLI runs in this process (experiments.testing.cli_exit_code); the checkpoint is the tiny causal
decoder's initial parameters, saved once: no training.
"""

import json
import re
import subprocess
import sys

import gin
import pytest

from eval import suites
from eval import zero_shot
from eval.loaders import local
from experiments import testing
from experiments.runtime import checkpoints
from experiments.runtime.errors import ConfigError

_STACK = list(testing.EVAL_STACK)
_STEP = 7
_HEADQA = [{"query": "Question: which organ pumps blood?", "choices": ["heart", "lung"], "gold": 0},
           {"query": "Question: which gas do we breathe out?", "choices": ["oxygen", "carbon"],
            "gold": 1}]


@pytest.fixture(scope="module", autouse=True)
def unlocked_gin():
  """Clears gin afterwards: a finalized config refuses modules that register configurables later."""
  yield
  gin.clear_config()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
  """A MODEL_DIR with one complete step of the tiny CD's initial parameters."""
  return testing.untrained_eval_checkpoint(tmp_path_factory.mktemp("cd"), _STEP)


def _argv(checkpoint, suite, *extra):
  return [*(f"--gin_file={f}" for f in _STACK), f"--gin.CHECKPOINT_PATH='{checkpoint}'",
          f"--gin.EVAL_SUITE='{suite}'", *extra]


def _data_dir(tmp_path, rows=_HEADQA):
  """A LOCAL_DATA_DIR with multiple_choice/headqa.jsonl (bytes rows are written as they are)."""
  path = tmp_path / "data" / "multiple_choice" / "headqa.jsonl"
  path.parent.mkdir(parents=True)
  path.write_bytes(b"".join((r if isinstance(r, bytes) else json.dumps(r).encode()) + b"\n"
                            for r in rows))
  return tmp_path / "data"


def _error_line(capsys) -> str:
  """The one `error:` line the CLI wrote (log lines may come before it), and no traceback."""
  err = capsys.readouterr().err
  lines = [line for line in err.splitlines() if line.startswith("error:")]
  assert len(lines) == 1 and "Traceback" not in err and "In call to configurable" not in err, err
  return lines[0]


@pytest.fixture
def no_restore(monkeypatch):
  """Fails the evaluation if it gets as far as restoring the checkpoint."""
  calls = []

  def restore(*args, **kwargs):
    calls.append(args)
    raise RuntimeError("restored")

  monkeypatch.setattr(zero_shot, "restore_for_eval", restore)
  return calls


@pytest.mark.parametrize("layout,match", [
    ("file", r"EVAL_OUTPUT_DIR = '.*out' is a file"),
    ("under_file", r"EVAL_OUTPUT_DIR = '.*out/eval' is not a writable folder"),
    ("no_data", r"LOCAL_DATA_DIR = '.*nowhere' does not exist"),
])
def test_folders_are_checked_before_the_restore(model_dir, tmp_path, capsys, no_restore, layout,
                                                match):
  out = tmp_path / "out"
  if layout != "no_data":
    out.write_text("a file\n")
  where = {"file": [f"--gin.EVAL_OUTPUT_DIR='{out}'"],
           "under_file": [f"--gin.EVAL_OUTPUT_DIR='{out}/eval'"],
           "no_data": [f"--gin.LOCAL_DATA_DIR='{tmp_path}/nowhere'",
                       f"--gin.EVAL_OUTPUT_DIR='{tmp_path}/eval'"]}[layout]
  assert testing.cli_exit_code(zero_shot.main, _argv(model_dir, "eai_eval:headqa", *where)) == 2
  line = _error_line(capsys)
  assert re.match("error: " + match, line), line
  assert not no_restore


def test_nothing_scored_exits_2_and_keeps_the_scored_results(model_dir, tmp_path, capsys):
  out = tmp_path / "eval"
  out.mkdir()
  scored = {"suite": "eai_eval", "tasks": {"copa": {"median": 0.57}}, "missing": {}}
  (out / "results.json").write_text(json.dumps(scored))
  (tmp_path / "empty").mkdir()
  argv = _argv(model_dir, "eai_eval:headqa,logiqa", f"--gin.EVAL_OUTPUT_DIR='{out}'",
               f"--gin.LOCAL_DATA_DIR='{tmp_path}/empty'")
  assert testing.cli_exit_code(zero_shot.main, argv) == 2
  err = _error_line(capsys)
  assert err.startswith("error: nothing scored: every task of suite eai_eval is missing")
  assert "headqa: no multiple_choice/headqa.jsonl under LOCAL_DATA_DIR" in err
  assert "logiqa: no multiple_choice/logiqa.jsonl" in err and "is kept" in err
  assert json.loads((out / "results.json").read_text()) == scored
  beside = [p for p in out.glob("results.*.json") if p.name != "results.json"]
  assert len(beside) == 1 and beside[0].name in err
  new = json.loads(beside[0].read_text())
  assert set(new["missing"]) == {"headqa", "logiqa"} and new["tasks"] == {}
  assert new["checkpoint"]["step"] == _STEP
  # The Python entry (the grid's eval stage) raises, so the grid records a failed stage, and its
  # message is the evaluator's own (gin's call-site note removed).
  with pytest.raises(ConfigError, match="nothing scored") as raised:
    zero_shot.run(_STACK, [f"CHECKPOINT_PATH = '{model_dir}'", "EVAL_SUITE = 'eai_eval:headqa'",
                           f"LOCAL_DATA_DIR = '{tmp_path}/empty'"])
  assert "In call to configurable" not in str(raised.value)


def test_results_record_checkpoint_harness_and_protocol(model_dir, tmp_path):
  out = tmp_path / "eval"
  results = zero_shot.run(_STACK, [
      f"CHECKPOINT_PATH = '{model_dir}'", "EVAL_SUITE = 'eai_eval:headqa'",
      f"EVAL_OUTPUT_DIR = '{out}'", f"LOCAL_DATA_DIR = '{_data_dir(tmp_path)}'"])
  assert results["tasks"]["headqa"]["n"] == 2
  assert results["checkpoint"] == {
      "path": str(model_dir), "step": _STEP,
      "step_dir": str(checkpoints.checkpoints_dir(model_dir) / str(_STEP))}
  commit = results["harness"]["git_commit"]  # HEAD when the run started (others may commit)
  assert re.fullmatch("[0-9a-f]{40}", commit) and subprocess.run(
      ["git", "cat-file", "-t", commit], cwd=testing.REPO_ROOT, capture_output=True, text=True,
      check=False).stdout.strip() == "commit"
  assert isinstance(results["harness"]["git_dirty"], bool)
  protocol = results["protocol"]
  assert (protocol["prompt_eos"], protocol["option_eos"], protocol["max_prompts"]) == (
      False, False, 1)
  assert protocol["scoring"]["max_length"] == 1024 and protocol["description"]
  # EAI-Eval keeps its own single prompt whatever prompt_source says; the EOS rule is stated.
  assert (protocol["prompt_source"], protocol["promptsource_version"]) == ("builtin", None)
  assert protocol["prompts_per_task"] == {"headqa": 1}
  assert protocol["eos_rule"] == "lm-evaluation-harness: no EOS on either side"
  assert json.loads((out / "results.json").read_text())["checkpoint"]["step"] == _STEP


@pytest.mark.parametrize("suite,checkpoint,extra,match", [
    ("nope", "{model}", [], r"Unknown EVAL_SUITE 'nope'; valid suites: t0_eval"),
    ("embedded:rhyme", "{model}", [],
     r"Unknown task\(s\) \['rhyme'\] .* embedded has: embedded_next_line"),
    ("embedded:", "{model}", [], r"EVAL_SUITE 'embedded:' names no task after the colon; embedded "
                                 r"has: embedded_next_line, embedded_cloze"),
    ("eai_eval:headqa", "{tmp}/nothing", [],
     r"CHECKPOINT_PATH: .*nothing"),
    # lm-eval's task names are checked before the checkpoint (absent here) is looked at.
    ("lm_eval:arc_eazy", "{tmp}/nothing", [],
     r"EVAL_SUITE = 'lm_eval:arc_eazy'.*(close: .*arc_easy|\[lm_eval\])"),
    ("eai_eval:headqa", "{model}", ["--gin.arch.config.TransformerConfig.emb_dim=64"],
     r"CHECKPOINT_PATH: .*(does not fit|differ|mismatch)"),
    ("eai_eval:headqa", "{model}", ["--gin.LOCAL_DATA_DIR='{data}'"],
     r"headqa\.jsonl, line 3: not valid JSON"),
    ("eai_eval:headqa", "{model}", ["--gin.eval.zero_shot.evaluate_checkpoint.prompt_source='t0'"],
     r"eval\.zero_shot\.evaluate_checkpoint\.prompt_source = 't0': expected 'builtin'"),
])
def test_expected_errors_are_one_line_and_exit_2(model_dir, tmp_path, capsys, suite, checkpoint,
                                                 extra, match):
  data = _data_dir(tmp_path, _HEADQA + [b'{"query": "q", "choices": ["a", "b"], "gold": 0'])
  argv = [a.format(model=model_dir, tmp=tmp_path, data=data) for a in _argv(checkpoint, suite,
                                                                            *extra)]
  assert testing.cli_exit_code(zero_shot.main, argv) == 2
  line = _error_line(capsys)
  assert re.match("error: " + match, line), line


def test_t0_prompts_absent_stop_before_the_restore(tmp_path, capsys, monkeypatch):
  monkeypatch.setitem(sys.modules, "promptsource", None)  # as if not installed
  # The checkpoint does not exist either: the templates are checked first.
  argv = _argv(f"{tmp_path}/nothing", "t0_eval:cb")
  assert testing.cli_exit_code(zero_shot.main, argv) == 2
  line = _error_line(capsys)
  assert re.match(r"error: eval\.zero_shot\.evaluate_checkpoint\.prompt_source = 'promptsource' "
                  r"\(the default for t0_eval\) needs T0's templates", line), line
  assert "make install" in line


def test_templates_a_suite_needs_but_not_loaded_are_a_config_error():
  with pytest.raises(ConfigError, match=r"needs templates \['embedded_cloze'"):
    zero_shot.evaluate(None, None, None, "embedded:cloze", templates={})


def test_non_utf8_data_file_names_file_and_line(tmp_path):
  path = _data_dir(tmp_path, [_HEADQA[0], "caf\u00e9".encode("latin-1")]) / (
      "multiple_choice/headqa.jsonl")
  with pytest.raises(ConfigError, match=r"headqa\.jsonl, line 2: not UTF-8 \(byte 0xe9 at byte 4 "
                                        r"of the line\) \(file .*headqa\.jsonl\)"):
    local.multiple_choice(path)


def test_a_narrowed_suite_without_tasks_lists_the_suites_tasks():
  for spec in ("embedded:", "embedded: ,"):
    with pytest.raises(suites.UnknownSuiteError, match="embedded_cloze, embedded_word_order"):
      suites.get_suite(spec)
  assert [t.name for t in suites.get_suite("embedded:cloze").tasks] == ["embedded_cloze"]
