"""T0's own prompts (promptsource 0.2.3, installed by the Makefile): the default for t0_eval, read
as pinned, rendered from the fields the loaders give, and a clear error when they cannot be read."""

import collections
import inspect
import json
import sys

import pytest

from eval import loaders
from eval import promptsource_bridge as bridge
from eval import suites
from eval import templates as tmpl
from eval import zero_shot
from eval.loaders import local
from eval.loaders import tfds_loaders
from experiments.runtime.errors import ConfigError

# T0-Eval's prompts per dataset (Sanh et al. 2022; the paper's T0-Eval): 116 in all.
_COUNTS = {"anli": 15, "cb": 15, "copa": 12, "rte": 10, "wsc": 10, "wic": 10, "story_cloze": 5,
           "winogrande": 5, "hellaswag": 4}

# One raw TFDS example per T0-Eval data set, as the TFDS builders give them.
_RAW = {
    "anli": {"context": b"The sky was grey all day.", "hypothesis": b"It was sunny.", "label": 2},
    "nli": {"premise": b"A dog barked loudly.", "hypothesis": b"An animal made noise.",
            "label": 0},
    "wsc": {"text": b"Mark told Pete many lies about himself, which Pete included in his book.",
            "span1_text": b"Mark", "span2_text": b"himself", "span1_index": 0,
            "span2_index": 6, "label": 1},
    "wic": {"word": b"bank", "sentence1": b"He sat on the bank.",
            "sentence2": b"She robbed the bank.", "start1": 14, "end1": 18, "label": 0},
    "winogrande": {"sentence": b"Sarah was a better surgeon than Maria so _ got the hard cases.",
                   "option1": b"Sarah", "option2": b"Maria", "label": 0},
    "copa": {"premise": b"The man turned on the faucet.", "choice1": b"The toilet filled.",
             "choice2": b"Water flowed from the spout.", "question": b"effect", "label": 1},
    "hellaswag": {"activity_label": b"Removing ice from car",
                  "context": b"A man scrapes the window. Then, he lifts the wiper. then",
                  "endings": [b"a", b"b", b"c", b"d"], "label": 3},
    "story_cloze": {"context": b"Tom was hungry. He opened the fridge. It was empty. He sighed.",
                    "endings": [b"He went shopping.", b"He ate a feast."], "label": 0},
}


def _t0_datasets():
  """(data set, template key, TFDS converter) of every T0-Eval task."""
  return [(t.dataset, t.templates, loaders.DATASETS[t.dataset].tfds[2])
          for t in suites.get_suite("t0_eval").tasks]


def test_installed_templates_are_t0_evals_116_prompts():
  assert bridge.available() and bridge.version() == bridge.VERSION
  t = bridge.load_t0_templates()
  assert {k: len(v) for k, v in t.items()} == _COUNTS
  per_task = {task.name: len(t[task.templates]) for task in suites.get_suite("t0_eval").tasks}
  assert per_task == {"anli_r1": 15, "anli_r2": 15, "anli_r3": 15, **{
      k: n for k, n in _COUNTS.items() if k != "anli"}}
  assert sum(per_task.values()) == 116
  assert all(x.source.startswith("promptsource:") for v in t.values() for x in v)


def test_every_t0_template_renders_from_the_loaders_fields():
  templates = bridge.load_t0_templates()
  for dataset, key, converter in _t0_datasets():
    raw = _RAW["anli" if key == "anli" else "nli" if key in ("cb", "rte") else key]
    examples = list(tfds_loaders.CONVERTERS[converter](raw))
    if key == "copa":  # half of COPA's prompts ask for the cause only
      examples += list(tfds_loaders.CONVERTERS[converter]({**raw, "question": b"cause"}))
    rendered = collections.Counter()
    for t in templates[key]:
      t.check_fields(sorted(examples[0]))
      for ex in examples:
        try:
          prompts, choices, gold = t.render_options(ex)
        except tmpl.SkipExample:
          continue
        assert prompts[0] and len(set(prompts)) == 1 and len(choices) >= 2, (dataset, t.name)
        assert gold == ex["label"], (dataset, t.name)
        rendered[t.name] += 1
    assert set(rendered) == {t.name for t in templates[key]}, dataset  # each applies to some


