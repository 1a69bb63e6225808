"""Training: corpus tokenizing, the training loop (single process or torchrun), n-gram baselines, model cards; the flagship's corpus, examples and resumable loop."""
