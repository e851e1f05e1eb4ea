"""A start for θ near the optimum with several grouping factors: each factor fitted alone.

With crossed random intercepts of thousands of levels (the issue's 60,000 users × 8,000 items)
an evaluation of the deviance and its gradient is a Cholesky factor and inverse of the
8,000 × 8,000 second block, ~12 s on one thread, and L-BFGS-B from lme4's start (every sd equal
to σ) spends its first five of fourteen evaluations finding the scale; with vector-valued terms
on crossed factors (subjects × items) it spends half its evaluations there.  Each grouping factor
alone is a one-factor model fitted from the same statistics in milliseconds.  Alone, factor f's
residual variance absorbs the other factors' contributions, s²_f ≈ σ² + Σ_{g≠f} v_g, with v_g the
mean over rows of z_g'Σ_g z_g (a random intercept's variance), while its own covariance Σ_f is
about right; so σ² ≈ mean_f (s²_f − Σ_{g≠f} v_g) and T_f = chol(Σ_f / σ²).  This moment
matching is only a start: the optimiser then finds the optimum as from any other.
"""
from __future__ import annotations

import warnings

import numpy as np
from scipy.optimize import minimize_scalar

from bayeslmm.errors import ConvergenceWarning
from bayeslmm.linalg import gradient as gr
from bayeslmm.linalg import logdensity as ld
from bayeslmm.linalg.crossprod import CrossProducts
from bayeslmm.model.covariance import ThetaLayout

SMALLEST_START = 0.05  # in θ's natural units: a start on the bound would stay there (zero derivative)
ALONE_GTOL = 1e-5  # a factor fitted alone needs θ to a few digits only: it is a start


def one_factor_statistics(stats: CrossProducts, factor: int, sizes: tuple[int, ...] | None = None) -> CrossProducts:
    """The cross-products of the model with only grouping factor ``factor`` (``sizes``: every
    factor's number of columns S_f; scalar terms by default)."""
    if factor == 0:
        ZtZ, ZtXY = stats.ZtZ1, stats.ZtXY1
    else:
        sizes = sizes or (1,) * len(stats.levels)
        first = sum(G * S for G, S in zip(stats.levels[1:factor], sizes[1:factor]))
        rows = first + np.arange(stats.levels[factor] * sizes[factor]).reshape(stats.levels[factor], sizes[factor])
        ZtZ, ZtXY = stats.ZtZ2[rows[:, :, None], rows[:, None, :]], stats.ZtXY2[rows]
    return CrossProducts(stats.n, stats.p, stats.XYtXY, ZtZ, ZtXY, None, None, None, (stats.levels[factor],),
                         log_weights=stats.log_weights)


def factor_layout(layout: ThetaLayout, factor: int) -> ThetaLayout:
    """The θ layout of grouping factor ``factor``'s terms alone."""
    rows, cols, index = layout.entries[factor]
    return ThetaLayout(index.size, layout.lower[index], tuple(layout.names[i] for i in index),
                       (layout.factor_sizes[factor],), ((rows, cols, np.arange(index.size)),), layout.scale[index])


def variances_alone(stats: CrossProducts, layout: ThetaLayout, reml: bool) -> tuple[float, float]:
    """The variance of a one-factor model's scalar term and the residual variance (bounded Brent
    search over θ in [0, 10 × its natural size], on the compiled one-factor deviance)."""
    theta = minimize_scalar(lambda t: gr.objective(np.array([t]), stats, layout, reml),
                            bounds=(0.0, 10.0 * float(layout.scale[0])), method="bounded").x
    return _covariance_and_residual(np.array([[theta]]), stats, reml)


def covariance_alone(stats: CrossProducts, layout: ThetaLayout, reml: bool, fit) -> tuple[np.ndarray, float]:
    """The covariance Σ_f (S_f × S_f) and the residual variance of a one-factor model with vector
    terms, fitted by ``fit`` (:func:`bayeslmm.fit.optimize.fit_theta`, passed in by the optimiser
    that imports this module: with its false-boundary probes, since a variance stopped at 0 would
    start the full fit there) to ALONE_GTOL."""
    with warnings.catch_warnings():  # a start: its fit's own convergence is not the user's concern
        warnings.simplefilter("ignore", ConvergenceWarning)
        summary = fit(stats, layout, reml, tolerances={"gtol": ALONE_GTOL, "ftol": 1e-12})
    return _covariance_and_residual(layout.factors_T(summary.theta)[0], stats, reml)


def _covariance_and_residual(T: np.ndarray, stats: CrossProducts, reml: bool):
    """σ̂²TT' and σ̂² of a one-factor model at its T (variance, residual for a scalar term)."""
    prof = ld.profile(ld.factorize_T([T], stats), stats.p)
    residual = ld.sigma2_hat(prof, stats.n, reml)
    covariance = residual * T @ T.T
    return (covariance[0, 0] if T.shape == (1, 1) else covariance), residual


def moment_start(stats: CrossProducts, layout: ThetaLayout, reml: bool, fit) -> np.ndarray | None:
    """θ from each factor fitted alone (see the module docstring; ``fit`` fits a factor's vector
    terms: :func:`bayeslmm.fit.optimize.fit_theta`), or None with one factor, or where the
    moments give no positive residual variance."""
    if stats.n_factors < 2 or len(layout.factor_sizes) != len(stats.levels):
        return None
    covariances, residuals, contributions = [], [], []
    for f, size in enumerate(layout.factor_sizes):
        alone, own = one_factor_statistics(stats, f, layout.factor_sizes), factor_layout(layout, f)
        if own.size == 1 and size == 1:  # a scalar term: a Brent search
            variance, residual = variances_alone(alone, own, reml)
            covariance = np.array([[variance]])
        else:
            covariance, residual = covariance_alone(alone, own, reml, fit)
        covariances.append(covariance)
        residuals.append(residual)
        contributions.append(np.trace(covariance @ alone.ZtZ1.sum(axis=0)) / stats.n)
    total = sum(contributions)
    sigma2 = np.mean([residual - (total - own) for residual, own in zip(residuals, contributions)])
    if not np.isfinite(sigma2) or sigma2 <= 0:
        return None
    theta = np.zeros(layout.size)
    for (rows, cols, index), covariance in zip(layout.entries, covariances):
        T = _cholesky_of_semidefinite(covariance / sigma2)
        theta[index] = T[rows, cols]
    return _off_the_bound(theta, layout)


def _off_the_bound(theta: np.ndarray, layout: ThetaLayout) -> np.ndarray:
    """Diagonal entries raised to at least SMALLEST_START (in θ's natural units), also those a
    factor alone fitted as 0: on the bound the deviance is flat in θ_j (it depends on θ_j²), so
    L-BFGS-B would stay there, and where the optimum needs that column and the entries below
    it to move together (a maximal ML fit here) the false-boundary probes, one entry at a time,
    do not find it."""
    smallest = SMALLEST_START * layout.scale
    return np.where(layout.diagonal, np.maximum(theta, smallest), theta)


def _cholesky_of_semidefinite(covariance: np.ndarray) -> np.ndarray:
    """A lower Cholesky factor of a positive semi-definite matrix (a singular one, e.g. a variance
    fitted as 0, with a ridge of 1e-10 of its trace; else the square roots of its diagonal)."""
    ridge = 1e-10 * max(float(np.trace(covariance)), 1e-300)
    try:
        return np.linalg.cholesky(covariance + ridge * np.eye(covariance.shape[0]))
    except np.linalg.LinAlgError:
        return np.diag(np.sqrt(np.maximum(np.diag(covariance), 0.0)))
