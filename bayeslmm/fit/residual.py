"""REML / ML with a residual covariance structure: the shared log-density on whitened data.

−2ℓ(θ, φ) = −2ℓ_iid(θ; W_φ[y X Z]) + Σ_i log|R_i(φ)|: the data are whitened group by
group for each φ, their cross-products recomputed, and the one log-density evaluated.

The search is over φ alone, with θ profiled out: for each φ the inner fit over θ is the
ordinary one (exact gradient, warm-started at the previous θ̂), so the outer problem has
only the structure's few parameters.  One φ: Brent's method.  Several: BFGS, with the
exact gradient for models without random effects whose structure gives its per-pattern
covariance (unstructured: T(T+1)/2 − 1 parameters, where differences would cost 2 per
parameter), and central differences otherwise.
"""
from __future__ import annotations

import dataclasses
import warnings

import numpy as np
from scipy.optimize import minimize, minimize_scalar

from bayeslmm.errors import ConvergenceWarning, LMMError
from bayeslmm.fit.optimize import fit_theta, newton_theta
from bayeslmm.fit.optsum import OptSummary
from bayeslmm.linalg import gradient as gr
from bayeslmm.linalg.crossprod import cross_products
from bayeslmm.model.covariance import ThetaLayout
from bayeslmm.model.spec import ModelSpec

PHI_BOUND = 12.0  # |φ| for the one-parameter search: tanh(12) = 1 − 8e-11 for a correlation
NEWTON_STEP_TOLERANCE = 1e-4  # converged when no Newton step in φ is larger than this
ROUGH = {"ftol": 1e-10, "gtol": 1e-2}  # L-BFGS-B's stops for the inner fits of the φ search


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


def whitened_stats(spec: ModelSpec, bound, phi):
    """The sufficient statistics of the data whitened at φ, and Σ log|R_i(φ)|."""
    white, logdet = whitened_spec(spec, bound, phi)
    return cross_products(white), logdet


def objective(x, spec: ModelSpec, layout: ThetaLayout, bound, reml: bool) -> float:
    """−2ℓ (REML or ML, β and σ profiled) at x = (θ, φ)."""
    theta, phi = x[: layout.size], x[layout.size:]
    try:
        stats, logdet = whitened_stats(spec, bound, phi)
    except np.linalg.LinAlgError:  # a numerically singular residual covariance
        return np.inf
    return gr.objective(theta, stats, layout, reml) + logdet


class ProfiledPhi:
    """−2ℓ as a function of φ with θ profiled out; remembers θ̂ to warm-start the next inner fit.

    ``stats_at(φ)`` gives the whitened cross-products and Σ log|R_i(φ)| (by default from the
    spec's rows; :mod:`bayeslmm.scaleout` passes one that sums them over a Dask DataFrame's partitions)."""

    def __init__(self, spec: ModelSpec, layout: ThetaLayout, bound, reml: bool, stats_at=None):
        self.spec, self.layout, self.bound, self.reml = spec, layout, bound, reml
        self.stats_at = stats_at or (lambda phi: whitened_stats(spec, bound, phi))
        self.theta = None
        self.evaluations = 0

    def inner_fit(self, phi, rough: bool = True) -> tuple[OptSummary, float]:
        """θ̂(φ) and Σ log|R_i(φ)|; ``rough``: a looser stop for the search's inner fits, where
        an error in θ̂ moves the profiled value only to second order."""
        stats, logdet = self.stats_at(phi)
        tolerances = ROUGH if rough else None
        fit = None
        if self.theta is not None and stats.n_factors == 1:  # None if it cannot finish
            fit = newton_theta(stats, self.layout, self.reml, self.theta, tolerance=1e-2 if rough else 1e-6)
        if fit is None:
            fit = fit_theta(stats, self.layout, self.reml, start=self.theta, tolerances=tolerances)
        if self.theta is not None and np.any(fit.theta[self.layout.diagonal] == 0):
            # a warm start from a distant φ can end on the boundary when the optimum is inside
            fresh = fit_theta(stats, self.layout, self.reml, tolerances=tolerances)
            fit = fresh if fresh.deviance < fit.deviance else fit
        return fit, logdet

    def __call__(self, phi) -> float:
        self.evaluations += 1
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                inner, logdet = self.inner_fit(np.atleast_1d(phi))
        except np.linalg.LinAlgError:  # a numerically singular residual covariance
            return np.inf
        if np.isfinite(inner.deviance) and self.layout.size:
            self.theta = inner.theta
        return inner.deviance + logdet

    def precise(self, phi) -> float:
        """−2ℓ at φ with θ̂ fitted to full precision: for finite differences, whose second
        difference over a step of 1e-4 (~1e-7) the rough inner fits' error can exceed."""
        fit, logdet = self.inner_fit(np.atleast_1d(phi), rough=False)
        return fit.deviance + logdet

    def gradient(self, phi) -> np.ndarray:
        """Exact ∂(−2ℓ)/∂φ for a model without random effects (see :func:`gls_phi_gradient`)."""
        return gls_phi_gradient(self.spec, self.bound, phi, self.reml)


