"""Every data x objective gin layer parses, names its corpus's task, and validates for each architecture."""

import gin
import pytest

import objectives
from experiments.runtime import gin_utils


@gin.configurable
def _objectives_gin_probe(task=None, lengths=None, vocab_size=None):
  # Macros chained through the data file (%TASK_<OBJECTIVE>) resolve when passed to a configurable.
  return task, lengths, vocab_size


@pytest.mark.parametrize("data", ["embedded", "c4", "text"])
@pytest.mark.parametrize("objective", objectives.OBJECTIVES)
def test_stack_objectives_gin_probes_to_the_corpus_task(data, objective):
  gin.clear_config()
  try:
    gin_utils.parse_gin(
        [f"gin_configs/data/{data}.gin", f"gin_configs/objectives/{objective}.gin"],
        ["_objectives_gin_probe.task = %MIXTURE_OR_TASK_NAME", "_objectives_gin_probe.lengths = %TASK_FEATURE_LENGTHS",
         "_objectives_gin_probe.vocab_size = %VOCAB_SIZE"],
        finalize=False,
    )
    task, lengths, vocab_size = _objectives_gin_probe()
    assert task == f"{data}_{objective}" and task in objectives.TASK_NAMES
    assert vocab_size == {"embedded": 4100, "c4": 32128, "text": 4100}[data]
    if data != "embedded":
      return
    for arch in objectives.ARCHITECTURES:
      if objective == "full_lm" and arch == "encoder_decoder":
        with pytest.raises(objectives.ConfigError, match="undefined"):
          objectives.validate(task, arch, lengths, vocab_size=vocab_size)
      else:
        objectives.validate(task, arch, lengths, vocab_size=vocab_size)
  finally:
    gin.clear_config()


def test_every_gin_file_has_a_header_with_a_launch_command(repo_root):
  files = sorted((repo_root / "gin_configs").glob("data/*.gin")) + sorted(
      (repo_root / "gin_configs").glob("objectives/*.gin"))
  assert len(files) == 7
  for f in files:
    text = f.read_text()
    assert text.startswith("# ") and "python -m " in text.split("\n\n")[0], f.name
