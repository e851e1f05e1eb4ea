"""Plots of a fit (a REML/ML ``LMMResult`` or a ``BayesResult`` posterior), each returning a
matplotlib Figure.  matplotlib (and arviz-plots) are imported only when a plot is drawn."""
from bayeslmm.plots.caterpillar import caterpillar
from bayeslmm.plots.lattice import lattice, spaghetti
from bayeslmm.plots.posterior import forest, posterior_predictive, trace
from bayeslmm.plots.predictions import conditional_effects, predictions
from bayeslmm.plots.profile import profile_zeta
from bayeslmm.plots.residuals import (
           qq_ranef,
           qq_residuals,
           residual_diagnostics,
           residuals_by_group,
           residuals_vs_fitted,
)

__all__ = ["caterpillar", "residual_diagnostics", "residuals_vs_fitted", "qq_residuals", "qq_ranef",
           "residuals_by_group", "predictions", "conditional_effects",
           "lattice", "spaghetti", "profile_zeta",
           "forest", "trace", "posterior_predictive"]
