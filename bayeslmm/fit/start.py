"""A start for θ near the optimum, for fits whose every evaluation costs seconds.

With crossed random intercepts of thousands of levels (the issue's 60,000 users × 8,000 items)
an evaluation of the deviance and its gradient is a Cholesky factor and inverse of the
8,000 × 8,000 second block, ~12 s on one thread, and L-BFGS-B from lme4's start (every sd equal
to σ) spends its first five of fourteen evaluations finding the scale.  Each grouping factor
alone is a one-factor model fitted from the same statistics in milliseconds.  Alone, factor f's
residual variance absorbs the other factors' variances, s²_f ≈ σ² + Σ_{g≠f} v_g, while its own
variance v_f is about right; so σ² ≈ mean_f (s²_f − Σ_{g≠f} v_g) and θ_f = √(v_f / σ²).  This
moment matching is only a start: the optimiser then finds the optimum as from any other.
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar

from bayeslmm.linalg import logdensity as ld
from bayeslmm.linalg.crossprod import CrossProducts
from bayeslmm.model.covariance import ThetaLayout

SMALLEST_START = 0.05  # in θ's natural units: a start on the bound would stay there (zero derivative)


def one_factor_statistics(stats: CrossProducts, factor: int) -> CrossProducts:
    """The cross-products of the model with only grouping factor ``factor`` (a scalar term)."""
    if factor == 0:
        ZtZ, ZtXY = stats.ZtZ1, stats.ZtXY1
    else:
        first = sum(stats.levels[1:factor])  # one column per level in the second block
        rows = np.arange(first, first + stats.levels[factor])
        ZtZ, ZtXY = stats.ZtZ2[rows, rows].reshape(-1, 1, 1), stats.ZtXY2[rows][:, None, :]
    return CrossProducts(stats.n, stats.p, stats.XYtXY, ZtZ, ZtXY, None, None, None, (stats.levels[factor],),
                         log_weights=stats.log_weights)


def variances_alone(stats: CrossProducts, scale: float, reml: bool) -> tuple[float, float]:
    """The random-intercept variance and the residual variance of a one-factor model (bounded
    Brent search over θ in [0, 10 × its natural size])."""
    def deviance(theta):
        fact = ld.factorize_T([np.array([[theta]])], stats)
        prof = None if fact is None else ld.profile(fact, stats.p)
        return np.inf if prof is None else ld.profiled_deviance(fact, prof, stats.n, reml)

    theta = minimize_scalar(deviance, bounds=(0.0, 10.0 * scale), method="bounded").x
    prof = ld.profile(ld.factorize_T([np.array([[theta]])], stats), stats.p)
    residual = ld.sigma2_hat(prof, stats.n, reml)
    return theta**2 * residual, residual


def moment_start(stats: CrossProducts, layout: ThetaLayout, reml: bool) -> np.ndarray | None:
    """θ from each factor fitted alone (see the module docstring), or None where a factor has
    more than one column or the moments give no positive residual variance."""
    if stats.n_factors < 2 or any(size != 1 for size in layout.factor_sizes) or layout.size != len(stats.levels):
        return None
    scales = [float(layout.scale[index][0]) for _, _, index in layout.entries]
    alone = [variances_alone(one_factor_statistics(stats, f), scale, reml) for f, scale in enumerate(scales)]
    own = np.array([variance for variance, _ in alone])
    sigma2 = np.mean([residual - (own.sum() - variance) for variance, residual in alone])
    if not np.isfinite(sigma2) or sigma2 <= 0:
        return None
    theta = np.zeros(layout.size)
    for (_, _, index), variance, scale in zip(layout.entries, own, scales):
        theta[index] = max(np.sqrt(variance / sigma2), SMALLEST_START * scale)
    return theta
