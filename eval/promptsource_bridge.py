"""T0's own promptsource templates for t0_eval (the default prompt_source), read from the installed
`promptsource` package's YAML files.

promptsource 0.2.3 declares Python >=3.7,<3.10, so the Makefile installs it with
  pip install --no-deps --ignore-requires-python promptsource==0.2.3
Its Python code is never imported (it pulls in `datasets` and streamlit): the template YAML files
are read from the package folder and rendered here with jinja2 as promptsource's Template.apply
renders them (its `choice` / `most_frequent` filters and `zip`, each variable cut to 2,048
characters, '|||' inside a field kept out of the prompt/target split). T0-Eval is the templates with
metadata original_task: true (ANLI 15 per round, CB 15, COPA 12, RTE 10, WSC 10, WiC 10,
StoryCloze 5, Winogrande 5, HellaSwag 4 = 116); their names are pinned below, so a different
promptsource release that renames, drops or adds one stops the evaluation instead of silently
changing the protocol. Examples carry the Hugging Face field names those templates read (the
loaders add them next to the canonical fields).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import importlib.util
import json
import pathlib
import random
from collections import Counter
from typing import Any, Iterable, Mapping, Sequence

import jinja2
import jinja2.meta
import yaml

from eval import templates as templates_lib
from experiments.runtime.errors import ConfigError

VERSION = "0.2.3"  # the release whose templates T0 was evaluated with
INSTALL = f"pip install --no-deps --ignore-requires-python promptsource=={VERSION}"

# Our template key -> promptsource's dataset/subset folder.
T0_EVAL_FOLDERS = {
    "anli": "anli", "cb": "super_glue/cb", "rte": "super_glue/rte",
    "wsc": "super_glue/wsc.fixed", "wic": "super_glue/wic",
    "winogrande": "winogrande/winogrande_xl", "copa": "super_glue/copa",
    "hellaswag": "hellaswag", "story_cloze": "story_cloze/2016",
}
_NLI = ("GPT-3 style", "MNLI crowdsource", "based on the previous passage", "can we infer",
        "does it follow that", "does this imply", "guaranteed true", "justified in saying",
        "must be true", "should assume")
_NLI3 = _NLI + ("always/sometimes/never", "claim true/false/inconclusive",
                "consider always/sometimes/never", "guaranteed/possible/impossible",
                "take the following as truth")
# The original-task template names of promptsource 0.2.3 (T0's evaluation prompts).
T0_EVAL_PROMPTS: dict[str, tuple[str, ...]] = {
    "anli": _NLI3, "cb": _NLI3, "rte": _NLI,
    "wsc": ("GPT-3 Style", "I think they mean", "Who or what is/are", "by p they mean",
            "does p stand for", "does the pronoun refer to", "in other words", "p is/are r",
            "replaced with", "the pronoun refers to"),
    "wic": ("GPT-3-prompt", "GPT-3-prompt-with-label", "affirmation_true_or_false",
            "grammar_homework", "polysemous", "question-context", "question-context-meaning",
            "question-context-meaning-with-label", "same_sense", "similar-sense"),
    "winogrande": ("Replace", "does underscore refer to", "fill in the blank", "stand for",
                   "underscore refer to"),
    "copa": ("C1 or C2? premise, so/because…", "best_option", "cause_effect", "choose",
             "exercise", "i_am_hesitating", "more likely", "plausible_alternatives",
             "…As a result, C1 or C2?", "…What could happen next, C1 or C2?",
             "…which may be caused by", "…why? C1 or C2"),
    "hellaswag": ("Predict ending with hint", "Randomized prompts template",
                  "complete_first_then", "if_begins_how_continues"),
    "story_cloze": ("Answer Given options", "Choose Story Ending", "Movie What Happens Next",
                    "Novel Correct Ending", "Story Continuation and Options"),
}
_MAX_FIELD_CHARS = 2048  # promptsource cuts every {{ }} value to this many characters
_PIPE = "\x00pipe\x00"  # stands for '|||' inside a field while the rendering is split
_RNG = "_promptsource_rng"  # the render's random source, for the `choice` filter


class PromptsourceError(ConfigError):
  """T0's templates cannot be read as pinned: package absent, a folder missing, names differ."""


@jinja2.pass_context
def _choice(context, items):
  # promptsource draws unseeded; here the draw is seeded per template and example, so every model
  # sees the same prompt for the same example.
  return context[_RNG].choice(list(items))


def _most_frequent(items):
  counts = Counter(items).most_common()
  return [x for x, n in counts if n == counts[0][1]] if counts else None


_ENV = jinja2.Environment(undefined=jinja2.StrictUndefined)
_ENV.filters.update(choice=_choice, most_frequent=_most_frequent)
_ENV.globals.update(zip=zip)


class _Loader(yaml.SafeLoader):
  """Reads promptsource's !Template / !TemplateMetadata tags as plain mappings."""


