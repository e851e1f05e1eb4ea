"""bayeslmm: linear mixed models from lme4 formulas — REML/ML fits that match lme4 and
Bayesian fits with PyMC, from one model specification and one log-density."""
from bayeslmm import cov, datasets, plots, priors
from bayeslmm.errors import ConvergenceWarning, LMMError, SamplerFallbackWarning, SingularFitWarning
from bayeslmm.inference.lrt import anova
from bayeslmm.inference.rlrt import exact_rlrt
from bayeslmm.lmm import LMM
from bayeslmm.loading import load
from bayeslmm.results.bayesian import BayesResult, PosteriorWarning, compare
from bayeslmm.results.frequentist import LMMResult

__all__ = ["LMM", "LMMResult", "load", "anova", "exact_rlrt", "BayesResult", "compare", "cov", "priors", "LMMError", "ConvergenceWarning",
           "SingularFitWarning", "PosteriorWarning", "SamplerFallbackWarning", "datasets", "plots"]
__version__ = "0.1.0"
