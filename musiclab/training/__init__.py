"""Training: corpus tokenizing, the training loop (single process or torchrun), n-gram baselines, model cards."""
