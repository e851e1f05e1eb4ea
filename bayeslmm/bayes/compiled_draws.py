"""The posterior's per-draw loops, compiled: exact draws of β and b with one grouping factor, and
Xβ + Zb and the pointwise Gaussian log-likelihood, for thousands of draws × levels or rows.

The math is :mod:`bayeslmm.bayes.draws`' and :mod:`bayeslmm.bayes.predictive`'s (NumPy, which
keeps the cases these loops do not cover: several factors, residual structures), here as
``numba.njit(cache=True)`` loops over draws, so that nothing of size draws × rows is
materialised twice and no Python runs per draw.  The per-level factorization is the kernel's
(:func:`bayeslmm.linalg.compiled.schur_complement_small`); the standard normals come from the
caller's NumPy generator, in the order the NumPy path draws them.
"""
from __future__ import annotations

import math

import numba
import numpy as np

from bayeslmm.linalg.compiled import LOG_2PI, cached, cholesky_into, njit, schur_complement_small, solve_spd


def inline_njit(function):
    """:func:`njit`, inlined into its caller by numba (a call per level and draw otherwise costs
    more than its arithmetic: every array argument's reference count, twice)."""
    return cached(lambda cache: numba.njit(cache=cache, inline="always"), function)


def parallel_njit(function):
    """:func:`njit` with ``numba.prange`` loops run on numba's threads (one per core)."""
    return cached(lambda cache: numba.njit(cache=cache, parallel=True), function)


@parallel_njit
def one_factor_draws(T, sigma, ZtZ, ZtXY, XYtXY, precision, shift, z_beta, z_b, beta, b):
    """β | θ, σ, y ~ N(H⁻¹h, H⁻¹) and b_g = T u_g, u_g = K_g[:, p] − K_g[:, :p]β + σL_g⁻ᵀz_g, for
    every draw d of T (D, S, S: the relative factor T = blockdiag(chol)/σ) and σ (D,), given the
    standard normals z_beta (D, p) and z_b (D, G, S), into beta (D, p) and b (D, G, S); the draws
    in parallel.  K_g = A_g⁻¹T'Z_g'[X y] and C come from :func:`bayeslmm.linalg.compiled.schur_complement_small`, L_g is A_g's
    Cholesky factor (:func:`bayeslmm.bayes.draws._draws_together` writes u as L_g⁻ᵀ(c − Rβ + σz),
    the same vector)."""
    for d in numba.prange(T.shape[0]):
        one_draw(d, T, sigma, ZtZ, ZtXY, XYtXY, precision, shift, z_beta, z_b, beta, b)


@njit
def one_draw(d, T, sigma, ZtZ, ZtXY, XYtXY, precision, shift, z_beta, z_b, beta, b):
    """Draw d of :func:`one_factor_draws`."""
    S, G, p = T.shape[1], ZtZ.shape[0], XYtXY.shape[0] - 1
    H, LH, h, mean = np.empty((p, p)), np.empty((p, p)), np.empty((p, 1)), np.empty((p, 1))
    A, L, v, u, w = np.empty((S, S)), np.empty((S, S)), np.empty(S), np.empty(S), np.empty(p)
    ok, _, C, K, _ = schur_complement_small(np.ascontiguousarray(T[d]), ZtZ, ZtXY, XYtXY)
    sigma2 = sigma[d] * sigma[d]
    for i in range(p):
        h[i, 0] = C[i, p] / sigma2 + shift[i]
        for j in range(p):
            H[i, j] = C[i, j] / sigma2 + precision[i, j]
    if not (ok and cholesky_into(H, LH)):  # not at a posterior draw: a failed factorization is NaN
        beta[d, :], b[d, :, :] = np.nan, np.nan
        return
    solve_spd(LH, h, mean)
    for i in range(p - 1, -1, -1):  # β = H⁻¹h + LH⁻ᵀz
        s = z_beta[d, i]
        for k in range(i + 1, p):
            s -= LH[k, i] * w[k]
        w[i] = s / LH[i, i]
        beta[d, i] = mean[i, 0] + w[i]
    for g in range(G):
        level_noise(T, d, ZtZ, g, z_b, A, L, v)
        for i in range(S):
            s = K[g, i, p]
            for k in range(p):
                s -= K[g, i, k] * beta[d, k]
            u[i] = s + sigma[d] * v[i]
        for i in range(S):
            s = 0.0
            for k in range(S):
                s += T[d, i, k] * u[k]
            b[d, g, i] = s


