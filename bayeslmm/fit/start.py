"""A start for θ near the optimum with several grouping factors: each factor fitted alone.

With crossed random intercepts of thousands of levels (the issue's 60,000 users × 8,000 items)
an evaluation of the deviance and its gradient is a Cholesky factor and inverse of the
8,000 × 8,000 second block, ~12 s on one thread, and L-BFGS-B from lme4's start (every sd equal
to σ) spends its first five of fourteen evaluations finding the scale; with vector-valued terms
on crossed factors (subjects × items) it spends half its evaluations there.  Each grouping factor
alone is a one-factor model fitted from the same statistics in milliseconds.  Alone, factor f's
fit absorbs every other factor g's contribution v_g (the mean over rows of z_g'Σ_g z_g, a random
intercept's variance) into its residual where g varies within f's levels (crossed), and into its
own covariance where g is constant within them (f nested in g: classes fitted alone take their
schools' variance).  With n_jk the rows in level j of f and k of g, n_j = Σ_k n_jk and
S_j = Σ_k n_jk²/n_j² (the share of g's variance in level j's mean):

    own covariance: c_f = v_f + Σ_g a_fg v_g,
                    a_fg = max(0, Σ_j (n_j/n)[S_j − (1 − S_j)/(n_j − 1)] − Σ_k (n_k/n)²)
    residual:       s²_f = σ² + Σ_g r_fg v_g,   r_fg = Σ_j n_j(1 − S_j) / Σ_j (n_j − 1)

a_fg is the variance of g's effect between f's level means beyond what a residual of that size
would give them, less what the intercept takes; r_fg its share within the levels.  Crossed
(every level of f meets a level of g at most once, S_j = 1/n_j) a_fg = 0 and r_fg = 1; nested,
a_fg = 1 − Σ_k (n_k/n)² and r_fg = 0.  So v = (I + A)⁻¹c, σ² = mean_f (s²_f − Σ_g r_fg v_g) and
T_f = chol(Σ_f (v_f/c_f) / σ²), Σ_f the covariance fitted alone.  This moment matching is only a
start: the optimiser then finds the optimum as from any other.
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
ALONE_XTOL = 1e-3  # Brent's tolerance, in units of θ's natural size, for the same reason


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
    theta = _best_multiple(layout.start, stats, layout, reml)
    return _covariance_and_residual(np.array([[theta[0]]]), stats, reml)


def covariance_alone(stats: CrossProducts, layout: ThetaLayout, reml: bool, fit) -> tuple[np.ndarray, float]:
    """The covariance Σ_f (S_f × S_f) and the residual variance of a one-factor model with vector
    terms, fitted by ``fit`` (:func:`bayeslmm.fit.optimize.fit_theta`, passed in by the optimiser
    that imports this module: with its false-boundary probes, since a variance stopped at 0 would
    start the full fit there) to ALONE_GTOL, from the best multiple of lme4's start (from lme4's
    start itself L-BFGS-B's first steps leave for θ ~10 away: 31 gradients where this takes 13
    and a Brent search of 15 deviances, for a school's intercept and slope)."""
    start = _best_multiple(layout.start, stats, layout, reml)
    with warnings.catch_warnings():  # a start: its fit's own convergence is not the user's concern
        warnings.simplefilter("ignore", ConvergenceWarning)
        summary = fit(stats, layout, reml, start=start, tolerances={"gtol": ALONE_GTOL, "ftol": 1e-12})
    return _covariance_and_residual(layout.factors_T(summary.theta)[0], stats, reml)


def _best_multiple(direction: np.ndarray, stats: CrossProducts, layout: ThetaLayout, reml: bool) -> np.ndarray:
    """t·``direction`` minimising the deviance over t in [0, 10], by a bounded Brent search to
    ALONE_XTOL (``direction``: lme4's start, each diagonal θ's natural size)."""
    def deviance(t):
        return gr.objective(t * direction, stats, layout, reml, unrolled=True)

    t = minimize_scalar(deviance, bounds=(0.0, 10.0), method="bounded", options={"xatol": ALONE_XTOL}).x
    return t * direction


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
    absorbed, within = absorbed_shares(stats, layout.factor_sizes)
    contributions = np.array(contributions)
    try:
        own = np.maximum(np.linalg.solve(np.eye(contributions.size) + absorbed, contributions), 0.0)
    except np.linalg.LinAlgError:  # I + A singular (not met on any design here): the crossed moments
        own = contributions
    sigma2 = np.mean(np.array(residuals) - within @ own)
    if not np.isfinite(sigma2) or sigma2 <= 0:
        return None
    theta = np.zeros(layout.size)
    for (rows, cols, index), covariance, mine, alone in zip(layout.entries, covariances, own, contributions):
        T = _cholesky_of_semidefinite(covariance * (mine / alone if alone > 0 else 0.0) / sigma2)
        theta[index] = T[rows, cols]
    return _off_the_bound(theta, layout)


