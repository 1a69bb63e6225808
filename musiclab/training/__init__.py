"""Training: corpora, examples and loops."""
