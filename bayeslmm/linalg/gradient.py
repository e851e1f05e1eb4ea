"""The exact gradient of the profiled deviance in θ, for any number of grouping factors.

With A = Λ'WΛ + I (W = Z'Z), Ω = A⁻¹ and dΛ = blockdiag(I ⊗ E_rc) on factor f:

    ∂ log|A|  = 2 Σ_g [(WΛΩ)_gg]_rc                  (diagonal blocks of factor f's levels)
    ∂ r²      = −2 Σ_g [z_g u_g']_rc,   z = Z'(y − Xβ̂) − WΛu     (envelope theorem at β̂, û)
    ∂ log|M|  = −2 Σ_g [Z̃_g M⁻¹ U_g']_rc,  U = ΩΛ'Z'X,  Z̃ = Z'X − WΛU

(WΛΩ)_gg needs Ω only on the pattern of W (selected inversion). From the blocked factor
(first factor per level, the rest in one dense block; see :mod:`bayeslmm.linalg.logdensity`),
with H_g = T1 A1_g⁻¹, Ω22 = L22⁻ᵀL22⁻¹ and F = Λ2'W21 so that Ω21 = −Ω22 F H:

    first factor : (WΛΩ)_gg = W11_g T1 (A1_g⁻¹ + H_g' N_g H_g) − N_g H_g,  N_g = (F'Ω22F)_gg
    later factors: (WΛΩ)_ii = [(W22 − W21 Λ1 H' W12) Λ2 Ω22]_ii

N_g is a gather of Λ2Ω22Λ2' over the same pairs that scatter the downdate W21Λ1H'W12, so
nothing of size n or Q1 × Q2 is formed. One grouping factor keeps the per-level formula of
:func:`one_factor_gradient`, compiled (the kernel the Bayesian log-density runs); several factors
whose second block is small run these formulas compiled too (:mod:`bayeslmm.linalg.compiled_blocked`).
"""
from __future__ import annotations

import numpy as np

from bayeslmm.linalg import batched, compiled, compiled_blocked, dense
from bayeslmm.linalg import logdensity as ld
from bayeslmm.linalg.crossprod import CrossProducts
from bayeslmm.model.covariance import ThetaLayout


def objective_gradient(theta, stats: CrossProducts, layout: ThetaLayout, reml: bool):
    """Profiled deviance (ML or REML) and its exact gradient in θ, for any number of factors.

    Returns ``(inf, zeros)`` where the deviance is not finite, as the one-factor version does.
    """
    if stats.n_factors < 2:
        return one_factor_gradient(theta, stats, layout, reml)
    if compiled_blocked.covers(stats):
        return blocked_gradient(theta, stats, layout, reml)
    theta = np.asarray(theta, dtype=float)
    fact = ld.factorize(theta, stats, layout)
    prof = None if fact is None else ld.profile(fact, stats.p)
    if prof is None or prof.r2 <= 0:
        return np.inf, np.zeros_like(theta)
    value = ld.profiled_deviance(fact, prof, stats.n, reml)
    residual = residual_derivatives(fact, prof, stats, reml)  # first: the inverse below overwrites L22
    matrices = [2.0 * d + e for d, e in zip(logdet_derivatives(fact, stats, overwrite=True), residual)]
    return value, theta_gradient(matrices, layout)


def theta_gradient(matrices: list[np.ndarray], layout: ThetaLayout) -> np.ndarray:
    """The gradient in θ from the derivatives in each factor's T_f (S_f × S_f): θ's entries of them."""
    grad = np.zeros(layout.size)
    for matrix, (rows, cols, index) in zip(matrices, layout.entries):
        grad[index] = matrix[rows, cols]
    return grad


def blocked_gradient(theta, stats: CrossProducts, layout: ThetaLayout, reml: bool):
    """Profiled deviance and its exact gradient in θ, for several grouping factors whose second
    block is small: the compiled kernel (:func:`bayeslmm.linalg.compiled_blocked.blocked_profiled_deviance`),
    the same math as :func:`logdet_derivatives` and :func:`residual_derivatives`."""
    Ts = layout.factors_T(np.asarray(theta, dtype=float))
    value, dT1, dT2 = _compiled_blocked_deviance(Ts, stats, reml, True)
    if not np.isfinite(value):
        return value, np.zeros(layout.size)
    return value, theta_gradient([dT1] + compiled_blocked.later_factors(dT2, Ts), layout)


def _compiled_blocked_deviance(Ts, stats: CrossProducts, reml: bool, want_gradient: bool):
    return compiled_blocked.blocked_profiled_deviance(
        *compiled_blocked.arguments(Ts, stats), _f64(stats.XYtXY), float(stats.n), float(stats.log_weights),
        bool(reml), want_gradient)