def absorbed_shares(stats: CrossProducts, sizes: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(A, R), (F, F) each with zero diagonals: the share a_fg of factor g's contribution that
    factor f fitted alone takes into its own covariance, and the share r_fg it takes into its
    residual (the module docstring), from the counts n_jk of the factors' first columns
    (intercepts) in the cross-products."""
    F = len(stats.levels)
    counts = [_level_counts(stats, sizes, f) for f in range(F)]
    absorbed, within = np.zeros((F, F)), np.zeros((F, F))
    for f in range(F):
        for g in range(f + 1, F):
            by_f, by_g = _squared_counts(stats, sizes, f, g)
            for mine, other, squares in ((f, g, by_f), (g, f, by_g)):
                absorbed[mine, other], within[mine, other] = _shares(counts[mine], counts[other], squares)
    return absorbed, within


def _shares(n_j: np.ndarray, n_k: np.ndarray, squares: np.ndarray) -> tuple[float, float]:
    """a_fg and r_fg of the module docstring from f's counts n_j, g's n_k and Σ_k n_jk² per j."""
    share = np.divide(squares, n_j**2, out=np.zeros_like(n_j), where=n_j > 0)  # S_j
    residual_like = np.divide(1.0 - share, n_j - 1.0, out=np.zeros_like(n_j), where=n_j > 1)
    intercept = np.sum((n_k / n_k.sum()) ** 2)
    absorbed = max(0.0, float(np.sum(n_j / n_j.sum() * (share - residual_like))) - intercept)
    degrees = np.sum(np.maximum(n_j - 1.0, 0.0))
    return absorbed, (float(np.sum(n_j * (1.0 - share)) / degrees) if degrees > 0 else 0.0)


def _first_columns(stats: CrossProducts, sizes: tuple[int, ...], f: int) -> np.ndarray:
    """The positions of factor f's first column, level by level: in Z1 (f = 0) or in Z2."""
    if f == 0:
        return sizes[0] * np.arange(stats.levels[0])
    first = sum(G * S for G, S in zip(stats.levels[1:f], sizes[1:f]))
    return first + sizes[f] * np.arange(stats.levels[f])


def _level_counts(stats: CrossProducts, sizes: tuple[int, ...], f: int) -> np.ndarray:
    """n_j: the diagonal of Z_f'Z_f in f's first column (rows per level for an intercept)."""
    if f == 0:
        return stats.ZtZ1[:, 0, 0].copy()
    return np.diag(stats.ZtZ2)[_first_columns(stats, sizes, f)]


def _squared_counts(stats: CrossProducts, sizes: tuple[int, ...], f: int, g: int) -> tuple[np.ndarray, np.ndarray]:
    """Σ_k n_jk² for every level j of f and Σ_j n_jk² for every level k of g (f < g), n_jk from
    Z_f'Z_g in both factors' first columns."""
    rows, cols = _first_columns(stats, sizes, g), _first_columns(stats, sizes, f)
    if f == 0:  # Z2'Z1 level by level of the first factor: its non-zero rows in g's first column
        columns = stats.z2tz1_by_level
        level = np.repeat(np.arange(stats.levels[0]), np.diff(columns.start))
        in_g = np.zeros(stats.ZtZ2.shape[0], dtype=bool)
        in_g[rows] = True
        mine = in_g[columns.rows]
        squares = columns.values[mine, 0] ** 2
        by_g = np.bincount(columns.rows[mine], squares, minlength=stats.ZtZ2.shape[0])[rows]
        return np.bincount(level[mine], squares, minlength=stats.levels[0]), by_g
    squared = stats.ZtZ2[np.ix_(rows, cols)] ** 2
    return squared.sum(axis=0), squared.sum(axis=1)


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
