"""Zero-shot evaluation by rank classification: templates, loaders, suites, scoring, aggregation.

Imports: eval sits above arch and objectives and below experiments. It uses the model API (loss,
score) of any arch model, the embedded corpus and the prompt-template engine of objectives, and
experiments.runtime (flags, checkpoint format); it never imports the rest of experiments, and
objectives never imports eval.
"""
