"""Optional: T0's own promptsource templates for t0_eval, read from an installed `promptsource`.

promptsource 0.2.3 declares Python < 3.8, so it installs only with
  pip install --no-deps --ignore-requires-python promptsource==0.2.3
Its Python code is never imported (it pulls in `datasets` and streamlit); the template YAML files
are read from the package folder and rendered here with jinja2, keeping the prompts T0 evaluated
with (metadata original_task: true; ANLI 15, CB 15, COPA 12, RTE 10, WSC 10, WiC 10, StoryCloze 5,
Winogrande 5, HellaSwag 4 = 116). Examples carry the Hugging Face field names those templates read
(the loaders add them next to the canonical fields). Opt in with prompt_source='promptsource'
(gin: eval.zero_shot.evaluate_checkpoint.prompt_source), so results never depend silently on
which packages happen to be installed.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import pathlib
from typing import Any, Mapping, Sequence

import jinja2
import jinja2.meta
import yaml

from eval import templates as templates_lib

# Our template key -> promptsource's dataset/subset folder.
T0_EVAL_FOLDERS = {
    "anli": "anli", "cb": "super_glue/cb", "rte": "super_glue/rte",
    "wsc": "super_glue/wsc.fixed", "wic": "super_glue/wic",
    "winogrande": "winogrande/winogrande_xl", "copa": "super_glue/copa",
    "hellaswag": "hellaswag", "story_cloze": "story_cloze/2016",
}
_ENV = jinja2.Environment(undefined=jinja2.StrictUndefined)


class _Loader(yaml.SafeLoader):
  """Reads promptsource's !Template / !TemplateMetadata tags as plain mappings."""


for _tag in ("!Template", "!TemplateMetadata"):
  _Loader.add_constructor(_tag, lambda loader, node: loader.construct_mapping(node, deep=True))


def available() -> bool:
  return importlib.util.find_spec("promptsource") is not None


def templates_dir() -> pathlib.Path:
  spec = importlib.util.find_spec("promptsource")
  if spec is None or not spec.submodule_search_locations:
    raise ImportError("prompt_source='promptsource' needs the promptsource package: pip install "
                      "--no-deps --ignore-requires-python promptsource==0.2.3")
  return pathlib.Path(list(spec.submodule_search_locations)[0]) / "templates"


@dataclasses.dataclass(frozen=True)
class PromptsourceTemplate:
  """A promptsource template with the interface of eval.templates.Template."""

  task: str
  name: str
  jinja: str
  answer_choices: str
  source: str

  @property
  def id(self) -> str:
    return f"{self.task}/{self.name}"

  @property
  def fields(self) -> frozenset[str]:
    names = set()
    for text in (self.jinja, self.answer_choices):
      names |= jinja2.meta.find_undeclared_variables(_ENV.parse(text))
    return frozenset(names - {"answer_choices"})

  def check_fields(self, available: Sequence[str]) -> None:
    missing = sorted(self.fields - set(available))
    if missing:
      raise templates_lib.TemplateError(
          f"promptsource template {self.id} ({self.source}) reads field(s) {missing} that the "
          f"examples lack; available: {sorted(available)}.")

  def render_options(self, example: Mapping[str, Any]) -> tuple[list[str], list[str], int]:
    try:
      choices = [c.strip() for c in _ENV.from_string(self.answer_choices).render(**example)
                 .split("|||")]
      text = _ENV.from_string(self.jinja).render(**example, answer_choices=choices)
    except jinja2.UndefinedError as e:
      raise templates_lib.TemplateError(
          f"promptsource template {self.id} ({self.source}): {e}; example fields: "
          f"{sorted(example)}.") from e
    prompt, _, target = (x.strip() for x in text.partition("|||"))
    if not prompt or target not in choices:
      # T0 drops examples a template does not apply to (e.g. COPA's 'cause'-only prompts).
      raise templates_lib.SkipExample(self.id)
    return [prompt] * len(choices), choices, choices.index(target)

  def render(self, example: Mapping[str, Any]) -> tuple[str, list[str], int]:
    prompts, choices, gold = self.render_options(example)
    return prompts[gold], choices, gold


def load_t0_templates(original_task_only: bool = True) -> dict[str, list[PromptsourceTemplate]]:
  """T0-Eval templates by our template key (anli, cb, ..., story_cloze)."""
  root = templates_dir()
  out = {}
  for key, folder in T0_EVAL_FOLDERS.items():
    path = root / folder / "templates.yaml"
    data = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)  # noqa: S506
    chosen = []
    for entry in data["templates"].values():
      meta = entry.get("metadata") or {}
      if original_task_only and not meta.get("original_task"):
        continue
      if not entry.get("answer_choices"):
        continue
      chosen.append(PromptsourceTemplate(key, entry["name"], entry["jinja"],
                                         entry["answer_choices"], f"promptsource:{folder}"))
    out[key] = sorted(chosen, key=lambda t: t.name)
  return out
