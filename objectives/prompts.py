"""Prompt templates: YAML files of jinja2 prompts that turn a dataset example into a ranked choice.

The engine both sides use: objectives/multitask renders its training mixtures with it, and eval/
(eval/templates.py, its shipped YAML; eval/zero_shot.py) scores with it. It lives here, below eval,
so that the import runs one way (eval -> objectives).

A template file maps task names to lists of templates:

  cb:
    - name: can_we_infer
      prompt: 'Suppose "{{ premise }}" Can we infer that "{{ hypothesis }}"? Yes, no, or maybe?'
      choices: ["Yes", "No", "Maybe"]     # a list of jinja strings, one per option, or
                                          # a jinja expression giving the list: choices: options
      gold: label                         # a jinja expression giving the gold index (default label)

Partial scoring (Winogrande's protocol: the option sits in the context and the shared continuation
is scored) uses `prompts:` (a jinja expression giving one prompt per option) instead of `prompt:`.
`render` then returns the gold option's prompt, so a training mixture can still use inputs = prompt
and targets = the gold choice; rank classification uses `render_options`.

Fields are resolved strictly: a template naming a field the example lacks raises TemplateError
naming the template, its file and the field, never an empty string silently.
"""

from __future__ import annotations

import dataclasses
import pathlib
import re
from typing import Any, Mapping, Sequence

import jinja2
import jinja2.meta
import yaml

_ENV = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=False)
_UNDEFINED_RE = re.compile(r"has no attribute '([^']+)'|'([^']+)' is undefined")
_REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
_KNOWN_KEYS = {"name", "prompt", "prompts", "choices", "gold", "metadata"}


class TemplateError(ValueError):
  """A template that cannot be loaded or cannot render an example."""


class SkipExample(Exception):
  """Raised by a template that does not apply to an example (T0 drops those examples)."""


def _field_from(err: Exception) -> str:
  m = _UNDEFINED_RE.search(str(err))
  return (m.group(1) or m.group(2)) if m else str(err)


def _display(path: pathlib.Path) -> str:
  """A path relative to the repository root when it is inside it (no machine paths in output)."""
  try:
    return str(path.resolve().relative_to(_REPO_ROOT))
  except ValueError:
    return str(path)


@dataclasses.dataclass(frozen=True)
class Template:
  """One prompt wording for one task."""

  task: str
  name: str
  prompt: str | None
  choices: tuple[str, ...] | str
  gold: str = "label"
  prompts: str | None = None
  source: str = "<string>"
  metadata: Mapping[str, Any] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    where = f"template {self.task}/{self.name} in {self.source}"
    if (self.prompt is None) == (self.prompts is None):
      raise TemplateError(f"{where}: give exactly one of 'prompt' (a jinja string) or 'prompts' "
                          "(a jinja expression giving one prompt per option).")
    if not isinstance(self.choices, (str, tuple)) or (
        isinstance(self.choices, tuple) and len(self.choices) < 1):
      raise TemplateError(f"{where}: 'choices' must be a non-empty list of jinja strings or a "
                          f"jinja expression string, got {self.choices!r}.")
    try:
      object.__setattr__(self, "_compiled", self._compile())
    except jinja2.TemplateSyntaxError as e:
      raise TemplateError(f"{where}: jinja syntax error: {e.message} (line {e.lineno} of the "
                          "template text).") from e

  @property
  def id(self) -> str:
    return f"{self.task}/{self.name}"

  def _compile(self):
    c = {"gold": _ENV.compile_expression(self.gold, undefined_to_none=False)}
    if self.prompt is not None:
      c["prompt"] = _ENV.from_string(self.prompt)
    else:
      c["prompts"] = _ENV.compile_expression(self.prompts, undefined_to_none=False)
    if isinstance(self.choices, str):
      c["choices"] = _ENV.compile_expression(self.choices, undefined_to_none=False)
    else:
      c["choices"] = tuple(_ENV.from_string(x) for x in self.choices)
    return c

  @property
  def fields(self) -> frozenset[str]:
    """The example fields this template reads (checked before any scoring starts)."""
    texts = [self.prompt or "", "{{ %s }}" % self.gold]
    if self.prompts is not None:
      texts.append("{{ %s }}" % self.prompts)
    if isinstance(self.choices, str):
      texts.append("{{ %s }}" % self.choices)
    else:
      texts.extend(self.choices)
    names = set()
    for t in texts:
      names |= jinja2.meta.find_undeclared_variables(_ENV.parse(t))
    return frozenset(names)

  def check_fields(self, available: Sequence[str]) -> None:
    """Raises TemplateError when the template reads a field not in `available`."""
    missing = sorted(self.fields - set(available))
    if missing:
      raise TemplateError(
          f"template {self.id} in {self.source} references field(s) {missing} that the "
          f"{self.task} examples lack; available fields: {sorted(available)}.")

  def render_options(self, example: Mapping[str, Any]) -> tuple[list[str], list[str], int]:
    """(one prompt per option, the options, gold index) for rank classification."""
    c = self._compiled
    try:
      if isinstance(self.choices, str):
        choices = c["choices"](**example)
        if isinstance(choices, str) or not isinstance(choices, Sequence):
          raise TemplateError(f"template {self.id} in {self.source}: 'choices: {self.choices}' "
                              f"must give a list, got {type(choices).__name__}.")
        choices = [str(x) for x in choices]
      else:
        choices = [t.render(**example) for t in c["choices"]]
      gold = c["gold"](**example)
      if "prompt" in c:
        prompts = [c["prompt"].render(**example)] * len(choices)
      else:
        prompts = [str(p) for p in c["prompts"](**example)]
    except jinja2.UndefinedError as e:
      field = _field_from(e)
      raise TemplateError(
          f"template {self.id} in {self.source} references field {field!r} missing from the "
          f"example; the example has fields {sorted(example)}.") from e
    if len(prompts) != len(choices):
      raise TemplateError(f"template {self.id} in {self.source}: 'prompts' gave {len(prompts)} "
                          f"prompts for {len(choices)} choices.")
    try:
      gold = int(gold)
    except (TypeError, ValueError) as e:
      raise TemplateError(f"template {self.id} in {self.source}: gold expression {self.gold!r} "
                          f"gave {gold!r}, expected an integer index.") from e
    if not 0 <= gold < len(choices):
      raise TemplateError(f"template {self.id} in {self.source}: gold index {gold} is out of range "
                          f"for {len(choices)} choices.")
    return prompts, choices, gold

  def render(self, example: Mapping[str, Any]) -> tuple[str, list[str], int]:
    """(prompt, choices, gold); partial-scoring templates give the gold option's prompt."""
    prompts, choices, gold = self.render_options(example)
    return prompts[gold], choices, gold


