"""One grouping factor with a residual structure (AR(1), compound symmetry, one variance per
level of a factor, and AR(1) or compound symmetry with such variances), compiled: the
one-factor kernel of :mod:`bayeslmm.linalg.compiled` on the whitened statistics, and its exact
gradient in the structure's parameters.

Whitening is linear in a few fixed "component" statistics.  With R_i the group's correlation
and D_i its sd ratios, [Z X y]'Σ⁻¹[Z X y] = Σ_c w_c(φ) S_c, where each S_c (per level of the
factor, as the kernel's ZtZ, ZtXY and XYtXY) is a sum of products of raw rows fixed by the data
(:mod:`bayeslmm.bayes.kernel_residual` builds them) and w_c is a closed form:

- AR(1) with a gap of d time units to the group's previous row, λ = ρ^d: R⁻¹ is tridiagonal,
  each row adds [u_j u_j' − λ(u_j u_{j−1}' + u_{j−1} u_j') + λ² u_{j−1} u_{j−1}'] / (1 − λ²)
  (a group's first row: u_j u_j'), and log|R_i| = Σ_j log(1 − λ_j²);
- compound symmetry, group size m: R⁻¹ = I/(1 − ρ) + (J/m)[1/(1 − ρ + mρ) − 1/(1 − ρ)], so the
  components are Σ u_j u_j' and (Σ_group u)(Σ_group u)'/m per size, and
  log|R_i| = (m − 1) log(1 − ρ) + log(1 − ρ + mρ);
- sd ratios r_s = exp(ℓ_s) by stratum (ℓ_0 = 0): a product of rows of strata a and b is
  divided by r_a r_b, and log|D_i²| = 2 Σ_j ℓ_{s_j}.

So no row is touched per evaluation.  The log-density is the same Schur complement
(:func:`bayeslmm.linalg.compiled.schur_complement_small`, :func:`~bayeslmm.linalg.compiled.beta_integrated`,
:func:`~bayeslmm.linalg.compiled.schur_gradient_small`, :func:`~bayeslmm.linalg.compiled.logp_from_deviance`)
on Σ_c w_c S_c; its gradient in φ is the chain rule through the statistics,
∂D/∂φ_k = Σ_c (∂w_c/∂φ_k) ⟨∂D/∂S, S_c⟩, with the kernel's derivative in its statistics
(:func:`statistics_gradient_at`).  The parameters follow the PyMC model: ρ = low + (1 − low)u with
u ~ Beta(a, b) on the log-odds scale, the log sd ratios ~ Normal(μ, s) unconstrained.
"""
from __future__ import annotations

import math

import numpy as np

from bayeslmm.linalg.compiled import (
    LOG_2PI,
    beta_integrated,
    covariance_cholesky,
    logp_from_deviance,
    njit,
    schur_complement_small,
    schur_gradient_small,
)

# the structure's codes (info[0]): sd ratios only, AR(1) over time, compound symmetry
VARIANCES_ONLY, AUTOREGRESSIVE, COMPOUND_SYMMETRY = 0, 1, 2
# the components' codes (comp_int[:, 0]); the value is the gap d (AR) or the group size m (CS)
UNIT, AR_SELF, AR_CROSS, AR_PREVIOUS, CS_ALL, CS_GROUP = 0, 1, 2, 3, 4, 5


@njit
def _softplus(x):
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


@njit
def component_factor(kind, value, rho):
    """The correlation's factor of a component's weight and its derivative in ρ."""
    if kind == UNIT:
        return 1.0, 0.0
    if kind == CS_ALL:
        return 1.0 / (1.0 - rho), 1.0 / (1.0 - rho) ** 2
    if kind == CS_GROUP:  # m = value
        whole = 1.0 - rho + value * rho
        return 1.0 / whole - 1.0 / (1.0 - rho), -(value - 1.0) / (whole * whole) - 1.0 / (1.0 - rho) ** 2
    lam, dlam = rho ** value, value * rho ** (value - 1.0)  # λ = ρ^d
    denominator = 1.0 - lam * lam
    if kind == AR_SELF:
        return 1.0 / denominator, 2.0 * lam * dlam / (denominator * denominator)
    if kind == AR_CROSS:
        return -lam / denominator, -(1.0 + lam * lam) * dlam / (denominator * denominator)
    return lam * lam / denominator, 2.0 * lam * dlam / (denominator * denominator)  # AR_PREVIOUS


