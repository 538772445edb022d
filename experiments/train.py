r"""Pretraining, finetuning and adaptation, configured by gin (t5x conventions).

  python -m experiments.train \
    --gin_file=gin_configs/arch/causal_decoder.gin --gin_file=gin_configs/sizes/tiny.gin \
    --gin_file=gin_configs/data/embedded.gin --gin_file=gin_configs/objectives/full_lm.gin \
    --gin_file=gin_configs/runs/pretrain.gin --gin.MODEL_DIR="'runs/cd_flm'" --gin.TRAIN_STEPS=100

Resumes automatically from the latest complete checkpoint in MODEL_DIR (parameters, optimizer
state, step, RNG, data position); otherwise starts from INITIAL_CHECKPOINT_PATH (parameters only,
the step continues from that checkpoint's) or from scratch. Exits non-zero, keeping the last good
checkpoint, when the loss or the gradients stop being finite.
"""

from __future__ import annotations

import logging
import sys

from experiments.runtime import hostenv

if __name__ == "__main__":
  hostenv.reexec_with_tuned_allocator()  # before jax starts: see experiments/runtime/hostenv.py

from experiments import distributed  # noqa: E402  pylint: disable=g-import-not-at-top
from experiments.loop import (  # noqa: E402,F401
    REQUIRED_MACROS, NonFiniteError, Preempted, import_configurables, main, run, train)

if __name__ == "__main__":
  # Libraries imported above may have configured logging already: take it over.
  logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s",
                      force=True)
  logging.getLogger("absl").setLevel(logging.WARNING)  # orbax and seqio are chatty at INFO
  distributed.maybe_initialize()
  import_configurables()  # gin files name these configurables: register them before parsing
  if any(a in ("-h", "--help") for a in sys.argv[1:]):
    print(__doc__)
    sys.exit(0)
  sys.exit(main(sys.argv[1:]))
