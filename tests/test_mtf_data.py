"""MTF data: embedded families (deterministic, training plays only, disjoint from eval), local
T0-cluster sets, the P3 reader with T0's capped rates, and the seqio mixture."""

import json

import gin
import pytest
import seqio

from eval import suites as eval_suites
from eval import templates as eval_templates
from objectives import plays
from objectives.multitask import families, p3, t0_like, tasks
import objectives.multitask  # noqa: F401  (registers the mixtures)

_PREFIX = 48  # characters of a speech that identify it


def _speech_prefixes(split):
  return {s.text[:_PREFIX] for p in plays.load_plays(split) for s in p.speeches
          if len(s.text) >= _PREFIX}


def _texts(ex):
  """Every speech-like text an example shows, without the 'NAME: ' labels."""
  out = [ex[k] for k in ("speech", "speech_a", "speech_b", "next_speech") if k in ex]
  for k in ("context", "excerpt"):
    if k in ex:
      out += [line.split(": ", 1)[-1] for line in ex[k].split("\n")]
  return out


def test_families_are_deterministic_and_seeded():
  for fam in families.FAMILIES:
    a, b = families.build(fam, max_examples=300), families.build(fam, max_examples=300)
    assert a == b and len(a) == 300, fam
  assert (families.build("speaker_attribution", seed=1, max_examples=50)
          != families.build("speaker_attribution", seed=0, max_examples=50))


def test_families_never_show_heldout_plays():
  heldout_only = _speech_prefixes("heldout") - _speech_prefixes("train")
  assert len(heldout_only) > 1000  # the check below has something to find
  for fam in families.FAMILIES:
    exs = families.build(fam)
    assert {ex["play"] for ex in exs} <= {p.slug for p in plays.load_plays("train")}, fam
    leaked = [t for ex in exs for t in _texts(ex) if t[:_PREFIX] in heldout_only]
    assert not leaked, (fam, leaked[:3])


def test_families_and_wordings_are_disjoint_from_eval():
  assert not set(families.FAMILIES) & set(eval_suites.EMBEDDED_FAMILIES)
  assert not set(families.FAMILIES) & set(eval_suites.task_names("embedded"))
  ours = {t.prompt for ts in tasks.mtf_templates().values() for t in ts}
  theirs = {t.prompt for ts in eval_templates.builtin_templates().values() for t in ts}
  assert not ours & theirs


def test_family_labels_are_true():
  by_prefix = {}
  for p in plays.load_plays("train"):
    for scene_i, scene in enumerate(p.scenes):
      for i, s in enumerate(scene.speeches):
        by_prefix.setdefault((p.slug, s.text[:40]), []).append((s.speaker, scene_i, i, p.genre))
  for ex in families.build("speaker_attribution", max_examples=200):
    speakers = {x[0] for x in by_prefix[(ex["play"], ex["speech"][:40])]}
    assert ex["candidates"][ex["label"]] in speakers
  for ex in families.build("genre", max_examples=200):
    genre = plays.load_plays("train")[[p.slug for p in plays.load_plays("train")].index(
        ex["play"])].genre
    assert ex["candidates"][ex["label"]] == families.GENRE_NAMES[genre]
  for ex in families.build("scene_order", max_examples=200):
    a = by_prefix[(ex["play"], ex["speech_a"][:40])]
    b = by_prefix[(ex["play"], ex["speech_b"][:40])]
    if len(a) == 1 and len(b) == 1 and a[0][1] == b[0][1]:  # unique speeches of one scene
      assert (a[0][2] > b[0][2]) == (ex["label"] == 1)


def test_every_source_renders_with_its_templates(shared_data):
  gin.clear_config()
  gin.parse_config([f"objectives.multitask.mtf_options.local_data_dir = '{shared_data}'",
                    "objectives.multitask.mtf_options.max_examples_per_dataset = 40"])
  try:
    for source in tasks.sources():
      temps = tasks.mtf_templates()[source]
      assert len(temps) >= 3, source
      exs = tasks.examples(source)
      assert len(exs) == 40, source
      inputs, targets = tasks.rendered(source, "train")
      assert len(inputs) == len(targets) == (40 - 2) * len(temps)  # every 20th is validation
      assert all(i.strip() and t.strip() for i, t in zip(inputs, targets))
      val_in, _ = tasks.rendered(source, "validation")
      assert not set(val_in) & set(inputs)
  finally:
    gin.clear_config()


