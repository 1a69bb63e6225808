"""Generation: the one sampler every model goes through (prefill, step, grammar mask, sampling controls)."""
