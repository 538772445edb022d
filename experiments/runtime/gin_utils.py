"""t5x-style gin flags and gin stacks: `--gin_file=A.gin --gin.KEY=VALUE`, layers then overrides.

Flags (t5x's): `--gin_file` (repeatable), `--gin.KEY=VALUE` (the binding `KEY = VALUE`),
`--gin_bindings`, `--gin_search_paths` (comma-separated folders where gin files and `include` lines
are looked up, before the current directory and the repository root) and `--tfds_data_dir`.
t5x's `MIXTURE_OR_TASK_MODULE` macro names a module (dotted, importable from PYTHONPATH) that is
imported when the stack is parsed, before any entry point looks up MIXTURE_OR_TASK_NAME, so a
user's module can register its own seqio tasks and mixtures.

A stack is order-independent: each file (with what it includes) is one layer, and a key bound by
two layers to different values is an error naming both files, so any order of the same files
resolves to the same config. A `KEY = %gin.REQUIRED` declaration is not a value: the layer that
binds KEY fills it whatever the order. Overlays (files named `local_*.gin`, such as
gin_configs/local_tiny.gin) are applied after every layer and may rebind anything; `--gin.` /
`--gin_bindings` come last of all. Gin's own errors become `GinConfigError` naming the file or flag.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import logging
import os
import pathlib
import re
from typing import Any, Sequence

import gin

from experiments.runtime.errors import ConfigError

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
USAGE = (
    "usage: python -m <entry> --gin_file=A.gin [--gin_file=B.gin ...] [--gin.KEY=VALUE ...] "
    "[--gin_bindings='KEY = VALUE' ...] [--gin_search_paths=DIR,DIR] [--tfds_data_dir=DIR] "
    "[--verbose]")
OVERLAY_PREFIX = "local_"
# Where a required macro is normally bound: named in the error when it is left unset.
MACRO_LAYERS = {
    "MODEL": "an architecture file, gin_configs/arch/<arch>.gin",
    "VOCABULARY": "a data file, gin_configs/data/<corpus>.gin",
    "VOCAB_SIZE": "a data file, gin_configs/data/<corpus>.gin",
    "CORPUS": "a data file, gin_configs/data/<corpus>.gin",
    "OBJECTIVE": "an objective file, gin_configs/objectives/<objective>.gin",
    "MIXTURE_OR_TASK_NAME": "an objective file (gin_configs/objectives/) or runs/finetune.gin",
    "TASK_FEATURE_LENGTHS": "an objective file (gin_configs/objectives/) or runs/finetune.gin",
    "TINY_FEATURE_LENGTHS": "an objective file (gin_configs/objectives/) or runs/finetune.gin",
    "TRAIN_STEPS": "a run file, gin_configs/runs/<run>.gin",
    "BATCH_SIZE": "a run file, gin_configs/runs/<run>.gin",
    "DROPOUT_RATE": "a run file, gin_configs/runs/<run>.gin",
    "MODEL_DIR": "the command line, e.g. --gin.MODEL_DIR=\"'runs/my_run'\"",
    "INITIAL_CHECKPOINT_PATH": "the command line, e.g. --gin.INITIAL_CHECKPOINT_PATH=\"'runs/x'\"",
    "CHECKPOINT_PATH": "the command line, e.g. --gin.CHECKPOINT_PATH=\"'runs/x'\"",
    "EVAL_SUITE": "the command line, e.g. --gin.EVAL_SUITE=\"'embedded'\"",
    "MIXTURE_OR_TASK_MODULE": "the command line, e.g. --gin.MIXTURE_OR_TASK_MODULE=\"'my_tasks'\"",
}
# Read by this module itself (import_task_module), so a flag may set it without a file using it.
TASK_MODULE_MACRO = "MIXTURE_OR_TASK_MODULE"
_FLAG_NAMES = ("--gin_file", "--gin_bindings", "--gin_search_paths", "--tfds_data_dir")
_REQUIRED_RE = re.compile(r"^(\S+?)(?:/macro\.value)? set to `%gin\.REQUIRED`")


class GinConfigError(ConfigError):
  """A gin file or binding could not be parsed, conflicts, or leaves a required value unset."""


@dataclasses.dataclass
class Flags:
  """The t5x flags of one command line; `rest` holds the entry point's own arguments."""

  gin_files: list[str] = dataclasses.field(default_factory=list)
  gin_bindings: list[str] = dataclasses.field(default_factory=list)
  gin_search_paths: list[str] = dataclasses.field(default_factory=list)
  tfds_data_dir: str | None = None
  rest: list[str] = dataclasses.field(default_factory=list)