@njit
def residual_weights(xr, info, comp_int, comp_value, class_info, strata_count, prior):
    """The components' weights w (C,) and ∂w/∂φ (P, C); Σ log|R_i D_i²| and its gradient; the
    log prior of φ with the transform's Jacobian and its gradient; and whether R is positive
    definite (False where ρ rounds onto an end of its range: the caller's log-density is −∞).
    ``xr`` is φ on PyMC's unconstrained scale: [logit u (correlations)], then the log sd ratios
    of strata 1, 2, …; ``prior`` is (a, b, log B(a, b), low, μ, s)."""
    kind, n_strata = info[0], info[2]
    P, C = xr.shape[0], comp_int.shape[0]
    w, dw = np.zeros(C), np.zeros((P, C))
    logdet, dlogdet, lp, dlp = 0.0, np.zeros(P), 0.0, np.zeros(P)
    rho, drho, first_ratio = 0.0, 0.0, 0
    if kind != VARIANCES_ONLY:
        log_u, log_1mu = -_softplus(-xr[0]), -_softplus(xr[0])
        u = math.exp(log_u)
        a, b, log_beta, low = prior[0], prior[1], prior[2], prior[3]
        lp += a * log_u + b * log_1mu - log_beta  # Beta(a, b) and the log-odds Jacobian u(1 − u)
        dlp[0] = a * (1.0 - u) - b * u
        rho, drho, first_ratio = low + (1.0 - low) * u, (1.0 - low) * u * (1.0 - u), 1
        if not positive_definite(kind, rho, class_info):
            return False, w, dw, logdet, dlogdet, lp, dlp
    for s in range(1, n_strata):
        k = first_ratio + s - 1
        z = (xr[k] - prior[4]) / prior[5]
        lp += -0.5 * z * z - math.log(prior[5]) - 0.5 * LOG_2PI
        dlp[k] = -z / prior[5]
        logdet += 2.0 * strata_count[s] * xr[k]
        dlogdet[k] = 2.0 * strata_count[s]
    for k in range(class_info.shape[0]):
        value, count = class_info[k, 0], class_info[k, 1]
        if kind == AUTOREGRESSIVE:
            lam, dlam = rho ** value, value * rho ** (value - 1.0)
            logdet += count * math.log(1.0 - lam * lam)
            dlogdet[0] -= count * 2.0 * lam * dlam * drho / (1.0 - lam * lam)
        elif kind == COMPOUND_SYMMETRY:
            whole = 1.0 - rho + value * rho
            logdet += count * ((value - 1.0) * math.log(1.0 - rho) + math.log(whole))
            dlogdet[0] += count * (value - 1.0) * (1.0 / whole - 1.0 / (1.0 - rho)) * drho
    for c in range(C):
        f, df = component_factor(comp_int[c, 0], comp_value[c], rho)
        sa, sb = comp_int[c, 1], comp_int[c, 2]
        log_scale = -(xr[first_ratio + sa - 1] if sa > 0 else 0.0) - (xr[first_ratio + sb - 1] if sb > 0 else 0.0)
        scale = math.exp(log_scale)
        w[c] = f * scale
        if kind != VARIANCES_ONLY:
            dw[0, c] = df * drho * scale
        if sa > 0:
            dw[first_ratio + sa - 1, c] -= w[c]
        if sb > 0:
            dw[first_ratio + sb - 1, c] -= w[c]
    return True, w, dw, logdet, dlogdet, lp, dlp


@njit
def positive_definite(kind, rho, class_info):
    """Whether every R_i is positive definite at ρ (its weights' denominators positive): a ρ that
    rounds onto ±1 (AR(1)) or onto an end of CS's range is not."""
    if kind == AUTOREGRESSIVE:
        return abs(rho) < 1.0
    for k in range(class_info.shape[0]):
        if not 1.0 - rho + class_info[k, 0] * rho > 0.0:
            return False
    return 1.0 - rho > 0.0


@njit
def weighted_statistics(w, comp_ZtZ, comp_ZtXY, comp_XYtXY):
    """Σ_c w_c S_c: the whitened ZtZ (G, S, S), ZtXY (G, S, p+1) and XYtXY (p+1, p+1); the
    components' per-level statistics come stacked as (C·G, …).  Loops: no temporaries."""
    C = w.shape[0]
    G, S, p1 = comp_ZtZ.shape[0] // C, comp_ZtZ.shape[1], comp_XYtXY.shape[1]
    ZtZ, ZtXY, XYtXY = np.zeros((G, S, S)), np.zeros((G, S, p1)), np.zeros((p1, p1))
    for c in range(C):
        wc = w[c]
        for g in range(G):
            row = c * G + g
            for i in range(S):
                for j in range(S):
                    ZtZ[g, i, j] += wc * comp_ZtZ[row, i, j]
                for j in range(p1):
                    ZtXY[g, i, j] += wc * comp_ZtXY[row, i, j]
        for i in range(p1):
            for j in range(p1):
                XYtXY[i, j] += wc * comp_XYtXY[c, i, j]
    return ZtZ, ZtXY, XYtXY


