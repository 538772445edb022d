"""Training and experiments: `python -m experiments.train` (t5x-style gin), the grid, results.

train (entry) -> loop (the run: checks, resume, feed, log, save) -> trainer (the jit step),
partitioning (mesh and logical axis rules), optimizers, checkpoints (orbax), data (seqio batches
with a resumable position), metrics (metrics.jsonl, TensorBoard, MFU), run_config (config checks).
"""
