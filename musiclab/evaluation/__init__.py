"""Evaluation: musical metrics, the evaluate CLI and page logic, the JSB Chorales benchmark, speed and quality benchmarks, bits per note."""
