"""The runtime every package shares, below all of them.

  gin_utils    t5x flags (--gin_file, --gin.K=V, --gin_bindings, --gin_search_paths,
               --tfds_data_dir) and order-independent gin stacks with %gin.REQUIRED checks
  cli          the wrapper of every `python -m` entry point: host re-exec, quiet logs, exit codes
  hostenv      the CPU allocator re-exec (standard library only)
  accelerators start-up checks: TensorFlow kept off the GPUs; a loud warning (or, with
               REQUIRE_ACCELERATOR, an error) when JAX runs on the CPU of a GPU/TPU host
  checkpoints  the checkpoint format (orbax): written by the trainer, read by the trainer, the
               evaluator and the grid
  errors       ConfigError, the base of every bad-configuration error (exit 2)

Imports: arch/, objectives/ and eval/ may import this subpackage and nothing else of experiments/;
it imports none of them. gin_utils, cli, hostenv, accelerators and errors import only the standard
library and gin at import time (accelerators imports JAX and TensorFlow inside its functions), so an
entry point can re-exec before JAX or TensorFlow is loaded. The checkpoint format lives here rather
than in the trainer because the evaluator reads it too and must not import the trainer.
"""