def one_factor_gradient(theta, stats: CrossProducts, layout: ThetaLayout, reml: bool):
    """Profiled deviance and its exact gradient in θ, for one grouping factor: the compiled
    kernel the Bayesian log-density runs too (:func:`bayeslmm.linalg.compiled.profiled_deviance`).

    log|A| differentiates to 2 Σ_g [W_g T A_g⁻¹]_{rc}, and the Schur complement's part, at
    σ̂² by the envelope theorem, to Σ_g 2 [W_g T K_g G K_g' − V_g G K_g']_{rc}.
    """
    value, dT = _compiled_profiled_deviance(theta, stats, layout, reml, True)
    if not np.isfinite(value):
        return value, np.zeros(layout.size)
    return value, theta_gradient([dT], layout)


def objective(theta, stats: CrossProducts, layout: ThetaLayout, reml: bool, unrolled: bool = False) -> float:
    """The profiled deviance in θ alone (:func:`bayeslmm.linalg.logdensity.objective`), through
    the compiled kernels for one grouping factor and for several with a small second block.
    ``unrolled``: one factor's unrolled loops (faster, other rounding; for starts)."""
    if stats.n_factors == 2 and compiled_blocked.covers(stats):
        return _compiled_blocked_deviance(layout.factors_T(np.asarray(theta, dtype=float)), stats, reml, False)[0]
    if stats.n_factors != 1:
        return ld.objective(theta, stats, layout, reml)
    return _compiled_profiled_deviance(theta, stats, layout, reml, False, unrolled)[0]


def _compiled_profiled_deviance(theta, stats: CrossProducts, layout: ThetaLayout, reml: bool, want_gradient: bool,
                                unrolled: bool = False):
    T = layout.factors_T(np.asarray(theta, dtype=float))[0]
    return compiled.profiled_deviance(_f64(T), _f64(stats.ZtZ1), _f64(stats.ZtXY1), _f64(stats.XYtXY),
                                      float(stats.n), float(stats.log_weights), bool(reml), want_gradient,
                                      bool(unrolled))


def _f64(array) -> np.ndarray:
    return np.ascontiguousarray(array, dtype=np.float64)


def logdet_derivatives(fact: ld.Factorization, stats: CrossProducts, overwrite: bool = False) -> list[np.ndarray]:
    """Σ over each factor's levels of the diagonal blocks of WΛΩ: ½ ∂log|A|/∂T_f, (S_f, S_f) each.
    ``overwrite``: Ω22 is formed in fact.L22's memory (the factor is not used afterwards)."""
    T1, Ts, levels = fact.T[0], fact.T, fact.levels
    A1inv = batched.transpose(fact.L1inv) @ fact.L1inv
    H = batched.times_left(T1, A1inv)  # T1 A1_g⁻¹
    Omega22 = dense.inverse_from_cholesky(fact.L22, overwrite=overwrite)
    others = later_factor_blocks(fact.schur_W22, Omega22, fact)
    lam_omega = ld.lambda_congruence(Omega22, _transposed(Ts), levels, overwrite=True)  # Λ2Ω22Λ2'
    N = stats.pairs.gather(lam_omega)  # (F'Ω22F)_gg = (W12 Λ2Ω22Λ2' W21)_gg
    Omega11 = A1inv + batched.transpose(H) @ N @ H
    first = (batched.times(stats.ZtZ1, T1) @ Omega11 - N @ H).sum(axis=0)
    return [first] + others


def later_factor_blocks(schur_W22: np.ndarray, Omega22: np.ndarray, fact: ld.Factorization) -> list[np.ndarray]:
    """Σ_g [(W22 − W21Λ1H'W12) Λ2 Ω22]_gg over the levels of each factor after the first, (S_f, S_f)
    each, from rows of the two Q2 × Q2 matrices; with scalar terms only, one pass and no copy."""
    scale = ld.scalar_lambda(fact.T, fact.levels)  # the diagonal Λ2, or None
    out, start = [], 0
    for G, T in zip(fact.levels[1:], fact.T[1:]):
        S = T.shape[0]
        rows = slice(start, start + G * S)
        start += G * S
        if scale is not None:  # Σ_{i ∈ f} Σ_q schur[i, q] λ_q Ω[q, i]  (Ω symmetric)
            out.append(np.einsum("iq,iq,q->", schur_W22[rows], Omega22[rows], scale).reshape(1, 1))
            continue
        lam_omega = ld.lambda_t_times(Omega22[:, rows], _transposed(fact.T), fact.levels)  # Λ2 Ω22[:, rows]
        out.append(np.einsum("gsq,qgt->st", schur_W22[rows].reshape(G, S, -1), lam_omega.reshape(-1, G, S)))
    return out


