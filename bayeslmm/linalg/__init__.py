"""The math, written once: cross-products of [Z X y], batched small-block kernels and THE marginal
log-density (factorization, profiled deviance, gradient, conditional modes)."""