def test_hellaswag_and_story_cloze_get_hugging_face_fields():
  hs = next(tfds_loaders.CONVERTERS["hellaswag"](_RAW["hellaswag"]))
  assert (hs["ctx_a"], hs["ctx_b"]) == ("A man scrapes the window. Then, he lifts the wiper.",
                                        "then")
  assert hs["ctx"] == "A man scrapes the window. Then, he lifts the wiper. then"
  assert hs["query"].startswith("Removing ice from car: ") and hs["endings"] == list("abcd")
  done = local.hellaswag_example("Skiing", "A man skis down a slope.", list("abcd"), 0)
  assert (done["ctx_a"], done["ctx_b"]) == ("A man skis down a slope.", "")
  sc = next(tfds_loaders.CONVERTERS["story_cloze"](_RAW["story_cloze"]))
  assert [sc[f"input_sentence_{i}"] for i in range(1, 5)] == [
      "Tom was hungry.", "He opened the fridge.", "It was empty.", "He sighed."]
  assert (sc["sentence_quiz1"], sc["answer_right_ending"], sc["label"]) == (
      "He went shopping.", 1, 0)


def test_local_hellaswag_and_story_cloze_files_render_t0_prompts(tmp_path):
  mc = tmp_path / "multiple_choice"
  mc.mkdir()
  (mc / "hellaswag.jsonl").write_text(json.dumps(
      {"query": "Removing ice from car: A man scrapes the window. Then he", "gold": 1,
       "choices": ["a", "b", "c", "d"]}) + "\n")
  (mc / "story_cloze.jsonl").write_text(json.dumps(
      {"query": "Tom was hungry. He opened the fridge. It was empty. He sighed.", "gold": 1,
       "choices": ["He went shopping.", "He ate a feast."]}) + "\n")
  (hs,) = loaders.load_dataset("hellaswag", local_data_dir=tmp_path)
  assert (hs["activity_label"], hs["ctx_a"], hs["ctx_b"]) == (
      "Removing ice from car", "A man scrapes the window.", "then he")  # lm-eval capitalised it
  assert hs["query"] == "Removing ice from car: A man scrapes the window. Then he"
  (sc,) = loaders.load_dataset("story_cloze", local_data_dir=tmp_path)
  assert sc["input_sentence_4"] == "He sighed." and sc["answer_right_ending"] == 2
  templates = bridge.load_t0_templates(["hellaswag", "story_cloze"])
  for ex, key in ((hs, "hellaswag"), (sc, "story_cloze")):
    for t in templates[key]:
      assert t.render_options(ex)[2] == ex["label"], t.name


def test_randomised_prompt_is_the_same_for_every_model():
  (t,) = [x for x in bridge.load_t0_templates(["hellaswag"])["hellaswag"]
          if x.name == "Randomized prompts template"]
  exs = [dict(next(tfds_loaders.CONVERTERS["hellaswag"](_RAW["hellaswag"])), ctx=f"Story {i}.")
         for i in range(12)]
  first = [t.render(ex)[0] for ex in exs]
  assert first == [t.render(ex)[0] for ex in exs]  # seeded per example: reproducible
  assert len({p.splitlines()[0] for p in first}) > 1  # and still varied across examples


def test_default_prompt_source_is_promptsource():
  params = inspect.signature(zero_shot.evaluate_checkpoint).parameters
  assert params["prompt_source"].default == "promptsource"
  assert inspect.signature(zero_shot.evaluate).parameters["prompt_source"].default == (
      "promptsource")
  t0 = zero_shot.get_templates(suite=suites.get_suite("t0_eval"))
  assert {k: len(t0[k]) for k in _COUNTS} == _COUNTS
  builtin = zero_shot.get_templates("builtin", suites.get_suite("t0_eval"))
  assert not any(isinstance(t, bridge.PromptsourceTemplate) for k in _COUNTS for t in builtin[k])
  assert len(builtin["cb"]) == 5  # this project's own prompts stay available
  with pytest.raises(ConfigError, match="'builtin' or 'promptsource'"):
    zero_shot.get_templates("t0")


