"""The one base class of the harness's configuration errors: an entry point prints its message as
one `error:` line and exits 2 (a failed run exits 1)."""


class ConfigError(ValueError):
  """Bad input found before any expensive work: names the setting, file or line, and what fits."""


def as_raised(e: BaseException) -> BaseException:
  """The exception a gin configurable raised: gin re-raises a proxy of the same type whose message
  appends the call site ("In call to configurable ..."); the original is its context."""
  original = e.__context__
  if (isinstance(original, Exception) and type(e) is not type(original)
      and isinstance(e, type(original)) and str(e).startswith(str(original))):
    return original
  return e


def call_unwrapped(fn, *args, **kwargs):
  """fn(*args, **kwargs), raising what a gin configurable inside raised rather than gin's proxy
  (so callers catch the harness's own error types and messages stay as written)."""
  try:
    return fn(*args, **kwargs)
  except Exception as proxy:  # pylint: disable=broad-except
    e = as_raised(proxy)
    if e is proxy:
      raise
    raise e from e.__cause__