@njit
def statistics_gradient_at(T, K_all, Ainv_all, g, Gc, KG, TI, dW, dV):
    """Level g's derivative of D = log|A| + f(C) (∂f/∂C = Gc, symmetric) in the kernel's
    statistics, into dW and dV: ∂D/∂(Z_g'Z_g) = T(A_g⁻¹ + K_g Gc K_g')T' (S × S) and
    ∂D/∂(Z_g'[X y]) = −2 T K_g Gc (S × p+1); ∂D/∂([X y]'[X y]) is Gc itself.  K_g = A_g⁻¹T'Z_g'[X y]
    and A_g⁻¹ as :func:`bayeslmm.linalg.compiled.schur_complement_small` returns them; KG and TI are
    scratch.  Loops over the small blocks, indexed in place (no views, no temporaries)."""
    S, p1 = T.shape[0], Gc.shape[0]
    for i in range(S):
        for j in range(p1):
            v = 0.0
            for k in range(p1):
                v += K_all[g, i, k] * Gc[k, j]
            KG[i, j] = v
    for i in range(S):
        for j in range(S):
            v = Ainv_all[g, i, j]  # (A⁻¹ + K G K')_ij
            for k in range(p1):
                v += KG[i, k] * K_all[g, j, k]
            dW[i, j] = v
    for i in range(S):  # T is lower triangular
        for j in range(S):
            v = 0.0
            for k in range(i + 1):
                v += T[i, k] * dW[k, j]
            TI[i, j] = v
        for j in range(p1):
            v = 0.0
            for k in range(i + 1):
                v += T[i, k] * KG[k, j]
            dV[i, j] = -2.0 * v
    for i in range(S):
        for j in range(S):
            v = 0.0
            for k in range(j + 1):
                v += TI[i, k] * T[j, k]
            dW[i, j] = v


@njit
def component_contractions(T, K_all, Ainv_all, Gc, comp_ZtZ, comp_ZtXY, comp_XYtXY):
    """⟨∂D/∂S, S_c⟩ for every component c: the kernel's derivative in its statistics
    (:func:`statistics_gradient_at`, level by level) contracted with each component's."""
    C, p1 = comp_XYtXY.shape[0], Gc.shape[0]
    G, S = K_all.shape[0], T.shape[0]
    out = np.zeros(C)
    for c in range(C):
        v = 0.0
        for i in range(p1):
            for j in range(p1):
                v += Gc[i, j] * comp_XYtXY[c, i, j]
        out[c] = v
    KG, TI, dW, dV = np.empty((S, p1)), np.empty((S, S)), np.empty((S, S)), np.empty((S, p1))
    for g in range(G):
        statistics_gradient_at(T, K_all, Ainv_all, g, Gc, KG, TI, dW, dV)
        for c in range(C):
            row = c * G + g
            v = 0.0
            for i in range(S):
                for j in range(S):
                    v += dW[i, j] * comp_ZtZ[row, i, j]
                for j in range(p1):
                    v += dV[i, j] * comp_ZtXY[row, i, j]
            out[c] += v
    return out


@njit
def residual_marginal_logp(x, term_start, term_size, term_offset, term_eta, term_constant, prior_kind, prior_a,
                           prior_b, prior_constant, info, comp_int, comp_value, class_info, strata_count,
                           residual_prior, comp_ZtZ, comp_ZtXY, comp_XYtXY, n, precision, shift, constant):
    """The PyMC marginalised model's log-density with a residual structure at the unconstrained
    x = [log σ, the terms' parameters, φ] (φ from ``info[1]``), and its gradient.

    The likelihood is :func:`bayeslmm.linalg.compiled.marginal_logp`'s on the whitened
    statistics Σ_c w_c(φ) S_c, with −½ Σ log|R_i D_i²| added; φ's prior and Jacobian as PyMC's."""
    S = comp_ZtZ.shape[1]
    start = info[1]
    xr = x[start:]
    ok, w, dw, logdet_R, dlogdet_R, lp_R, dlp_R = residual_weights(xr, info, comp_int, comp_value, class_info,
                                                                   strata_count, residual_prior)
    if not ok:
        return -np.inf, np.zeros(x.shape[0])
    ZtZ, ZtXY, XYtXY = weighted_statistics(w, comp_ZtZ, comp_ZtXY, comp_XYtXY)
    sigma = math.exp(x[0])
    Lcov, Lcorr, norms = covariance_cholesky(x, term_start, term_size, term_offset, S)
    T = Lcov / sigma
    ok, logdet, C, K_all, Ainv_all = schur_complement_small(T, ZtZ, ZtXY, XYtXY)
    if not ok:
        return -np.inf, np.zeros(x.shape[0])
    D, Gc, dsigma2 = beta_integrated(C, logdet, sigma * sigma, n, 0.0, precision, shift, constant, True)
    if not np.isfinite(D):
        return -np.inf, np.zeros(x.shape[0])
    dT = schur_gradient_small(T, ZtZ, ZtXY, K_all, Ainv_all, Gc)
    lp, grad = logp_from_deviance(x, D, dT, dsigma2, Lcov, Lcorr, norms, term_start, term_size, term_offset,
                                  term_eta, term_constant, prior_kind, prior_a, prior_b, prior_constant)
    dD_dw = component_contractions(T, K_all, Ainv_all, Gc, comp_ZtZ, comp_ZtXY, comp_XYtXY)
    lp += lp_R - 0.5 * logdet_R
    for k in range(xr.shape[0]):
        grad[start + k] = dlp_R[k] - 0.5 * (np.sum(dw[k] * dD_dw) + dlogdet_R[k])
    return lp, grad