@pytest.mark.data
def test_t0_like_loaders_read_the_published_files(shared_data):
  counts = {"ag_news": 7600, "trec": 5452, "sst2": 6920}
  for name, n in counts.items():
    exs = t0_like.load(name, shared_data)
    assert len(exs) == n
    labels = {ex["label"] for ex in exs}
    assert labels == set(range(len(exs[0]["candidates"]))), name


def test_t0_like_malformed_row_names_file_and_line(tmp_path):
  d = tmp_path / t0_like.SUBDIR
  d.mkdir()
  (d / "sst2_train.txt").write_text("1 good film\n0 bad film\n7 what\n")
  with pytest.raises(t0_like.LocalDataError, match=r"sst2_train.txt: line 3"):
    t0_like.load("sst2", tmp_path)
  with pytest.raises(FileNotFoundError, match="trec_train.txt"):
    t0_like.load("trec", tmp_path)


def _write_jsonl(path, rows):
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_template_rate_is_t0s_mixture_cap():
  # t-zero's d4_train: n when n <= 500,000, else 500,000 // templates (never min(n, cap) / k).
  assert p3.template_rate(10, 4) == 10
  assert p3.template_rate(500_000, 3) == 500_000
  assert p3.template_rate(500_001, 3) == 166_666
  assert p3.template_rate(2_000_000, 1) == 500_000
  with pytest.raises(ValueError, match="template"):
    p3.template_rate(5, 0)


def test_p3_scan_rates_follow_t0s_rule(tmp_path, monkeypatch):
  monkeypatch.setattr(p3, "MAX_EXAMPLES_PER_DATASET", 3)
  rows = lambda tag, n: [{"inputs": f"{tag} {i}", "targets": f"t{i}"} for i in range(n)]
  # ag_news: 2 templates, 4 examples > cap 3 -> 3 // 2 = 1 each (the old min(n, cap) / k gave 1.5).
  _write_jsonl(tmp_path / "ag_news_classify" / "train.jsonl", rows("agA", 4))
  _write_jsonl(tmp_path / "ag_news_which_section" / "train.jsonl", rows("agB", 4))
  # imdb: 2 templates, 2 examples <= cap -> 2 each (the old rule gave 1).
  _write_jsonl(tmp_path / "imdb_a" / "train.jsonl", rows("imA", 2))
  _write_jsonl(tmp_path / "imdb_b" / "train.jsonl", rows("imB", 2))
  # trec: 1 template, 2 examples -> 2; adversarial_qa_dbert: 1 template, 1 example -> 1.
  _write_jsonl(tmp_path / "trec_what_category" / "train.jsonl", rows("trec", 2))
  _write_jsonl(tmp_path / "adversarial_qa_dbert_answer" / "train.jsonl", rows("aqa", 1))
  _write_jsonl(tmp_path / "ag_news_classify_score_eval" / "train.jsonl", rows("no", 5))
  _write_jsonl(tmp_path / "super_glue_rte_x" / "train.jsonl", rows("no", 5))
  scan = p3.scan(tmp_path)
  assert {t: v["rate"] for t, v in scan.items()} == {
      "ag_news_classify": 1, "ag_news_which_section": 1, "imdb_a": 2, "imdb_b": 2,
      "trec_what_category": 2, "adversarial_qa_dbert_answer": 1}
  assert scan["adversarial_qa_dbert_answer"]["dataset"] == "adversarial_qa_dbert"
  seen = [ex["inputs"].decode().split()[0]
          for ex in p3.dataset(tmp_path, "train", seed=1).take(360).as_numpy_iterator()]
  assert set(seen) == {"agA", "agB", "imA", "imB", "trec", "aqa"}
  imdb = (seen.count("imA") + seen.count("imB")) / len(seen)
  assert abs(imdb - 4 / 9) < 0.1 and abs(seen.count("trec") / len(seen) - 2 / 9) < 0.08


def test_p3_bad_inputs(tmp_path):
  with pytest.raises(FileNotFoundError, match="not a folder"):
    p3.scan(tmp_path / "absent")
  with pytest.raises(FileNotFoundError, match="No T0 training prompts"):
    p3.scan(tmp_path)
  (tmp_path / "trec_x").mkdir()
  (tmp_path / "trec_x" / "train.jsonl").write_text('{"inputs": "a", "targets": "b"}\nnot json\n')
  with pytest.raises(Exception, match="line 2"):
    list(p3.dataset(tmp_path, "train").take(5).as_numpy_iterator())


