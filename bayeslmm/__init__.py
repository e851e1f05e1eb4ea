"""bayeslmm: linear mixed models from lme4 formulas — REML/ML fits that match lme4, from one log-density."""
from . import datasets
from .errors import ConvergenceWarning, LMMError, SingularFitWarning
from .model import LMM
from .results.frequentist import LMMResult

__all__ = ["LMM", "LMMResult", "LMMError", "ConvergenceWarning", "SingularFitWarning", "datasets"]
__version__ = "0.1.0"