_search_paths: list[str] = []
_installed: list[str] = []  # folders this module added to gin's include search list
_tfds_data_dir: list[str] = []


def parse_flags(argv: Sequence[str]) -> Flags:
  """Splits argv into t5x flags (order kept) and the rest; `--flag=V` and `--flag V` both work."""
  flags = Flags()
  args = list(argv)
  i = 0
  while i < len(args):
    arg = args[i]
    name, sep, value = arg.partition("=")
    if name in _FLAG_NAMES:
      if not sep:
        if i + 1 >= len(args):
          raise GinConfigError(f"{name} needs a value. {USAGE}")
        value = args[i + 1]
        i += 1
      if name == "--gin_file":
        flags.gin_files.append(value)
      elif name == "--gin_bindings":
        flags.gin_bindings.append(value)
      elif name == "--gin_search_paths":
        flags.gin_search_paths.extend(p for p in value.split(",") if p)
      else:
        flags.tfds_data_dir = value
    elif arg.startswith("--gin."):
      key, sep, value = arg[len("--gin."):].partition("=")
      if not sep or not key:
        raise GinConfigError(f"Malformed flag {arg!r}: expected --gin.KEY=VALUE.")
      flags.gin_bindings.append(f"{key} = {value}")
    elif arg.startswith(("--gin", "-gin", "--tfds")):
      raise GinConfigError(unknown_flag_message([arg]))
    else:
      flags.rest.append(arg)
    i += 1
  return flags


def unknown_flag_message(args: Sequence[str], known: Sequence[str] = ()) -> str:
  """'unknown flag --gin-file=x.gin (did you mean --gin_file?)' for each of `args`."""
  names = [*_FLAG_NAMES, "--gin.KEY", "--verbose", *known]
  parts = []
  for arg in args:
    flag = arg.partition("=")[0]
    close = difflib.get_close_matches(flag.replace("-", "_"), [n.replace("-", "_") for n in names],
                                      n=1, cutoff=0.6)
    hint = f" (did you mean {names[[n.replace('-', '_') for n in names].index(close[0])]}?)" if (
        close) else ""
    parts.append(f"unknown flag {arg}{hint}")
  return "; ".join(parts) + f". {USAGE}"


def parse_gin_flags(argv: Sequence[str]) -> tuple[list[str], list[str], list[str]]:
  """(gin files, gin bindings, the rest); applies --gin_search_paths and --tfds_data_dir."""
  flags = parse_flags(argv)
  apply_flags(flags)
  return flags.gin_files, flags.gin_bindings, flags.rest


def apply_flags(flags: Flags) -> None:
  """Makes --gin_search_paths and --tfds_data_dir take effect (as t5x's entry points do)."""
  set_search_paths(flags.gin_search_paths)
  if flags.tfds_data_dir:
    import seqio  # pylint: disable=g-import-not-at-top
    seqio.set_tfds_data_dir_override(flags.tfds_data_dir)  # the seqio tasks (c4)
    _tfds_data_dir[:] = [flags.tfds_data_dir]  # the evaluator's TFDS loaders


def tfds_data_dir() -> str | None:
  """The --tfds_data_dir of this process's command line, if any."""
  return _tfds_data_dir[0] if _tfds_data_dir else None


def set_search_paths(paths: Sequence[str]) -> None:
  """Extra folders for gin files and includes, searched before the defaults."""
  for p in paths:
    if not os.path.isdir(p):
      raise GinConfigError(f"--gin_search_paths: {p!r} is not a folder.")
  _search_paths[:] = [os.path.abspath(p) for p in paths]


def search_path() -> list[str]:
  """Where gin files and `include` lines are looked for, in order."""
  return list(dict.fromkeys([*_search_paths, os.getcwd(), str(REPO_ROOT)]))


def resolve_gin_file(name: str) -> str:
  """The path of a gin file given as on the command line, or a clear error."""
  if os.path.isabs(name):
    if os.path.isfile(name):
      return name
  else:
    for base in search_path():
      candidate = os.path.join(base, name)
      if os.path.isfile(candidate):
        return candidate
  raise GinConfigError(
      f"--gin_file={name}: no such file (looked in {', '.join(_short(p) for p in search_path())}).")


def is_overlay(name: str) -> bool:
  return os.path.basename(name).startswith(OVERLAY_PREFIX)


