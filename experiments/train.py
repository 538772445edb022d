r"""Pretraining, finetuning and adaptation, configured by gin (t5x conventions).

  python -m experiments.train \
    --gin_file=gin_configs/arch/causal_decoder.gin --gin_file=gin_configs/sizes/small.gin \
    --gin_file=gin_configs/data/embedded.gin --gin_file=gin_configs/objectives/full_lm.gin \
    --gin_file=gin_configs/runs/pretrain.gin --gin.MODEL_DIR="'runs/cd_flm'"

Append --gin_file=gin_configs/local_tiny.gin for a CPU-sized run (tiny model, batch, lengths and
steps). Flags: --gin_file, --gin.KEY=VALUE, --gin_bindings, --gin_search_paths, --tfds_data_dir,
--verbose. Resumes automatically from the latest complete checkpoint in MODEL_DIR (parameters,
optimizer state, step, RNG, data position); otherwise starts from INITIAL_CHECKPOINT_PATH
(parameters and optimizer state, as t5x's finetuning; the step continues from that checkpoint's;
experiments.train.train.restore_optimizer_state=False for a fresh optimizer state) or from
scratch. Exits 1, keeping the
last good checkpoint, when the loss or the gradients stop being finite; 2 on a bad configuration;
143 after saving on SIGTERM (on several hosts a SIGTERM to any one makes all save the same step
and exit 143; experiments/distributed.py).
"""

from __future__ import annotations

if __name__ == "__main__":
  from experiments.runtime import cli
  cli.start()  # before JAX and TensorFlow load: see experiments/runtime/cli.py

from experiments.loop import (  # noqa: E402,F401  pylint: disable=g-import-not-at-top
    NonFiniteError, Preempted, import_configurables, main, run, train)

if __name__ == "__main__":
  cli.run(main, doc=__doc__)
