"""Training: data through `datasets`, tokenizers, the `Trainer` runs for classifiers and generators, metrics."""
