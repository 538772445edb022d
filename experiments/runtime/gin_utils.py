"""t5x-style gin flags: `--gin_file=A.gin --gin_file=B.gin --gin.KEY=VALUE`, later wins.

Files are looked up relative to the current directory, then the repository root, so
`--gin_file=gin_configs/arch/causal_decoder.gin` works from anywhere. Gin's own errors are re-raised
as `GinConfigError` naming the file or the `--gin.` binding that caused them.
"""

from __future__ import annotations

import os
import pathlib
import sys
from typing import Callable, Sequence

import gin

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
_USAGE = (
    "usage: python -m <entry> --gin_file=A.gin [--gin_file=B.gin ...] [--gin.KEY=VALUE ...] "
    "[--gin_bindings='KEY = VALUE' ...]"
)


class GinConfigError(ValueError):
  """A gin file or binding could not be parsed or names something unknown."""


def search_path() -> list[str]:
  """Where gin files and `include` lines are looked for, in order."""
  paths = [os.getcwd(), str(REPO_ROOT)]
  return list(dict.fromkeys(paths))


def parse_gin_flags(argv: Sequence[str]) -> tuple[list[str], list[str], list[str]]:
  """Splits argv into (gin files, gin bindings, the rest), keeping their order.

  Accepts `--gin_file=F` / `--gin_file F`, `--gin.KEY=VALUE` (t5x's shorthand for the binding
  `KEY = VALUE`) and `--gin_bindings=B` / `--gin_bindings B`.
  """
  files, bindings, rest = [], [], []
  args = list(argv)
  i = 0
  while i < len(args):
    arg = args[i]
    for flag, out in (("--gin_file", files), ("--gin_bindings", bindings)):
      if arg == flag:
        if i + 1 >= len(args):
          raise GinConfigError(f"{flag} needs a value. {_USAGE}")
        out.append(args[i + 1])
        i += 2
        break
      if arg.startswith(flag + "="):
        out.append(arg[len(flag) + 1:])
        i += 1
        break
    else:
      if arg.startswith("--gin."):
        key, sep, value = arg[len("--gin."):].partition("=")
        if not sep or not key:
          raise GinConfigError(f"Malformed flag {arg!r}: expected --gin.KEY=VALUE.")
        bindings.append(f"{key} = {value}")
      else:
        rest.append(arg)
      i += 1
  return files, bindings, rest


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
      f"--gin_file={name}: no such file (looked in the current directory and the repository root)."
  )


def parse_gin(
    gin_files: Sequence[str], gin_bindings: Sequence[str] = (), finalize: bool = True,
    clear: bool = True,
) -> None:
  """Parses files then bindings (later wins) with the search path; errors name their source."""
  if clear:
    gin.clear_config()
  for path in search_path():
    if path not in gin.config._LOCATION_PREFIXES:  # pylint: disable=protected-access
      gin.add_config_file_search_path(path)
  for name in gin_files:
    path = resolve_gin_file(name)
    try:
      gin.parse_config_file(path)
    except Exception as e:  # gin raises many types; re-raise with the file named.
      raise GinConfigError(f"--gin_file={name}: {_describe(e)}") from e
  for binding in gin_bindings:
    try:
      gin.parse_config(binding)
    except Exception as e:
      raise GinConfigError(f"--gin binding `{binding}`: {_describe(e)}") from e
  if finalize:
    try:
      gin.finalize()
    except Exception as e:  # e.g. a macro referenced but never bound.
      raise GinConfigError(f"gin config (files {list(gin_files)}): {_describe(e)}") from e


def _describe(e: Exception) -> str:
  msg = str(e).strip() or type(e).__name__
  return msg.replace(str(REPO_ROOT) + os.sep, "")


def query_macro(name: str, default=None):
  """The value of a gin macro, or `default` when it is not bound."""
  try:
    return gin.query_parameter(f"%{name}")
  except (ValueError, KeyError):
    return default


def require_macro(name: str):
  """The value of a gin macro that must be set, or an error naming it."""
  try:
    value = gin.query_parameter(f"%{name}")
  except (ValueError, KeyError):
    value = None
  if value is None or value is gin.REQUIRED:
    raise GinConfigError(
        f"The gin macro {name} is required but not set: add --gin.{name}=... or a gin file that "
        f"binds it."
    )
  return value


def run(main_fn: Callable[[list[str]], object], argv: Sequence[str] | None = None) -> None:
  """Entry point for `python -m ...`: parses gin flags, then calls main_fn(remaining argv)."""
  argv = list(sys.argv[1:] if argv is None else argv)
  if any(a in ("-h", "--help") for a in argv):
    print(_USAGE)
    print((sys.modules["__main__"].__doc__ or "").strip())
    return
  try:
    files, bindings, rest = parse_gin_flags(argv)
    parse_gin(files, bindings)
  except GinConfigError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  result = main_fn(rest)
  if isinstance(result, int):
    sys.exit(result)
