"""Inference on a REML/ML fit: t and F tests (fixed_effects, satterthwaite, kenward_roger), LRTs
(lrt, rlrt), intervals (profile), the parametric bootstrap and the variance-components table."""
