"""The evaluation prompts shipped with the harness (eval/templates/*.yaml) and the engine's names.

The template engine (YAML files of jinja2 prompts, strict fields, partial scoring) is
objectives/prompts.py, shared with the MTF mixtures; its names are re-exported here for eval's
modules, which import `eval.templates` only.
"""

from __future__ import annotations

import pathlib

from objectives.prompts import SkipExample, Template, TemplateError, load_templates, parse_templates

__all__ = ["SkipExample", "Template", "TemplateError", "TEMPLATES_DIR", "builtin_templates",
           "load_templates", "parse_templates"]

TEMPLATES_DIR = pathlib.Path(__file__).resolve().parent / "templates"


def builtin_templates() -> dict[str, list[Template]]:
  """The templates shipped with the harness (eval/templates/*.yaml)."""
  return load_templates(TEMPLATES_DIR)
