"""A jax.profiler trace of a window of training steps (PROFILE_STEPS = (start, stop)).

Steps start .. stop - 1 (absolute step numbers, as TRAIN_STEPS) are traced into
MODEL_DIR/plugins/profile/<timestamp>/<host>.xplane.pb, where TensorBoard's profile plugin finds
them (`tensorboard --logdir MODEL_DIR`, Profile tab; it needs the tensorboard-plugin-profile
package). Each step is annotated with its number, so the trace viewer splits the timeline by
step. Start a few steps after the first: the first steps include compilation and warm-up. On
several hosts each writes its own file. A window that a resumed run has already passed is skipped
with a log line.
"""

from __future__ import annotations

import logging
import pathlib
from typing import Any, Sequence

import jax

from experiments.runtime import errors

BINDING = "experiments.train.train.profile_steps"


class ProfileConfigError(errors.ConfigError):
  """PROFILE_STEPS is not a (start, stop) pair of step numbers with 1 <= start < stop."""


def check_steps(steps: Sequence[int] | None) -> tuple[int, int] | None:
  """(start, stop) from the gin value, or None when profiling is off; ProfileConfigError if bad."""
  if steps is None:
    return None
  if (not isinstance(steps, (tuple, list)) or len(steps) != 2
      or any(isinstance(s, bool) or not isinstance(s, int) for s in steps)
      or not 1 <= steps[0] < steps[1]):
    raise ProfileConfigError(
        f"{BINDING} = {steps!r} (PROFILE_STEPS) is invalid: expected None or (start, stop), "
        f"absolute step numbers with 1 <= start < stop; (10, 15) traces steps 10 to 14.")
  start, stop = steps
  return start, stop


class ProfileWindow:
  """Starts the trace before step `start` and stops it after step `stop - 1` has finished."""

  def __init__(self, model_dir: str | pathlib.Path, steps: Sequence[int] | None,
               first_step: int, last_step: int):
    self.window = check_steps(steps)
    self.log_dir = str(model_dir)
    self.active = False
    if self.window is not None:
      start, stop = self.window
      if stop <= first_step or start > last_step:
        logging.info("PROFILE_STEPS = %s lies outside this run's steps %d..%d: no trace.",
                     self.window, first_step, last_step)
        self.window = None
      else:  # a resumed run inside the window traces what is left of it
        self.window = (max(start, first_step), stop)

  def before_step(self, step: int) -> None:
    if self.window is not None and not self.active and step == self.window[0]:
      jax.profiler.start_trace(self.log_dir)
      self.active = True
      logging.info("Profiling steps %d..%d into %s/plugins/profile.", step,
                   self.window[1] - 1, self.log_dir)

  def after_step(self, step: int, outputs: Any) -> None:
    """After `step` was dispatched; at the window's end waits for `outputs`, then stops."""
    if self.active and step >= self.window[1] - 1:
      jax.block_until_ready(outputs)  # the trace holds the device's work, not only its dispatch
      self.close()

  def close(self) -> None:
    """Stops an active trace (also when the run stops inside the window)."""
    if self.active:
      self.active = False
      self.window = None
      jax.profiler.stop_trace()
      logging.info("Profile written under %s/plugins/profile.", self.log_dir)
