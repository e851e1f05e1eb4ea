"""bayeslmm: linear mixed models from lme4 formulas — REML/ML fits that match lme4 and
Bayesian fits with PyMC, from one model specification and one log-density."""
from . import cov, datasets, priors
from .errors import ConvergenceWarning, LMMError, SingularFitWarning
from .inference import anova
from .rlrt import exact_rlrt
from .model import LMM
from .persist import load
from .results.bayesian import BayesResult, PosteriorWarning, compare
from .results.frequentist import LMMResult

__all__ = ["LMM", "LMMResult", "load", "anova", "exact_rlrt", "BayesResult", "compare", "cov", "priors", "LMMError", "ConvergenceWarning",
           "SingularFitWarning", "PosteriorWarning", "datasets"]
__version__ = "0.1.0"
