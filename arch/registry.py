"""The architectures, each named once: name -> model factory and what other packages need to know.

Validation, the grid, accounting, the trainer and the tests read this registry; no other module
lists architecture names. The built-ins register themselves in arch/models.py, so `import
arch.models` (or `import arch`) fills it; a new architecture is one `register` call in its own
module. Only the standard library and the runtime's error base are imported here, so any package
may read the registry without pulling in JAX.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Callable, Mapping

from experiments.runtime.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Architecture:
  """One architecture: its factory and the properties validation, the grid and accounting read."""

  name: str  # 'causal_decoder': the gin value of arch.models.get_model.name
  short: str  # 'CD': grid cell names and tables
  build: Callable[..., Any]  # build(config, z_loss=...) -> arch.models.BaseModel
  encoder_decoder: bool  # a separate encoder reads the 'inputs' feature
  bidirectional_prefix: bool  # decoder-only, attending bidirectionally over the prefix
  feature_converter_cls: type  # the seqio feature converter the model's batches come from
  flop_rule: Callable[..., Any]  # arch/flops.py: tokens and attention pairs per example
  default_feature_lengths: Mapping[str, int]  # accounting's default (the paper's shape)


class UnknownArchitectureError(ConfigError):
  """A name that no registered architecture has; the message lists the registered names."""


_REGISTRY: dict[str, Architecture] = {}


def register(arch: Architecture, *, replace: bool = False) -> Architecture:
  """Adds `arch` under its name; a second registration of a name needs replace=True."""
  if not isinstance(arch, Architecture):
    raise TypeError(f"arch.registry.register takes an arch.registry.Architecture, got "
                    f"{type(arch).__name__}.")
  if arch.name in _REGISTRY and not replace:
    raise ValueError(f"Architecture {arch.name!r} is already registered; pass replace=True to "
                     f"redefine it.")
  clash = [a.name for a in _REGISTRY.values() if a.short == arch.short and a.name != arch.name]
  if clash:
    raise ValueError(f"Architecture {arch.name!r}: short name {arch.short!r} is already "
                     f"{clash[0]!r}'s (grid cells are named by it).")
  _REGISTRY[arch.name] = arch
  return arch


def _builtins() -> None:
  """Registers the built-in architectures (arch/models.py) on first use of the registry.

  Imported here, lazily, so that `import arch` stays light (an entry point re-execs itself before
  JAX loads) and registry.py stays a leaf that models.py can import.
  """
  importlib.import_module("arch.models")


def get(name: str) -> Architecture:
  """The architecture registered as `name`."""
  _builtins()
  try:
    return _REGISTRY[name]
  except (KeyError, TypeError):
    raise UnknownArchitectureError(
        f"{name!r} is not a registered architecture: expected one of "
        f"{', '.join(repr(n) for n in _REGISTRY)}."
    ) from None


def names() -> tuple[str, ...]:
  """Registered names, in registration order."""
  _builtins()
  return tuple(_REGISTRY)
