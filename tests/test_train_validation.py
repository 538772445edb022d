"""In-loop validation (EVAL_PERIOD / EVAL_STEPS): eval/ metrics equal a separate evaluation of the
same step's checkpoint; the batches come from the validation split; bad settings fail early."""

import json

import gin
import numpy as np
import pytest
import seqio

import objectives
from experiments import metrics as metrics_lib
from experiments import testing
from experiments import train
from experiments import trainer as trainer_lib
from experiments import validation
from experiments.runtime import errors
from experiments.runtime import checkpoints

_EVAL = ["EVAL_PERIOD = 3", "EVAL_STEPS = 2"]


def _no_compile(monkeypatch):
  def fail(*unused, **unused_kw):
    raise AssertionError("compiled before the configuration was checked")
  monkeypatch.setattr(trainer_lib.StepBuilder, "compile", fail)


@pytest.mark.slow
@pytest.mark.parametrize("arch,objective,micro", [
    ("causal_decoder", "full_lm", 1),
    ("encoder_decoder", "span_corruption", 2),  # microbatched evaluation
])
def test_in_loop_validation_equals_a_separate_evaluation_of_the_checkpoint(
    tmp_path, arch, objective, micro):
  files, bindings = testing.tiny_stack(
      arch, objective, tmp_path, 7, batch_size=4, log_period=3, checkpoint_period=3,
      extra=[*_EVAL, f"experiments.train.train.num_microbatches = {micro}"])
  train.run(files, bindings)
  rows = metrics_lib.read_metrics(tmp_path)
  evals = {r["step"]: r for r in rows if "eval/loss" in r}
  assert sorted(evals) == [3, 6, 7]  # every EVAL_PERIOD steps and the last step
  assert all("loss" not in r for r in evals.values())  # own records, beside the train ones
  for step in (3, 7):
    separate = validation.evaluate_loss(files, bindings,
                                        checkpoint=tmp_path / "checkpoints" / str(step))
    assert separate["step"] == step
    logged = {k: v for k, v in evals[step].items() if k not in ("step", "eval/seconds")}
    assert logged == {k: v for k, v in separate.items() if k not in ("step", "eval/seconds")}
  row = evals[7]
  assert row["eval/num_batches"] == 2 and row["eval/num_tokens"] > 0
  assert row["eval/loss_per_token"] == pytest.approx(
      2 * row["eval/loss"] / row["eval/num_tokens"], rel=1e-12)
  assert row["eval/cross_ent_per_token"] < row["eval/loss_per_token"]  # z-loss is not in nats
  assert 0.0 <= row["eval/accuracy"] <= 1.0
  assert evals[3]["eval/loss"] != evals[7]["eval/loss"]  # the parameters moved


def test_validation_batches_are_fixed_and_from_the_held_out_plays():
  converter = seqio.DecoderFeatureConverter(pack=True)
  first = validation.draw_batches("embedded_full_lm", {"targets": 64}, converter, 2, 3)
  again = validation.draw_batches("embedded_full_lm", {"targets": 64}, converter, 2, 3)
  assert len(first) == 3
  for a, b in zip(first, again):
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
  vocab = objectives.corpus_vocabulary("embedded")
  norm = lambda s: " ".join(s.split())  # noqa: E731
  held_out = norm(" ".join(objectives.corpora.embedded_documents("validation")))
  trained = norm(" ".join(objectives.corpora.embedded_documents("train")))
  grams = []  # 5-word runs of each packed segment (its first word may be cut)
  for batch in first:
    for row, segments in zip(batch["decoder_target_tokens"], batch["decoder_segment_ids"]):
      for s in set(segments.tolist()) - {0}:
        words = norm(vocab.decode([int(t) for t in row[segments == s]])).split()
        grams += [" ".join(words[i:i + 5]) for i in range(1, len(words) - 5)]
  assert len(grams) > 50
  assert all(g in held_out for g in grams) and not any(g in trained for g in grams)


@pytest.mark.parametrize("setting,message", [
    ("EVAL_STEPS = 0", r"EVAL_STEPS \(experiments.train.train.eval_steps\) = 0; expected a "
                       r"positive integer"),
    ("EVAL_PERIOD = 0", r"EVAL_PERIOD \(experiments.train.train.eval_period\) = 0"),
    ("EVAL_PERIOD = -5", r"EVAL_PERIOD .* = -5"),
])
def test_bad_eval_settings_are_named_before_compilation(tmp_path, monkeypatch, setting, message):
  _no_compile(monkeypatch)
  files, bindings = testing.tiny_stack("causal_decoder", "full_lm", tmp_path / "run", 4,
                                       extra=[*_EVAL, setting])
  with pytest.raises(errors.ConfigError, match=message):
    train.run(files, bindings)
  assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_text_corpus_without_validation_data_is_named_before_compilation(tmp_path, monkeypatch):
  _no_compile(monkeypatch)
  corpus = tmp_path / "corpus"
  corpus.mkdir()
  for i in range(4):
    (corpus / f"{i}.txt").write_text(f"document {i}: " + "words and more words " * 60, "utf-8")
  files = ["gin_configs/arch/causal_decoder.gin", "gin_configs/data/text.gin",
           "gin_configs/objectives/full_lm.gin", "gin_configs/runs/pretrain.gin",
           "gin_configs/local_tiny.gin"]
  bindings = [f"MODEL_DIR = '{tmp_path / 'run'}'", "TRAIN_STEPS = 4", *_EVAL,
              f"objectives.corpora.text_files.train_files = ['{corpus}/*.txt']"]
  with pytest.raises(validation.ValidationDataError,
                     match=r"EVAL_PERIOD is set.*'validation' split of task 'text_full_lm'.*"
                           r"validation_files is empty.*validation_share"):
    train.run(files, bindings)
  assert not checkpoints.Checkpointer(tmp_path / "run").all_steps()
  # A held-out share gives the split: 1 of the 4 documents (share 0.25), left out of training.
  with gin.unlock_config():
    gin.bind_parameter("objectives.corpora.text_files.validation_share", 0.25)
  batches = validation.draw_batches("text_full_lm", {"targets": 64},
                                    seqio.DecoderFeatureConverter(pack=True), 2, 2)
  assert len(batches) == 2 and all(b["decoder_loss_weights"].sum() > 0 for b in batches)
  assert len(objectives.corpora.text_documents("train")) == 3
  gin.clear_config()


@pytest.mark.slow
def test_validate_cli_prints_the_checkpoint_metrics(tmp_path, capsys):
  files, bindings = testing.tiny_stack("causal_decoder", "full_lm", tmp_path, 3,
                                       checkpoint_period=3, extra=_EVAL)
  train.run(files, bindings)
  from experiments import validate  # pylint: disable=g-import-not-at-top
  capsys.readouterr()
  assert testing.cli_exit_code(validate.main, testing.as_flags(files, bindings)) == 0
  printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
  logged = [r for r in metrics_lib.read_metrics(tmp_path) if "eval/loss" in r][-1]
  assert printed["step"] == 3 and printed["eval/loss"] == logged["eval/loss"]
  assert testing.cli_exit_code(validate.main, [*testing.as_flags(files, bindings),
                                               "--eval_step=2"]) == 2
  assert "did you mean --eval_steps" in capsys.readouterr().err
