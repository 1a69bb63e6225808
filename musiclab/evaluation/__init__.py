"""Evaluation: metrics, benchmarks."""