def _install_search_path() -> None:
  """gin's own include search list follows search_path(): folders set earlier are dropped."""
  prefixes = gin.config._LOCATION_PREFIXES  # pylint: disable=protected-access
  for stale in [p for p in _installed if p not in search_path()]:
    if stale in prefixes:
      prefixes.remove(stale)
    _installed.remove(stale)
  for path in search_path():
    if path not in prefixes:
      gin.add_config_file_search_path(path)
      _installed.append(path)


_INCLUDE_RE = re.compile(r"^\s*include\s+['\"]([^'\"]+)['\"]")


def _check_includes(path: str, seen: frozenset = frozenset()) -> None:
  """Every `include` of a file (and of what it includes) names a file on the search path."""
  with open(path, encoding="utf-8") as f:
    lines = f.read().splitlines()
  for number, line in enumerate(lines, start=1):
    match = _INCLUDE_RE.match(line)
    if not match:
      continue
    try:
      included = resolve_gin_file(match.group(1))
    except GinConfigError:
      raise GinConfigError(
          f"{_describe_path(path)}:{number}: include '{match.group(1)}': no such file (looked in "
          f"{', '.join(_short(p) for p in search_path())}; add its folder with "
          f"--gin_search_paths).") from None
    if included not in seen:
      _check_includes(included, seen | {path})


def _describe_path(path: str) -> str:
  return path.replace(str(REPO_ROOT) + os.sep, "")


def _parse_file(name: str) -> None:
  path = resolve_gin_file(name)
  _check_includes(path)
  try:
    gin.parse_config_file(path)
  except Exception as e:  # gin raises many types; re-raise with the file named.
    raise GinConfigError(f"--gin_file={name}: {_describe(e)}") from e


def _snapshot() -> dict[tuple[str, str], dict[str, Any]]:
  # gin keeps its bindings in this dict: {(scope, selector): {parameter: value}}.
  return {k: dict(v) for k, v in gin.config._CONFIG.items()}  # pylint: disable=protected-access


def _key_name(key: tuple[str, str], param: str) -> str:
  scope, selector = key
  if selector == "gin.macro":
    return scope
  return f"{scope + '/' if scope else ''}{selector}.{param}"


def _layer_bindings(name: str) -> dict[str, tuple[Any, str]]:
  """{key: (value, its text)} that one file (with its includes) binds, parsed on its own."""
  gin.clear_config()
  _parse_file(name)
  out = {}
  for key, params in _snapshot().items():
    for param, value in params.items():
      out[_key_name(key, param)] = (value, repr(value))
  return out


def _layer_order(layers: Sequence[str]) -> list[str]:
  """Layers in an order that lets every value fill a `%gin.REQUIRED` declaration of its key.

  Raises GinConfigError when two layers bind one key to different values.
  """
  bound = {name: _layer_bindings(name) for name in dict.fromkeys(layers)}
  owner: dict[str, tuple[str, str]] = {}
  declared: dict[str, list[str]] = {}
  conflicts = []
  for name, bindings in bound.items():
    for key, (value, text) in bindings.items():
      if is_required(value):
        declared.setdefault(key, []).append(name)
      elif key in owner and owner[key][1] != text:
        conflicts.append(f"{key} is bound by {owner[key][0]} ({owner[key][1]}) and by {name} "
                         f"({text})")
      else:
        owner.setdefault(key, (name, text))
  if conflicts:
    raise GinConfigError(
        "two gin files of the stack bind the same key differently, so the result would depend on "
        "their order: " + "; ".join(conflicts) + ". Bind each key in one layer (arch, size, data, "
        "objective, run), override it with --gin.KEY=..., or put the override in a local_*.gin "
        "overlay, which is applied last.")
  # A layer that declares a key %gin.REQUIRED goes before the layer that binds it.
  before: dict[str, set[str]] = {name: set() for name in bound}
  for key, declaring in declared.items():
    if key in owner:
      before[owner[key][0]].update(n for n in declaring if n != owner[key][0])
  order: list[str] = []
  while len(order) < len(bound):
    ready = [n for n in bound if n not in order and before[n] <= set(order)]
    if not ready:
      remaining = [n for n in bound if n not in order]
      raise GinConfigError(f"gin files {remaining} each declare %gin.REQUIRED what another binds.")
    order.extend(ready)
  return order


