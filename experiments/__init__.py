"""Training and experiments: `python -m experiments.train` (t5x-style gin), the grid, results.

Imports: experiments is the top package; it may import eval, objectives and arch. Its runtime
subpackage (experiments/runtime/: flags, gin stacks, entry-point wrapper, checkpoint format) is
below every package and imports none of them.

train (entry) -> loop (the run: checks, resume, feed, log, save) -> trainer (the jit step),
partitioning (mesh and logical axis rules), optimizers (gin; adafactor: t5x's Adafactor), data
(seqio batches with a resumable position), metrics (metrics.jsonl, TensorBoard, MFU), validation
(in-loop eval/ loss on the validation split; `python -m experiments.validate` for a checkpoint),
run_config (config checks).
"""