def _parse_entry(task: str, i: int, entry: Any, source: str) -> Template:
  where = f"{source}: task {task!r}, template #{i}"
  if not isinstance(entry, Mapping):
    raise TemplateError(f"{where}: expected a mapping with name/prompt/choices, got {entry!r}.")
  unknown = set(entry) - _KNOWN_KEYS
  if unknown:
    raise TemplateError(f"{where}: unknown key(s) {sorted(unknown)}; known: {sorted(_KNOWN_KEYS)}.")
  for key in ("name", "choices"):
    if key not in entry:
      raise TemplateError(f"{where}: missing required key {key!r}.")
  choices = entry["choices"]
  if isinstance(choices, list):
    choices = tuple(str(x) for x in choices)
  return Template(task=task, name=str(entry["name"]), prompt=entry.get("prompt"),
                  prompts=entry.get("prompts"), choices=choices,
                  gold=str(entry.get("gold", "label")), source=source,
                  metadata=dict(entry.get("metadata") or {}))


def parse_templates(text: str, source: str = "<string>") -> dict[str, list[Template]]:
  """Parses the YAML text of one template file."""
  try:
    data = yaml.safe_load(text)
  except yaml.YAMLError as e:
    raise TemplateError(f"{source}: invalid YAML: {e}") from e
  if not isinstance(data, Mapping):
    raise TemplateError(f"{source}: expected a mapping of task name -> list of templates.")
  out: dict[str, list[Template]] = {}
  for task, entries in data.items():
    if not isinstance(entries, list) or not entries:
      raise TemplateError(f"{source}: task {task!r} must map to a non-empty list of templates.")
    templates = [_parse_entry(str(task), i, e, source) for i, e in enumerate(entries)]
    names = [t.name for t in templates]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
      raise TemplateError(f"{source}: task {task!r} has duplicate template names {dup}.")
    out[str(task)] = templates
  return out


def load_templates(path: str | pathlib.Path) -> dict[str, list[Template]]:
  """Templates by task from one YAML file or every *.yaml file of a folder (sorted by name)."""
  path = pathlib.Path(path)
  if path.is_dir():
    files = sorted(path.glob("*.yaml"))
  elif path.is_file():
    files = [path]
  else:
    raise FileNotFoundError(f"No template file or folder at {path}.")
  out: dict[str, list[Template]] = {}
  for f in files:
    source = _display(f)
    for task, templates in parse_templates(f.read_text(encoding="utf-8"), source).items():
      if task in out:
        raise TemplateError(
            f"{source}: task {task!r} is already defined in {out[task][0].source}.")
      out[task] = templates
  return out
