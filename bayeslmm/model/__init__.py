"""What a model is, independent of how it is fitted: the spec, the covariance parameters of its
random terms, its residual structure, its priors and its variance partition."""
