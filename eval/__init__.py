"""Zero-shot evaluation by rank classification: templates, loaders, suites, scoring, aggregation."""
