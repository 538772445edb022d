"""The optional promptsource bridge, on a stand-in package folder in promptsource's YAML format."""

import sys

import pytest

from eval import promptsource_bridge as bridge
from eval import templates as tmpl
from eval import zero_shot

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
  for folder, text in bridge.T0_EVAL_FOLDERS.items():
    path = pkg / "templates" / text / "templates.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text({"cb": _CB_YAML, "copa": _COPA_YAML}.get(folder, "templates: {}\n"))
  (pkg / "__init__.py").write_text("")
  monkeypatch.syspath_prepend(str(tmp_path))
  monkeypatch.delitem(sys.modules, "promptsource", raising=False)
  return pkg


def test_reads_original_task_templates(fake_promptsource):
  assert bridge.available()
  t = bridge.load_t0_templates()
  assert [x.name for x in t["cb"]] == ["so"]  # the non-original-task template is left out
  ex = {"premise": "P.", "hypothesis": "H", "label": 2}
  assert t["cb"][0].render(ex) == ('P. So, "H"?', ["Yes", "No", "Maybe"], 2)
  assert t["cb"][0].fields == {"premise", "hypothesis", "label"}


def test_template_that_does_not_apply_skips_the_example(fake_promptsource):
  (copa,) = bridge.load_t0_templates()["copa"]
  base = {"premise": "It rained.", "choice1": "A", "choice2": "B", "label": 1}
  assert copa.render_options({**base, "question": "effect"})[2] == 1
  with pytest.raises(tmpl.SkipExample):
    copa.render_options({**base, "question": "cause"})
  with pytest.raises(tmpl.TemplateError, match="choice2"):
    copa.check_fields(["premise", "choice1", "question", "label"])


def test_prompt_source_choice(fake_promptsource):
  assert len(zero_shot.get_templates("promptsource")["cb"]) == 1
  assert len(zero_shot.get_templates("builtin")["cb"]) == 5
  with pytest.raises(ValueError, match="'builtin' or 'promptsource'"):
    zero_shot.get_templates("t0")