def parse_gin(gin_files: Sequence[str], gin_bindings: Sequence[str] = (), finalize: bool = True,
              clear: bool = True, defaults: Sequence[str] = (),
              read_macros: Sequence[str] = ()) -> None:
  """Parses a stack afresh: defaults, layers (order-independent), overlays, then bindings.

  `defaults` are an entry point's own `KEY = VALUE` lines (e.g. the evaluator's DROPOUT_RATE): any
  file may rebind them, and they fill a `%gin.REQUIRED` declaration no file fills. With
  clear=False, files and bindings are added in the given order on top of the current config.
  `read_macros` are macros the calling code reads itself (e.g. the grid's GRID_DIR): a flag may
  set them although no binding uses them; any other macro a flag sets must be used (a typo such
  as --gin.TRAIN_STEP=20 is an error naming the close names).
  """
  _install_search_path()
  if clear:
    layers = [f for f in gin_files if not is_overlay(f)]
    overlays = [f for f in gin_files if is_overlay(f)]
    ordered = (_layer_order(layers) if layers else []) + overlays
    gin.clear_config()
  else:
    ordered = list(gin_files)
  _parse_bindings(defaults, "default")
  for name in ordered:
    _parse_file(name)
  _parse_bindings(gin_bindings, "--gin binding")
  _parse_bindings([d for d in defaults if _is_required(d.partition("=")[0].strip())], "default")
  check_macros()
  check_unused_macros(gin_bindings, [f for f in ordered], read_macros)
  import_task_module()
  if finalize:
    finalize_config(gin_files)


def import_task_module() -> str | None:
  """Imports t5x's MIXTURE_OR_TASK_MODULE (when bound), whose import registers seqio tasks."""
  name = query_macro(TASK_MODULE_MACRO)
  if name is None or is_required(name):
    return None
  if not isinstance(name, str) or not name.strip():
    raise GinConfigError(f"{TASK_MODULE_MACRO} = {name!r}: expected a module name such as "
                         f"'my_tasks' (importable from PYTHONPATH), or None.")
  try:
    importlib.import_module(name)
  except Exception as e:  # the module's own errors too: its import is what registers the tasks
    raise GinConfigError(
        f"{TASK_MODULE_MACRO} = {name!r} cannot be imported ({type(e).__name__}: "
        f"{_describe(e)}); put the folder holding it on PYTHONPATH, or fix the module (its import "
        f"registers the seqio tasks and mixtures that MIXTURE_OR_TASK_NAME names).") from e
  return name


def _parse_bindings(bindings: Sequence[str], what: str) -> None:
  for binding in bindings:
    try:
      gin.parse_config(binding)
    except Exception as e:
      hint = _quote_hint(binding)
      if hint:  # gin's own text here is a Python AST dump: the hint says it all
        raise GinConfigError(f"{what} `{binding}`: the value is not a gin literal{hint}") from e
      raise GinConfigError(f"{what} `{binding}`: {_describe(e)}") from e


def _is_required(key: str) -> bool:
  try:
    return is_required(gin.query_parameter(key if "." in key else f"%{key}"))
  except (ValueError, KeyError):
    return False


def is_required(bound: Any) -> bool:
  """Whether a bound value is the `%gin.REQUIRED` declaration (a reference to gin's constant)."""
  if isinstance(bound, gin.config.ConfigurableReference) and bound.selector == "gin.constant":
    return bound.scoped_configurable_fn() is gin.REQUIRED
  return bound is gin.REQUIRED


def finalize_config(gin_files: Sequence[str] = ()) -> None:
  """gin.finalize(), which checks every `%gin.REQUIRED`; an unset one names its macro and layer."""
  try:
    gin.finalize()
  except Exception as e:  # gin's REQUIRED hook raises ValueError; others may raise other types.
    match = _REQUIRED_RE.match(str(e).strip())
    if match:
      raise GinConfigError(required_message(match.group(1))) from e
    raise GinConfigError(f"gin config (files {list(gin_files)}): {_describe(e)}") from e


def required_message(name: str) -> str:
  where = MACRO_LAYERS.get(name)
  if where is None or where.startswith("the command line"):
    return (f"The gin macro {name} is required but not set: set it on "
            f"{where or f'the command line, --gin.{name}=...'}.")
  return (f"The gin macro {name} is required but not set: bind it in {where}, or add "
          f"--gin.{name}=...")


def check_macros() -> None:
  """Every macro a binding refers to is defined; an undefined one is named with its users."""
  defined = {scope for (scope, selector) in gin.config._CONFIG  # pylint: disable=protected-access
             if selector == "gin.macro"}
  users: dict[str, list[str]] = {}
  for key, params in _snapshot().items():
    for param, value in params.items():
      for ref in _macro_refs(value):
        if ref not in defined:
          users.setdefault(ref, []).append(_key_name(key, param))
  if users:
    raise GinConfigError("; ".join(
        f"the gin macro {m} is used by {', '.join(sorted(u))} but never defined" +
        (f" (usually bound in {MACRO_LAYERS[m]})" if m in MACRO_LAYERS else "")
        for m, u in sorted(users.items())) + ".")