def fit_with_residual(spec: ModelSpec, layout: ThetaLayout, bound, reml: bool, stats_at=None,
                      start=None) -> tuple[OptSummary, np.ndarray]:
    """Minimise −2ℓ over φ with θ profiled out, then fit θ at φ̂ (its warnings surface).

    ``stats_at`` as :class:`ProfiledPhi`'s; ``start``: φ's start (by default from the rows' residuals)."""
    profiled = ProfiledPhi(spec, layout, bound, reml, stats_at)
    start = starting_phi(spec, bound) if start is None else np.asarray(start, dtype=float)
    exact = start.size > 1 and not spec.factors and bound.has_covariance_jacobian
    if start.size == 1:
        optimizer, options = "bounded Brent", {"xatol": 1e-5, "maxiter": 200}
        result = minimize_scalar(lambda x: _finite(profiled(x)), bounds=bracket_on_grid(profiled),
                                 method="bounded", options=options)
        phi, outer_message = np.atleast_1d(result.x), str(result.message)
    else:
        optimizer, options = "BFGS", {"gtol": 1e-7, "maxiter": 2000}
        per_row = 1.0 / spec.n  # −2ℓ/n: gradient tolerances then mean the same at any size
        fun = (lambda x: _finite(profiled(x)) * per_row)
        jac = (lambda x: profiled.gradient(x) * per_row) if exact else "3-point"
        result = minimize(fun, start, jac=jac, method="BFGS", options=options)
        phi, outer_message = result.x, str(result.message)
    inner, logdet = profiled.inner_fit(phi, rough=False)
    if exact:  # the quasi-Newton step H⁻¹g with the exact gradient
        steps = np.abs(result.hess_inv @ jac(phi))
    else:
        steps = newton_steps(profiled, phi)
    outer_converged = bool(np.all(steps <= NEWTON_STEP_TOLERANCE))
    message = f"largest Newton step in φ {steps.max():.2g}; optimizer said: {outer_message}; θ: {inner.message}"
    if not outer_converged:
        warnings.warn(f"model failed to converge: {message}", ConvergenceWarning, stacklevel=4)
    fit = OptSummary(inner.theta, inner.deviance + logdet, outer_converged and inner.converged, message,
                     profiled.evaluations, optimizer=f"{optimizer} over φ, θ profiled ({inner.optimizer})",
                     tolerances={**options, "Newton step in φ": NEWTON_STEP_TOLERANCE}, start=layout.start,
                     gradient_norm=inner.gradient_norm, phi_start=start, phi=np.asarray(phi, dtype=float))
    return fit, phi


def bracket_on_grid(profiled: ProfiledPhi) -> tuple[float, float]:
    """The neighbours of the best point on a coarse grid of φ: the profile over one φ need not be
    unimodal (e.g. with a random intercept, ρ → 1 can trade against the intercept's variance)."""
    grid = np.linspace(-3.0, 3.0, 7)
    values = [profiled(np.array([x])) for x in grid]
    best = int(np.argmin(values))
    low = grid[best - 1] if best > 0 else -PHI_BOUND
    high = grid[best + 1] if best < grid.size - 1 else PHI_BOUND
    return low, high


