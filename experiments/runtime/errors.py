"""The one base class of the harness's configuration errors: an entry point prints its message as
one `error:` line and exits 2 (a failed run exits 1)."""


class ConfigError(ValueError):
  """Bad input found before any expensive work: names the setting, file or line, and what fits."""