for _tag in ("!Template", "!TemplateMetadata"):
  _Loader.add_constructor(_tag, lambda loader, node: loader.construct_mapping(node, deep=True))


def available() -> bool:
  return importlib.util.find_spec("promptsource") is not None


def version() -> str | None:
  """The installed promptsource's version, None when it is not installed."""
  try:
    return importlib.metadata.version("promptsource")
  except importlib.metadata.PackageNotFoundError:
    return None


def templates_dir() -> pathlib.Path:
  spec = importlib.util.find_spec("promptsource")
  if spec is None or not spec.submodule_search_locations:
    raise PromptsourceError(
        "eval.zero_shot.evaluate_checkpoint.prompt_source = 'promptsource' (the default for "
        "t0_eval) needs T0's templates from the promptsource package, which is not installed: "
        f"run `make install` or `{INSTALL}` (or set prompt_source = 'builtin' for this project's "
        "own prompts).")
  return pathlib.Path(list(spec.submodule_search_locations)[0]) / "templates"


def _escape(value: Any) -> Any:
  if isinstance(value, str):
    return value.replace("|||", _PIPE)
  if isinstance(value, (list, tuple)):
    return [_escape(v) for v in value]
  return value


def _split(text: str) -> list[str]:
  return [part.replace(_PIPE, "|||").strip() for part in text.split("|||")]


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

  def _seed(self, example: Mapping[str, Any]) -> int:
    read = {k: example[k] for k in sorted(self.fields) if k in example}
    text = json.dumps([self.id, read], sort_keys=True, default=str)
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")

  def render_options(self, example: Mapping[str, Any]) -> tuple[list[str], list[str], int]:
    escaped = {k: _escape(v) for k, v in example.items()}
    # As promptsource's apply(truncate=True): every {{ }} value becomes a string of at most
    # 2,048 characters; the answer choices themselves are rendered uncut.
    jinja = self.jinja.replace("}}", f" | string | truncate({_MAX_FIELD_CHARS}) }}}}")
    try:
      choices = _split(_ENV.from_string(self.answer_choices).render(**escaped))
      text = _ENV.from_string(jinja).render(**escaped, answer_choices=choices,
                                            **{_RNG: random.Random(self._seed(example))})
    except jinja2.UndefinedError as e:
      raise templates_lib.TemplateError(
          f"promptsource template {self.id} ({self.source}): {e}; example fields: "
          f"{sorted(example)}.") from e
    prompt, target = (_split(text) + [""])[:2]
    if not prompt or target not in choices:
      # T0 drops examples a template does not apply to (e.g. COPA's 'cause'-only prompts).
      raise templates_lib.SkipExample(self.id)
    return [prompt] * len(choices), choices, choices.index(target)

  def render(self, example: Mapping[str, Any]) -> tuple[str, list[str], int]:
    prompts, choices, gold = self.render_options(example)
    return prompts[gold], choices, gold


def load_t0_templates(keys: Iterable[str] | None = None) -> dict[str, list[PromptsourceTemplate]]:
  """T0-Eval templates by our template key (anli, cb, ..., story_cloze), as pinned by name.

  `keys` narrows the folders read (default: all nine). Raises PromptsourceError, naming the
  installed version and the file, when the package, a folder or a pinned template is missing, or
  when the folder has original-task templates the pin does not list.
  """
  root = templates_dir()
  where = f"promptsource {version() or '(version unknown)'} (T0-Eval pins {VERSION}: {INSTALL})"
  out = {}
  for key in (T0_EVAL_FOLDERS if keys is None else keys):
    folder = T0_EVAL_FOLDERS[key]
    path = root / folder / "templates.yaml"
    if not path.is_file():
      raise PromptsourceError(f"{where} has no templates for {key}: {folder}/templates.yaml is "
                              "missing from its templates folder.")
    data = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)  # noqa: S506
    entries = {e["name"]: e for e in (data.get("templates") or {}).values()
               if (e.get("metadata") or {}).get("original_task")}
    pinned = T0_EVAL_PROMPTS[key]
    unknown = [n for n in pinned if n not in entries or not entries[n].get("answer_choices")]
    extra = sorted(set(entries) - set(pinned))
    if unknown or extra:
      found = "; ".join(
          ([f"pinned prompt(s) {unknown} missing or without answer choices"] if unknown else [])
          + ([f"original-task prompt(s) {extra} not in the pin"] if extra else []))
      raise PromptsourceError(
          f"{where}, {folder}/templates.yaml: T0-Eval's {len(pinned)} {key} prompts "
          f"(eval.promptsource_bridge.T0_EVAL_PROMPTS) do not match: {found}.")
    out[key] = sorted((PromptsourceTemplate(key, n, entries[n]["jinja"],
                                            entries[n]["answer_choices"],
                                            f"promptsource:{folder}") for n in pinned),
                      key=lambda t: t.name)
  return out