def test_absent_package_is_a_config_error_only_where_t0_prompts_are_needed(monkeypatch):
  monkeypatch.setitem(sys.modules, "promptsource", None)  # find_spec: not installed
  assert not bridge.available()
  with pytest.raises(bridge.PromptsourceError, match=r"promptsource package, which is not "
                                                     r"installed: run `make install`"):
    zero_shot.get_templates("promptsource", suites.get_suite("t0_eval:cb"))
  assert issubclass(bridge.PromptsourceError, ConfigError)
  # The other suites keep their own templates and never need the package.
  embedded = zero_shot.get_templates("promptsource", suites.get_suite("embedded"))
  assert len(embedded["embedded_cloze"]) == 3
  assert len(zero_shot.get_templates("builtin", suites.get_suite("t0_eval"))["cb"]) == 5


# -- a stand-in package folder in promptsource's YAML format ------------------------------------

_CB_YAML = """dataset: super_glue
subset: cb
templates:
  aaaa: !Template
    answer_choices: Yes ||| No ||| Maybe
    id: aaaa
    jinja: '{{premise}} So, "{{hypothesis}}"? ||| {{ answer_choices[label] }}'
    metadata: !TemplateMetadata
      original_task: true
    name: so
  bbbb: !Template
    answer_choices: null
    id: bbbb
    jinja: '{{premise}} ||| {{hypothesis}}'
    metadata: !TemplateMetadata
      original_task: false
    name: generate
"""
_COPA_YAML = """dataset: super_glue
subset: copa
templates:
  cccc: !Template
    answer_choices: '{{choice1}} ||| {{choice2}}'
    id: cccc
    jinja: '{% if question == "effect" %}{{ premise }} So what happened? ||| {{ answer_choices[label] }}{% endif %}'
    metadata: !TemplateMetadata
      original_task: true
    name: effect only
"""


@pytest.fixture
def fake_promptsource(tmp_path, monkeypatch):
  pkg = tmp_path / "promptsource"
  for key, folder in bridge.T0_EVAL_FOLDERS.items():
    path = pkg / "templates" / folder / "templates.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text({"cb": _CB_YAML, "copa": _COPA_YAML}.get(key, "templates: {}\n"))
  (pkg / "__init__.py").write_text("")
  monkeypatch.syspath_prepend(str(tmp_path))
  monkeypatch.delitem(sys.modules, "promptsource", raising=False)
  monkeypatch.setattr(bridge, "T0_EVAL_PROMPTS", {
      **{k: () for k in bridge.T0_EVAL_FOLDERS}, "cb": ("so",), "copa": ("effect only",)})
  return pkg


def test_reads_the_pinned_original_task_templates(fake_promptsource):
  t = bridge.load_t0_templates()
  assert [x.name for x in t["cb"]] == ["so"]  # the non-original-task template is left out
  ex = {"premise": "P.", "hypothesis": "H", "label": 2}
  assert t["cb"][0].render(ex) == ('P. So, "H"?', ["Yes", "No", "Maybe"], 2)
  assert t["cb"][0].fields == {"premise", "hypothesis", "label"}
  # promptsource's apply: '|||' inside a field does not split prompt from target; long fields cut.
  piped = t["cb"][0].render({**ex, "premise": "a ||| b " + "word " * 600})[0]
  assert piped.startswith("a ||| b word") and 2048 < len(piped) < 2048 + 20
  assert piped.endswith('word... So, "H"?')


def test_template_that_does_not_apply_skips_the_example(fake_promptsource):
  (copa,) = bridge.load_t0_templates()["copa"]
  base = {"premise": "It rained.", "choice1": "A", "choice2": "B", "label": 1}
  assert copa.render_options({**base, "question": "effect"})[2] == 1
  with pytest.raises(tmpl.SkipExample):
    copa.render_options({**base, "question": "cause"})
  with pytest.raises(tmpl.TemplateError, match="choice2"):
    copa.check_fields(["premise", "choice1", "question", "label"])


