"""The Bayesian path: the spec as a PyMC model (model), NUTS and initial values (sampling),
exact draws of β and b (draws), predictions and log-likelihoods (predictive)."""
from bayeslmm.bayes.draws import conditional_draws, factor_Ts, posterior_parameters
from bayeslmm.bayes.model import build_model
from bayeslmm.bayes.predictive import (
                                       add_pointwise_log_likelihood,
                                       group_log_likelihood,
                                       linear_predictor,
                                       residual_noise,
)
from bayeslmm.bayes.sampling import SAMPLERS, prior_predictive, resolve_sampler, sample
from bayeslmm.bayes.setup import BayesSetup, coords

__all__ = ["BayesSetup", "build_model", "sample", "prior_predictive", "conditional_draws", "posterior_parameters",
           "factor_Ts", "linear_predictor", "add_pointwise_log_likelihood", "group_log_likelihood",
           "residual_noise", "coords", "SAMPLERS", "resolve_sampler"]
