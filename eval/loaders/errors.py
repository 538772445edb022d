"""The two ways a data set can fail to load."""

from experiments.runtime.errors import ConfigError


class DatasetUnavailable(RuntimeError):
  """The data set is not there (no local file, TFDS not prepared): reported in results 'missing'."""


class LoaderError(ConfigError):
  """The data set is there but malformed: an error naming file, line and field, never skipped."""
