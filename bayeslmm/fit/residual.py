"""REML / ML with a residual covariance structure: the shared log-density on whitened data.

−2ℓ(θ, φ) = −2ℓ_iid(θ; W_φ[y X Z]) + Σ_i log|R_i(φ)|: the data are whitened group by
group for each φ, their cross-products recomputed, and the one log-density evaluated.
"""
from __future__ import annotations

import dataclasses
import warnings

import numpy as np
from scipy.optimize import minimize

from .. import logdensity as ld
from ..crossprod import cross_products
from ..errors import ConvergenceWarning, LMMError
from ..spec import ModelSpec
from ..theta import ThetaLayout
from .optimize import GRADIENT_TOLERANCE, ThetaFit, fit_theta, snap_to_bounds


def check_nesting(spec: ModelSpec, bound) -> None:
    """Whitening mixes rows within a residual group: each group must sit in one level of every factor."""
    groups = bound.groups
    for factor in spec.factors:
        levels_per_group = np.zeros(groups.max() + 1, dtype=int)
        pairs = np.unique(np.column_stack([groups, factor.codes]), axis=0)
        np.add.at(levels_per_group, pairs[:, 0], 1)
        if np.any(levels_per_group > 1):
            raise LMMError(f"the residual structure's groups must each lie within one level of {factor.name!r}; "
                           "use the same grouping (e.g. AR1(time='visit', group='tree') with (1 | tree))")


def whitened_spec(spec: ModelSpec, bound, phi) -> tuple[ModelSpec, float]:
    """The spec with y, X and every factor's columns whitened at φ, and Σ log|R_i(φ)|."""
    widths = [spec.p] + [f.n_columns for f in spec.factors]
    stacked, logdet = bound.whiten(phi, np.column_stack([spec.y, spec.X] + [f.raw for f in spec.factors]))
    pieces = np.split(stacked[:, 1:], np.cumsum(widths)[:-1], axis=1)
    factors = tuple(dataclasses.replace(f, raw=piece) for f, piece in zip(spec.factors, pieces[1:]))
    return dataclasses.replace(spec, y=stacked[:, 0], X=pieces[0], factors=factors), logdet


def objective(x, spec: ModelSpec, layout: ThetaLayout, bound, reml: bool) -> float:
    theta, phi = x[: layout.size], x[layout.size:]
    try:
        white, logdet = whitened_spec(spec, bound, phi)
    except np.linalg.LinAlgError:  # a numerically singular residual covariance
        return np.inf
    return ld.objective(theta, cross_products(white), layout, reml) + logdet


def fit_with_residual(spec: ModelSpec, layout: ThetaLayout, bound, reml: bool) -> tuple[ThetaFit, np.ndarray]:
    """Minimise over (θ, φ): first φ alone by BFGS from independence, with θ at its fit under
    independent errors; then (θ, φ) jointly by L-BFGS-B with central differences from there
    (θ in its natural units as in fit_theta; its diagonal bounded below by 0).  Starting the
    bounded joint search near the optimum keeps its first steps from leaving the region
    where the residual covariance is numerically positive definite."""
    theta0 = layout.start
    if layout.size:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theta0 = fit_theta(cross_products(spec), layout, reml).theta
    phi_only = minimize(lambda phi: _finite(objective(np.r_[theta0, phi], spec, layout, bound, reml)),
                        bound.start, method="BFGS", options={"gtol": 1e-6})
    scale = np.r_[layout.scale, np.ones(len(bound.start))]
    start = np.r_[theta0, phi_only.x] / scale
    result = phi_only
    if layout.size:
        bounds = [(0.0, None) if lo == 0 else (None, None) for lo in layout.lower] + [(None, None)] * len(bound.start)
        result = minimize(lambda z: _finite(objective(z * scale, spec, layout, bound, reml)), start,
                          method="L-BFGS-B", jac="3-point", bounds=bounds,
                          options={"maxiter": 2000, "ftol": 1e-13, "gtol": 1e-7})
    x = result.x * scale if layout.size else np.r_[theta0, result.x]
    theta = snap_to_bounds(x[: layout.size], layout)
    phi = x[layout.size:]
    deviance = objective(np.r_[theta, phi], spec, layout, bound, reml)
    worst = _max_scaled_gradient(np.r_[theta, phi], scale, spec, layout, bound, reml)
    converged = worst <= GRADIENT_TOLERANCE  # a line search may stop "abnormally" on noisy differences
    message = f"max|grad| = {worst:.2g}; optimizer said: {result.message}"
    if not converged:
        warnings.warn(f"model failed to converge: {message}", ConvergenceWarning, stacklevel=4)
    return ThetaFit(theta, deviance, converged, message, int(phi_only.nfev + (result.nfev if layout.size else 0))), phi


def _finite(value: float) -> float:
    return value if np.isfinite(value) else 1e300


def _max_scaled_gradient(x, scale, spec, layout, bound, reml, step: float = 1e-5) -> float:
    """Central differences in natural units; forward ones where θ sits on its lower bound."""
    here = objective(x, spec, layout, bound, reml)
    worst = 0.0
    for j in range(x.size):
        up, down = x.copy(), x.copy()
        up[j] += step * scale[j]
        down[j] -= step * scale[j]
        on_bound = j < layout.size and layout.diagonal[j] and down[j] < 0
        f_up = objective(up, spec, layout, bound, reml)
        grad = (f_up - here) / step if on_bound else (f_up - objective(down, spec, layout, bound, reml)) / (2 * step)
        if not (on_bound and grad > 0):
            worst = max(worst, abs(grad))
    return worst