@inline_njit
def level_noise(T, d, ZtZ, g, z_b, A, L, v):
    """v = L_g⁻ᵀz_g, L_g the Cholesky factor of A_g = T_d'Z_g'Z_g T_d + I (A and L: S×S scratch);
    one or two columns unrolled, as in :func:`bayeslmm.linalg.compiled.schur_complement_small`."""
    S = A.shape[0]
    if S == 1:
        v[0] = z_b[d, g, 0] / math.sqrt(T[d, 0, 0] * T[d, 0, 0] * ZtZ[g, 0, 0] + 1.0)
        return
    if S == 2:
        t00, t01, t10, t11 = T[d, 0, 0], T[d, 0, 1], T[d, 1, 0], T[d, 1, 1]
        z00, z01, z11 = ZtZ[g, 0, 0], ZtZ[g, 0, 1], ZtZ[g, 1, 1]
        m00, m01 = z00 * t00 + z01 * t10, z00 * t01 + z01 * t11  # Z'Z T
        m10, m11 = z01 * t00 + z11 * t10, z01 * t01 + z11 * t11
        l00 = math.sqrt(t00 * m00 + t10 * m10 + 1.0)
        l10 = (t00 * m01 + t10 * m11) / l00
        l11 = math.sqrt(t01 * m01 + t11 * m11 + 1.0 - l10 * l10)
        v[1] = z_b[d, g, 1] / l11
        v[0] = (z_b[d, g, 0] - l10 * v[1]) / l00
        return
    for i in range(S):
        for j in range(i + 1):
            s = 1.0 if i == j else 0.0
            for k in range(S):
                for m in range(S):
                    s += T[d, k, i] * ZtZ[g, k, m] * T[d, m, j]
            A[i, j] = A[j, i] = s
    cholesky_into(A, L)
    for i in range(S - 1, -1, -1):
        s = z_b[d, g, i]
        for k in range(i + 1, S):
            s -= L[k, i] * v[k]
        v[i] = s / L[i, i]


@inline_njit
def draw_mean(d, out, XT, beta, index, rawT, b, sizes):
    """out[d, :] = Xβ_d + Σ_f Z_f b_fd, each term a sweep over the rows (so that LLVM vectorises
    it).  XT is X' (p, m); factor f (S_f = sizes[f] columns) adds b[d, index[f, i] + s] · rawT[c_f + s, i]
    for its column s and row i, with c_f its first row in rawT (Σ_f S_f, m) and index[f, i] where
    row i's level starts among draw d's effects (the factors' (G_f, S_f) blocks one after another).
    Rows of an unseen level come with index 0 and zero columns: they add nothing."""
    m = XT.shape[1]
    for i in range(m):
        out[d, i] = 0.0
    for k in range(XT.shape[0]):
        for i in range(m):
            out[d, i] += XT[k, i] * beta[d, k]
    column = 0
    for f in range(sizes.shape[0]):
        for s in range(sizes[f]):
            for i in range(m):
                out[d, i] += b[d, index[f, i] + s] * rawT[column + s, i]
        column += sizes[f]


@parallel_njit
def linear_predictor(out, XT, beta, index, rawT, b, sizes):
    """out[d, :] = Xβ_d + Zb_d for every draw d (:func:`draw_mean`), the draws in parallel."""
    for d in numba.prange(out.shape[0]):
        draw_mean(d, out, XT, beta, index, rawT, b, sizes)


@parallel_njit
def pointwise_log_likelihood(out, y, sigma, row_scale, XT, beta, index, rawT, b, sizes):
    """out[d, i] = log N(y_i | μ_di, (σ_d s_i)²), μ of :func:`draw_mean`, s_i = row_scale[i] (1/√w_i,
    or all 1), the draws in parallel: nothing of size draws × rows but out."""
    log_scale = np.log(row_scale)
    for d in numba.prange(out.shape[0]):
        draw_mean(d, out, XT, beta, index, rawT, b, sizes)
        log_sigma = math.log(sigma[d])
        for i in range(out.shape[1]):
            r = (y[i] - out[d, i]) / (sigma[d] * row_scale[i])
            out[d, i] = -0.5 * (r * r + LOG_2PI) - log_sigma - log_scale[i]
