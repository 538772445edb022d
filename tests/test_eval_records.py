"""Per-example records beside results.json: one row per (task, prompt, example), consistent with
the aggregates, stable ids across evaluations, and a failed evaluation never erases them."""

import numpy as np
import pytest

from eval import records
from eval import zero_shot
from tests.test_eval_aggregate import StubScorer, _LABELS3, _TEMPLATES, fake_suite  # noqa: F401


def test_records_reproduce_the_per_prompt_accuracies(fake_suite, tmp_path):  # noqa: F811
  r = zero_shot.evaluate(None, None, None, fake_suite, output_dir=tmp_path, scorer=StubScorer(),
                         templates=_TEMPLATES)
  df = records.read(tmp_path)
  assert (tmp_path / records.RECORDS_FILE).is_file()
  for task, entry in r["tasks"].items():
    for prompt, m in entry["prompts"].items():
      rows = df[(df.task == task) & (df.prompt == prompt)]
      assert len(rows) == m["n"]
      assert rows.credit.mean() == pytest.approx(m["accuracy"])
  plain = df[(df.task == "three") & (df.prompt == "plain")].sort_values("id")
  assert list(plain.id) == list(range(len(_LABELS3)))
  assert list(plain.gold) == _LABELS3
  assert set(plain.chosen) == {1} and set(plain.chosen_text) == {"No"}  # "No" scores best
  assert plain.scores.iloc[0] == [-3.0, -1.0, -2.0]
  flat = df[(df.task == "three") & (df.prompt == "flat")]
  assert np.allclose(flat.credit, 1 / 3) and set(flat.chosen) == {0}  # a tie: first, shared
  greedy = df[df.task == "greedy"].sort_values("id")
  assert list(greedy.chosen) == [1, -1] and list(greedy.credit) == [1.0, 0.0]
  # The same data and prompts give the same ids and keys in another evaluation (another cell).
  again = tmp_path / "again"
  zero_shot.evaluate(None, None, None, fake_suite, output_dir=again, scorer=StubScorer(),
                     templates=_TEMPLATES)
  other = records.read(again)
  assert other[["task", "prompt", "id", "key"]].equals(df[["task", "prompt", "id", "key"]])


def test_ids_are_positions_in_the_data_set_even_when_a_prompt_skips_examples():
  from eval import aggregation
  book = records.Recorder()
  exs = [aggregation.RankedExample(("p", "p"), ("a", "b"), 0, example_id=i) for i in (0, 2, 5)]
  book.add("t", "p", exs, [[0.0, -1.0]] * 3)
  assert [r["id"] for r in book.rows] == [0, 2, 5]


def test_nothing_scored_keeps_the_earlier_records(tmp_path):
  (tmp_path / records.RECORDS_FILE).write_bytes(b"old")
  assert records.Recorder().write(tmp_path) is None
  assert (tmp_path / records.RECORDS_FILE).read_bytes() == b"old"
  with pytest.raises(FileNotFoundError, match="records"):
    records.read(tmp_path / "nowhere")


def test_acc_all_groups_fold_into_one_row_per_question(tmp_path):
  """MultiRC's statistics resample questions: folded records give the acc_all the aggregate gives."""
  from eval import aggregation
  from experiments import stats
  # Two questions of two answers and one of three; each answer is a yes/no choice.
  groups = ["q1", "q1", "q2", "q2", "q3", "q3", "q3"]
  golds = [0, 1, 0, 0, 1, 1, 0]
  scores = [[0.0, -1.0], [-1.0, 0.0],  # q1: both right
            [0.0, -1.0], [-1.0, 0.0],  # q2: second wrong
            [-1.0, 0.0], [0.0, 0.0], [0.0, -1.0]]  # q3: a tie gives half credit
  exs = [aggregation.RankedExample(("p", "p"), ("yes", "no"), g, group=q, example_id=i)
         for i, (g, q) in enumerate(zip(golds, groups))]
  book = records.Recorder()
  book.add("multirc", "lm_eval", exs, scores)
  book.write(tmp_path)
  df = records.read(tmp_path)
  assert list(df.group) == groups
  folded = records.by_group(df)
  assert sorted(folded.id) == [0, 2, 4] and set(folded.kind) == {"acc_all"}
  expected = aggregation.prompt_metrics(exs, scores)["acc_all"]
  assert expected == pytest.approx((1 + 0 + 0.5) / 3)
  assert folded.credit.mean() == pytest.approx(expected)
  o = stats.outcomes(folded.task, folded.prompt, folded.id, folded.credit, folded.key)
  assert o.credit[0].shape == (1, 3)  # three questions, not seven answers
  plain = df.drop(columns="group")  # records without groups pass unchanged
  assert records.by_group(plain).equals(plain)