def residual_derivatives(fact: ld.Factorization, prof: ld.Profile, stats: CrossProducts, reml: bool):
    """The derivatives of the r² term (envelope theorem) and, for REML, of log|M|, per factor.

    Both are derivatives of tr(K C) (:func:`schur_derivatives`): r² = c'Cc at c = [−β̂; 1] weighs
    the residual column by dof/r² · cc', and log|M| (REML) weighs X's columns by M⁻¹.
    """
    dof = stats.n - stats.p if reml else stats.n
    return schur_derivatives(fact, stats, schur_weight(prof, np.append(-prof.beta, 1.0), dof / prof.r2, reml))


def schur_weight(prof: ld.Profile, coef: np.ndarray, scale: float, reml: bool) -> np.ndarray:
    """K such that ∂tr(KC) is the derivative of scale · c'Cc at c = ``coef`` (a residual sum of
    squares) plus, for REML, of log|M| = log|C_XX| (M⁻¹ on X's columns)."""
    p = prof.beta.shape[0]
    K = scale * np.outer(coef, coef)
    if reml and p:
        LXinv = ld.solve_lower(prof.LX, np.eye(p))
        K[:p, :p] += LXinv.T @ LXinv  # M⁻¹
    return K


def schur_derivatives(fact: ld.Factorization, stats: CrossProducts, K: np.ndarray) -> list[np.ndarray]:
    """∂ tr(K C)/∂T_f for a symmetric (p+1)² weight K, per factor (S_f, S_f).

    C = [X y]'V⁻¹[X y] is the Schur complement; its derivative is −2 Σ_g Z̃_g K U_g' over the
    columns of [X y], with U = ΩΛ'Z'[X y] = L⁻ᵀR and Z̃ = Z'[X y] − WΛU.
    """
    p = stats.p
    U1, U2 = _solve_transpose(fact)
    lam_U1 = np.matmul(fact.T[0], U1)
    lam_U2 = ld.lambda_t_times(U2, _transposed(fact.T), fact.levels)
    Zt1 = stats.ZtXY1 - stats.ZtZ1 @ lam_U1 - (stats.Z2tZ1.T @ lam_U2).reshape(U1.shape)
    Zt2 = stats.ZtXY2 - stats.Z2tZ1 @ lam_U1.reshape(-1, p + 1) - stats.ZtZ2 @ lam_U2
    out = [-2.0 * _sum_of_products(Zt1 @ K, U1)]
    ZtK = Zt2 @ K
    for z, u in zip(ld.split_other_factors(ZtK, fact), ld.split_other_factors(U2, fact)):
        out.append(-2.0 * _sum_of_products(z, u))
    return out


def factorization_vjp(fact: ld.Factorization, stats: CrossProducts, C_bar: np.ndarray,
                      logdet_bar: float) -> list[np.ndarray]:
    """The vector-Jacobian product of θ ↦ (C, log|L|²) for two or more grouping factors.

    Given the gradients ``C_bar`` of a scalar in C's entries and ``logdet_bar`` in log|L|², the
    scalar's gradient in each factor's T_f (S_f, S_f): what the Bayesian marginal model's graph
    needs to differentiate any function of the factorization (β integrated under its prior).
    """
    K = 0.5 * (C_bar + C_bar.T)  # C is symmetric: only the symmetric part of its gradient acts
    out = [2.0 * logdet_bar * d for d in logdet_derivatives(fact, stats)]
    return [a + b for a, b in zip(out, schur_derivatives(fact, stats, K))]


def _solve_transpose(fact: ld.Factorization):
    """L⁻ᵀR for every column of [X y], by block back-substitution: (G1, S1, p+1) and (Q2, p+1)."""
    U2 = ld.solve_lower(fact.L22, fact.R2, transpose=True)
    V1 = fact.R1 - ld.l21_transpose_times(fact, U2)
    return np.matmul(batched.transpose(fact.L1inv), V1), U2


def _sum_of_products(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Σ_g A_g B_g' for A (G, S, k) and B (G, T, k): one BLAS product (einsum would loop)."""
    G, S, k = A.shape
    return A.transpose(1, 0, 2).reshape(S, G * k) @ B.transpose(1, 0, 2).reshape(B.shape[1], G * k).T


def _transposed(Ts):
    """The factors' T' so that :func:`ld.lambda_t_times` multiplies by Λ instead of Λ'."""
    return [T.T for T in Ts]