def starting_phi(spec: ModelSpec, bound) -> np.ndarray:
    """The structure's start, given least-squares residuals (a moment estimate where it has one)."""
    beta = np.linalg.lstsq(spec.X, spec.y, rcond=None)[0] if spec.p else np.zeros(0)
    return bound.moment_start(spec.y - spec.X @ beta)


def newton_steps(profiled: ProfiledPhi, phi, step: float = 1e-4) -> np.ndarray:
    """|g_j / h_jj| from central differences: the distance to the optimum along each φ_j,
    a criterion that does not grow with the number of rows as the gradient does.

    The search's rough inner fits decide first; only a failing verdict is redone with θ̂
    fitted to full precision (the rough fits' error, ~1e-7, can reach the size of the second
    difference and fake a negative curvature), so a converged fit pays nothing extra."""
    rough = _newton_steps(profiled, phi, step)
    if np.all(rough <= NEWTON_STEP_TOLERANCE):
        return rough
    return _newton_steps(profiled.precise, phi, step)


def _newton_steps(deviance, phi, step: float) -> np.ndarray:
    here = deviance(phi)
    out = np.zeros(phi.size)
    for j in range(phi.size):
        up, down = phi.copy(), phi.copy()
        up[j] += step
        down[j] -= step
        f_up, f_down = deviance(up), deviance(down)
        curvature = (f_up - 2 * here + f_down) / step**2
        gradient = (f_up - f_down) / (2 * step)
        out[j] = abs(gradient / curvature) if curvature > 0 else np.inf
    return out


def gls_phi_gradient(spec: ModelSpec, bound, phi, reml: bool) -> np.ndarray:
    """∂(−2ℓ)/∂φ without random effects, from the covariance of each missing-visit pattern.

    With R_g the relative covariance of group g, W_g = R_g⁻¹, β̂ and σ̂ profiled:
    d(−2ℓ) = Σ_g tr(G_g dR_g), G_g = W_g − c W_g r_g r_g' W_g − [REML] W_g X_g A⁻¹ X_g' W_g,
    c = (n − p·REML)/r'Wr and A = X'WX (log|R|, the envelope theorem for β̂ and
    d log|A|).  In whitened data (r* = L⁻¹r, X* = L⁻¹X, R = LL') the sum over a pattern's
    groups is L⁻ᵀ[m I − c Σ r*r*' − Σ X*A⁻¹X*']L⁻¹: a T × T matrix Γ of sufficient
    statistics, after which each ∂/∂φ_k is ⟨Γ, ∂S/∂φ_k⟩.
    """
    white, _ = whitened_spec(spec, bound, phi)
    A = white.X.T @ white.X
    beta = np.linalg.solve(A, white.X.T @ white.y) if spec.p else np.zeros(0)
    residual = bound.pad((white.y - white.X @ beta)[:, None])[..., 0]  # (G, T)
    c = (spec.n - (spec.p if reml else 0)) / (residual**2).sum()
    pattern = bound.pattern_of_group
    inner = bound.pattern_counts[:, None, None] * np.eye(bound.size) * bound.masks[:, :, None]
    np.add.at(inner, pattern, -c * residual[:, :, None] * residual[:, None, :])
    if reml and spec.p:
        XA = bound.pad(white.X) @ np.linalg.cholesky(np.linalg.inv(A))  # (G, T, p)
        np.add.at(inner, pattern, -XA @ np.swapaxes(XA, 1, 2))
    L_inv, _ = bound.inverse_factors(bound.relative_covariance(phi))
    gamma = np.einsum("pki,pkl,plj->ij", L_inv, inner, L_inv)
    return np.einsum("kij,ij->k", bound.covariance_jacobian(phi), gamma)


def _finite(value: float) -> float:
    return value if np.isfinite(value) else 1e300
