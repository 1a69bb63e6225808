"""Evaluation: musical metrics, the evaluate CLI and page logic, the JSB Chorales benchmark, speed benchmarks."""
