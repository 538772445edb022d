"""The prompt-template engine (objectives/prompts.py, shared by eval and the MTF mixtures): rendering,
partial scoring, strict fields and load-time errors; eval's shipped templates load with it."""

import pytest

from eval import templates as eval_templates
from objectives import prompts as tmpl

_YAML = """
cb:
  - name: infer
    prompt: 'Suppose "{{ premise }}" Can we infer that "{{ hypothesis }}"? Yes, no, or maybe?'
    choices: ["Yes", "No", "Maybe"]
  - name: listed
    prompt: "{{ premise }}"
    choices: options
    gold: answer_index
wino:
  - name: partial
    prompts: context_options
    choices: "[continuation, continuation]"
"""


def test_render_shared_prompt_and_expression_choices():
  t = tmpl.parse_templates(_YAML)
  prompt, choices, gold = t["cb"][0].render({"premise": "P.", "hypothesis": "H", "label": 2})
  assert prompt == 'Suppose "P." Can we infer that "H"? Yes, no, or maybe?'
  assert choices == ["Yes", "No", "Maybe"] and gold == 2
  prompt, choices, gold = t["cb"][1].render({"premise": "Q", "options": ["a", "b"],
                                             "answer_index": 1})
  assert (prompt, choices, gold) == ("Q", ["a", "b"], 1)


def test_partial_scoring_renders_one_prompt_per_option():
  t = tmpl.parse_templates(_YAML)["wino"][0]
  ex = {"context_options": ["A did", "B did"], "continuation": "it.", "label": 1}
  assert t.render_options(ex) == (["A did", "B did"], ["it.", "it."], 1)
  assert t.render(ex)[0] == "B did"  # the gold option's prompt, for training mixtures


def test_missing_field_names_template_and_field():
  t = tmpl.parse_templates(_YAML, source="cb.yaml")["cb"][0]
  with pytest.raises(tmpl.TemplateError, match=r"cb/infer in cb.yaml.*'hypothesis'"):
    t.render({"premise": "P", "label": 0})
  with pytest.raises(tmpl.TemplateError, match=r"\['hypothesis'\]"):
    t.check_fields(["premise", "label"])
  assert t.fields == {"premise", "hypothesis", "label"}


@pytest.mark.parametrize("text,match", [
    ("cb: [{name: a, prompt: x}]", "missing required key 'choices'"),
    ("cb: [{name: a, prompt: x, choices: [y], colour: red}]", "unknown key"),
    ("cb: [{name: a, prompt: '{{ x', choices: [y]}]", "jinja syntax error"),
    ("cb: [{name: a, choices: [y]}]", "exactly one of 'prompt'"),
    ("cb: [{name: a, prompt: x, choices: [y]}, {name: a, prompt: z, choices: [y]}]", "duplicate"),
    ("- just a list", "mapping of task name"),
])
def test_bad_template_files(text, match):
  with pytest.raises(tmpl.TemplateError, match=match):
    tmpl.parse_templates(text)


def test_gold_out_of_range():
  t = tmpl.parse_templates(_YAML)["cb"][0]
  with pytest.raises(tmpl.TemplateError, match="out of range"):
    t.render({"premise": "P", "hypothesis": "H", "label": 3})


def test_eval_shipped_templates_load_with_the_shared_engine():
  builtin = eval_templates.builtin_templates()
  assert builtin and all(isinstance(t, tmpl.Template) for ts in builtin.values() for t in ts)
  assert all(t.source.startswith("eval/templates/") for ts in builtin.values() for t in ts)
