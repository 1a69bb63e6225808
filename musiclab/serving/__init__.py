"""Serving: shipped weights and model cards on disk, and generation jobs with a FIFO of slots."""
