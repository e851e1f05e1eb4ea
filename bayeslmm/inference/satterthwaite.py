"""Satterthwaite's degrees of freedom (lmerTest): the gradient of a contrast's variance in the
covariance parameters and their asymptotic covariance, by Richardson-extrapolated differences:
second differences of the deviance, or, with two or more grouping factors (where θ can have
dozens of entries), first differences of its exact gradient (2k gradients per level, not 2k²
deviances).
"""
from __future__ import annotations

import numpy as np

from bayeslmm.linalg import gradient as gr
from bayeslmm.linalg import logdensity as ld
from bayeslmm.threads import one_blas_thread


def _gradient_quadratic(c, gradients, A) -> float:
    g = np.array([c @ G @ c for G in gradients])
    return float(g @ A @ g)


def satterthwaite_df(fit) -> np.ndarray:
    """Satterthwaite denominator df of each fixed effect (lmerTest's varpar = (θ, σ))."""
    gradients, A = satterthwaite_pieces(fit)
    V = fit.vcov().to_numpy()
    return contrast_df(np.eye(len(V)), V, gradients, A)


def contrast_df(L: np.ndarray, vcov: np.ndarray, gradients, A) -> np.ndarray:
    """Satterthwaite df of each row l of ``L`` (a linear function l'β̂): 2 (l'Vl)² / (g'Ag),
    g_k = l' ∂V/∂varpar_k l, from :func:`satterthwaite_pieces`'s ``gradients`` and ``A``."""
    return np.array([2 * (row @ vcov @ row) ** 2 / _gradient_quadratic(row, gradients, A) for row in np.atleast_2d(L)])


@one_blas_thread()
def satterthwaite_pieces(fit):
    """∂Var(β̂)/∂varpar_k (one p × p matrix per variance parameter) and A = 2H⁻¹ (lmerTest's)."""
    state = fit.state
    layout, n, reml, p = state.layout, fit.nobs, fit.reml, fit.spec.p
    theta_size = fit.theta.size
    # varpar = (θ, σ, φ): a residual structure's parameters vary with the others, as in mmrm
    varpar = np.r_[fit.theta, fit.sigma, state.phi]

    def stats_at(v):
        return state.stats_at(v[theta_size + 1:])

    def deviance(v):
        stats, logdet = stats_at(v)
        fact = ld.factorize(v[:theta_size], stats, layout)
        prof = ld.profile(fact, p)
        return ld.deviance_at(fact, prof, n, v[theta_size] ** 2, fit.fixef().to_numpy(), reml=reml) + logdet

    def vcov_matrix(v):
        fact = ld.factorize(v[:theta_size], stats_at(v)[0], layout)
        LXinv = ld.solve_lower(ld.profile(fact, p).LX, np.eye(p))
        return v[theta_size] ** 2 * LXinv.T @ LXinv

    step = 1e-2 * np.maximum(np.abs(varpar), 1e-2)
    if state.stats.n_factors > 1 and state.phi.size == 0:  # many θ: differences of the exact gradient
        beta = fit.fixef().to_numpy()
        hessian = _richardson(lambda h: _jacobian(
            lambda v: deviance_gradient(v, state.stats, layout, reml, beta), varpar, h), step)
        hessian = 0.5 * (hessian + hessian.T)
    else:
        hessian = _richardson(lambda h: _hessian(deviance, varpar, h), step)
    A = 2.0 * np.linalg.pinv(hessian)
    gradients = _richardson(lambda h: np.stack(
        [(vcov_matrix(varpar + e) - vcov_matrix(varpar - e)) / (2 * e.sum()) for e in np.diag(h)]), step)
    return gradients, A


def deviance_gradient(varpar, stats, layout, reml: bool, beta) -> np.ndarray:
    """The exact gradient in (θ, σ) of the unprofiled deviance that :func:`satterthwaite_pieces`
    differentiates twice, for two or more grouping factors: D = log|L|² + (ML) n log 2πσ² +
    c'Cc/σ², c = [−β; 1], or (REML, β integrated) log|L|² + log|C_XX| + (n − p) log 2πσ² +
    r²/σ², r² = c'Cc at β̂(θ) (the envelope theorem).  ∂/∂θ is ∂log|L|² plus ∂tr(KC) with
    K = cc'/σ² (+ C_XX⁻¹ for REML): the selected-inversion formulas of the REML/ML gradient."""
    theta, sigma = varpar[: layout.size], varpar[layout.size]
    fact = ld.factorize(theta, stats, layout)
    prof = ld.profile(fact, stats.p)
    c = np.append(-(prof.beta if reml else beta), 1.0)
    K = gr.schur_weight(prof, c, 1.0 / sigma**2, reml)
    matrices = [2.0 * d + e for d, e in zip(gr.logdet_derivatives(fact, stats), gr.schur_derivatives(fact, stats, K))]
    dof = stats.n - stats.p if reml else stats.n
    return np.append(gr.theta_gradient(matrices, layout), 2.0 * dof / sigma - 2.0 * float(c @ fact.C @ c) / sigma**3)


def _jacobian(gradient, x, step) -> np.ndarray:
    """Central differences of a gradient: the Hessian's columns, one pair of gradients each."""
    return np.column_stack([(gradient(x + e) - gradient(x - e)) / (2 * e.sum()) for e in np.diag(step)])


def _richardson(derivative, step, levels: int = 3):
    """Richardson extrapolation of a central-difference derivative over halved steps (error O(h^2k))."""
    table = [derivative(step / 2**k) for k in range(levels)]
    for order in range(1, levels):
        factor = 4.0**order
        table = [(factor * table[k + 1] - table[k]) / (factor - 1) for k in range(len(table) - 1)]
    return table[0]


def _hessian(f, x, step) -> np.ndarray:
    k = x.size
    H = np.empty((k, k))
    E = np.diag(step)
    for i in range(k):
        for j in range(i, k):
            H[i, j] = H[j, i] = (f(x + E[i] + E[j]) - f(x + E[i] - E[j]) - f(x - E[i] + E[j])
                                 + f(x - E[i] - E[j])) / (4 * step[i] * step[j])
    return H