def _used_macros() -> set[str]:
  return {ref for params in _snapshot().values() for v in params.values()
          for ref in _macro_refs(v)}


def _defined_macros() -> set[str]:
  return {scope for (scope, selector) in gin.config._CONFIG  # pylint: disable=protected-access
          if selector == "gin.macro"}


def check_unused_macros(gin_bindings: Sequence[str], gin_files: Sequence[str],
                        read_macros: Sequence[str] = ()) -> None:
  """A macro a flag sets must be used; one a user's own gin file sets but nothing uses warns.

  Shipped files (gin_configs/) define macros for other layers, so only files outside the
  repository are checked; UNUSED_MACROS = 'error' makes those warnings errors.
  """
  used = _used_macros() | set(read_macros) | {TASK_MODULE_MACRO}
  known = sorted(used | _defined_macros() | set(MACRO_LAYERS))
  problems = []
  for binding in gin_bindings:
    key = binding.partition("=")[0].strip()
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key) and key not in used and key != "UNUSED_MACROS":
      close = difflib.get_close_matches(key, [k for k in known if k != key], n=3, cutoff=0.6)
      problems.append(f"--gin.{key}: no gin file or entry point uses the macro {key}" +
                      (f" (did you mean {', '.join(close)}?)" if close else
                       " (a configurable's parameter is written module.Configurable.param)"))
  if problems:
    raise GinConfigError("; ".join(problems) + ".")
  mode = query_macro("UNUSED_MACROS", "warn")
  gin_configs = str(REPO_ROOT / "gin_configs") + os.sep
  for name in gin_files:
    path = resolve_gin_file(name)
    if os.path.abspath(path).startswith(gin_configs):
      continue
    unused = sorted(m for m in _file_macros(path) if m not in used and m != "UNUSED_MACROS")
    if unused:
      message = (f"{_describe_path(path)} sets the gin macro(s) {', '.join(unused)}, which no "
                 f"binding uses (a typo?)")
      if mode == "error":
        raise GinConfigError(message + ".")
      logging.warning("%s; UNUSED_MACROS = 'error' makes this an error.", message)


def _file_macros(path: str) -> set[str]:
  """Macros a gin file sets at top level (`NAME = ...`), read from its text."""
  with open(path, encoding="utf-8") as f:
    return {m.group(1) for line in f
            if (m := re.match(r"^([A-Z_][A-Z0-9_]*)\s*=", line))}


def _macro_refs(value: Any):
  """Names of the macros a bound value refers to, looking inside lists, tuples and dicts."""
  if isinstance(value, gin.config.ConfigurableReference):
    if value.selector == "gin.macro":  # `%NAME` is a reference to 'NAME/gin.macro'
      yield value.scoped_selector.split("/")[0]
  elif isinstance(value, (list, tuple)):
    for v in value:
      yield from _macro_refs(v)
  elif isinstance(value, dict):
    for v in value.values():
      yield from _macro_refs(v)


def _quote_hint(binding: str) -> str:
  """t5x's quoting rule, when an unquoted string is the likely cause."""
  _, _, value = binding.partition("=")
  value = value.strip()
  if value and value[0] not in "'\"[({%@0123456789-." and value not in ("True", "False", "None"):
    return f". Strings need quotes inside the flag, t5x style: --gin.KEY=\"'{value}'\""
  return ""


def _short(path: str) -> str:
  return os.path.relpath(path) if path.startswith(os.getcwd()) else path


def _describe(e: Exception) -> str:
  msg = str(e).strip() or type(e).__name__
  return msg.replace(str(REPO_ROOT) + os.sep, "")


def value(x: Any) -> Any:
  """A macro's value as the configurable would receive it (references like @f() evaluated)."""
  if isinstance(x, gin.config.ConfigurableReference) and not is_required(x):
    return x.scoped_configurable_fn() if x.evaluate else x
  return x


def query_macro(name: str, default=None):
  """The value of a gin macro (references evaluated), or `default` when it is not bound."""
  try:
    found = gin.query_parameter(f"%{name}")
  except (ValueError, KeyError):
    return default
  return value(found)


def require_macro(name: str):
  """The value of a gin macro that must be set, or an error naming it and its layer."""
  found = query_macro(name)
  if found is None or is_required(found):
    raise GinConfigError(required_message(name))
  return found
