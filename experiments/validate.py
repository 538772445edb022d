r"""The in-loop validation loss of a saved checkpoint, evaluated apart from training.

  python -m experiments.validate <the run's --gin_file / --gin.KEY=VALUE flags> \
    [--checkpoint=MODEL_DIR/checkpoints/1000] [--eval_steps=20]

Takes the run's own gin stack (model, task, TASK_FEATURE_LENGTHS, BATCH_SIZE, partitioner,
EVAL_STEPS) and prints one JSON line {"step", "eval/loss", "eval/loss_per_token", ...}: the values
the trainer logged at that step (experiments/validation.py). --checkpoint defaults to MODEL_DIR's
newest complete step. Exit 2 on a bad configuration.
"""

from __future__ import annotations

if __name__ == "__main__":
  from experiments.runtime import cli
  cli.start()  # before JAX and TensorFlow load: see experiments/runtime/cli.py

import json  # noqa: E402  pylint: disable=g-import-not-at-top
from typing import Sequence  # noqa: E402  pylint: disable=g-import-not-at-top

from experiments import distributed  # noqa: E402  pylint: disable=g-import-not-at-top
from experiments import run_config  # noqa: E402  pylint: disable=g-import-not-at-top
from experiments import validation  # noqa: E402  pylint: disable=g-import-not-at-top
from experiments.runtime import gin_utils  # noqa: E402  pylint: disable=g-import-not-at-top

_OWN_FLAGS = ("--checkpoint", "--eval_steps")


def main(argv: Sequence[str]) -> int:
  files, bindings, rest = gin_utils.parse_gin_flags(argv)
  own: dict[str, str] = {}
  unknown = []
  for arg in rest:
    name, sep, value = arg.partition("=")
    if name in _OWN_FLAGS and sep:
      own[name] = value
    else:
      unknown.append(arg)
  if unknown:
    raise run_config.ConfigError(gin_utils.unknown_flag_message(unknown, _OWN_FLAGS))
  steps = own.get("--eval_steps")
  if steps is not None and not steps.isdigit():
    raise run_config.ConfigError(f"--eval_steps={steps}; expected a positive integer.")
  distributed.maybe_initialize()
  result = validation.evaluate_loss(files, bindings, checkpoint=own.get("--checkpoint"),
                                    eval_steps=int(steps) if steps is not None else None)
  print(json.dumps(result, sort_keys=True))
  return 0


if __name__ == "__main__":
  cli.run(main, doc=__doc__)