def test_embedded_mtf_mixture_is_deterministic_and_decodes_to_prompts(shared_data):
  gin.clear_config()
  gin.parse_config([f"objectives.multitask.mtf_options.local_data_dir = '{shared_data}'",
                    "objectives.multitask.mtf_options.max_examples_per_dataset = 30"])
  try:
    mix = seqio.get_mixture_or_task("embedded_mtf")
    rates = {t.name: mix.get_rate(t) for t in mix.tasks}
    # T0's rule per template (30 examples <= the cap: rate 30 each), times the templates of a task.
    k = {s: len(tasks.mtf_templates()[s]) for s in tasks.sources()}
    assert rates == {tasks.task_name(s): 30.0 * k[s] for s in tasks.sources()}
    assert min(k.values()) > 1  # so the old rule (30 per task) fails here
    take = lambda: list(mix.get_dataset({"inputs": 256, "targets": 64}, split="train", seed=3,
                                        shuffle=True).take(12).as_numpy_iterator())
    a, b = take(), take()
    assert all((x["inputs"] == y["inputs"]).all() for x, y in zip(a, b))
    vocab = mix.output_features["inputs"].vocabulary
    rendered = {i for s in tasks.sources() for i in tasks.rendered(s, "train")[0]}
    for ex in a:
      # T0's promptsource tasks: no EOS after the prompt, one EOS closing the target.
      assert vocab.eos_id not in ex["inputs"].tolist()
      assert ex["targets"][-1] == vocab.eos_id and ex["targets"].tolist().count(vocab.eos_id) == 1
      text = vocab.decode(ex["inputs"].tolist())
      assert any(r.split()[:4] == text.split()[:4] for r in rendered)
  finally:
    gin.clear_config()


def test_absent_local_sets_get_rate_zero():
  gin.clear_config()
  gin.parse_config(["objectives.multitask.mtf_options.max_examples_per_dataset = 20"])
  try:
    mix = seqio.get_mixture_or_task("embedded_mtf")
    rates = {t.name: mix.get_rate(t) for t in mix.tasks}
    assert all(rates[tasks.task_name(s)] == 0 for s in t0_like.DATASETS)
    assert all(rates[tasks.task_name(s)] == 20 * len(tasks.mtf_templates()[s])
               for s in families.FAMILIES)
  finally:
    gin.clear_config()


def test_t0_train_task_reads_a_local_p3_folder(tmp_path):
  _write_jsonl(tmp_path / "trec_which_category" / "train.jsonl",
               [{"inputs": f"What is {i}?", "targets": "a number"} for i in range(5)])
  _write_jsonl(tmp_path / "imdb_sentiment" / "train.jsonl",
               [{"inputs": f"Film {i} was great.", "targets": "positive"} for i in range(5)])
  gin.clear_config()
  # T5's vocabulary file (the c4 corpus's default) is not reachable here: the run's vocabulary, the
  # embedded one, replaces it.
  gin.parse_config([f"objectives.multitask.mtf_options.p3_dir = '{tmp_path}'",
                    "objectives.corpus_vocabulary.vocabulary = "
                    "@objectives.vocab.embedded_vocabulary()"])
  try:
    task = seqio.get_mixture_or_task("t0_train")
    exs = list(task.get_dataset({"inputs": 32, "targets": 8}, split="train", seed=0,
                                shuffle=False).take(20).as_numpy_iterator())
    vocab = task.output_features["targets"].vocabulary
    targets = {vocab.decode(ex["targets"][:-1].tolist()) for ex in exs}
    assert targets == {"a number", "positive"}
    assert all(ex["targets"][-1] == vocab.eos_id for ex in exs)
    assert not any(vocab.eos_id in ex["inputs"].tolist() for ex in exs)
    inputs = {vocab.decode(ex["inputs"].tolist()) for ex in exs}
    assert "What is 3?" in inputs and "Film 2 was great." in inputs
  finally:
    gin.clear_config()
  gin.parse_config(["objectives.multitask.mtf_options.p3_dir = None"])
  with pytest.raises(ValueError, match="p3_dir"):
    seqio.get_mixture_or_task("t0_train").get_dataset({"inputs": 32, "targets": 8})
  gin.clear_config()