@pytest.mark.parametrize("change,match", [
    (lambda pkg, pins: pins.update(cb=("so", "must be true")),
     r"super_glue/cb/templates.yaml: T0-Eval's 2 cb prompts .* do not match: pinned prompt\(s\) "
     r"\['must be true'\] missing"),
    (lambda pkg, pins: pins.update(cb=()), r"original-task prompt\(s\) \['so'\] not in the pin"),
    (lambda pkg, pins: (pkg / "templates/super_glue/cb/templates.yaml").unlink(),
     r"has no templates for cb: super_glue/cb/templates.yaml is missing"),
])
def test_unknown_prompt_name_or_missing_folder_is_a_config_error(fake_promptsource, change,
                                                                 match):
  pins = dict(bridge.T0_EVAL_PROMPTS)
  change(fake_promptsource, pins)
  bridge.T0_EVAL_PROMPTS = pins  # restored by the fixture's monkeypatch
  with pytest.raises(bridge.PromptsourceError, match=match):
    zero_shot.get_templates("promptsource", suites.get_suite("t0_eval:cb"))


@pytest.mark.data
def test_t0_eval_on_shared_data_uses_t0_prompts_and_records_them(shared_data, tmp_path):
  class Recorder:
    calls = []

    def score(self, pairs):
      self.calls.extend(pairs)
      return [0.0] * len(pairs)

  scorer = Recorder()
  r = zero_shot.evaluate(None, None, None, "t0_eval:cb,rte,copa,winogrande", tmp_path,
                         shared_data, scorer=scorer, max_examples=20)
  p = r["protocol"]
  assert p["prompt_source"] == "promptsource" and p["promptsource_version"] == "0.2.3"
  assert p["prompts_per_task"] == {"cb": 15, "rte": 10, "copa": 12, "winogrande": 5}
  assert (p["prompt_eos"], p["option_eos"]) == (False, True) and "add_eos=False" in p["eos_rule"]
  assert all(pair[2:] == (False, True) for pair in scorer.calls)
  assert any("Valence was helping" in pair[0] for pair in scorer.calls)
  on_disk = json.loads((tmp_path / "results.json").read_text())["protocol"]
  assert on_disk["prompts_per_task"]["cb"] == 15 and on_disk["promptsource_version"] == "0.2.3"
  assert set(r["tasks"]["copa"]["prompts"]) == set(bridge.T0_EVAL_PROMPTS["copa"])


def test_grid_preflight_stops_a_t0_eval_grid_without_promptsource(tmp_path, monkeypatch):
  from experiments import grid  # pylint: disable=g-import-not-at-top
  from experiments import grid_plan  # pylint: disable=g-import-not-at-top
  from experiments import grid_spec  # pylint: disable=g-import-not-at-top
  gin_file = tmp_path / "g.gin"
  gin_file.write_text(f"""
import experiments.grid_spec
GRID_DIR = '{tmp_path / 'out'}'
experiments.grid_spec.grid_definition.name = 't0'
experiments.grid_spec.grid_definition.gin_files = ['gin_configs/data/embedded.gin',
                                                   'gin_configs/local_tiny.gin']
experiments.grid_spec.grid_definition.pretrain_steps = 2
experiments.grid_spec.grid_definition.batch_size = 2
experiments.grid_spec.grid_definition.feature_lengths = {{'full_lm': {{'targets': 32}}}}
experiments.grid_spec.grid_definition.mtf_steps = 2
experiments.grid_spec.grid_definition.mtf_batch_size = 2
experiments.grid_spec.grid_definition.mtf_feature_lengths = {{'inputs': 48, 'targets': 16}}
experiments.grid_spec.grid_definition.suites = ['t0_eval']
experiments.grid_spec.grid_definition.cells = [
    {{'name': 'A', 'arch': 'causal_decoder', 'objective': 'full_lm',
      'stages': ['pretrain', 'eval']}}]
""")
  g, _ = grid_spec.load([str(gin_file)])
  stages = grid_plan.plan(g, str(tmp_path / "out"))
  assert not grid.preflight(stages)
  monkeypatch.setitem(sys.modules, "promptsource", None)
  with pytest.raises(grid.GridError, match=r"eval_pretrain\.t0_eval: .*needs T0's templates"):
    grid.preflight(stages)
