"""Two or more grouping factors' Schur complement and its vector-Jacobian product, compiled.

The same math as :func:`bayeslmm.linalg.logdensity.factorize_T` and
:func:`bayeslmm.linalg.gradient.factorization_vjp`, written as loops with ``numba.njit(cache=True)``
for a second block small enough to hold densely in a few hundred kB (Q2 ≤ :data:`MAX_SECOND_BLOCK`):
there the NumPy path's cost is call overhead on blocks of a few rows, not arithmetic.  Every
argument is an array of a fixed dtype and rank, so the machine code is compiled once per
installation.

The first factor per level (A1_g = T1'W11_gT1 + I, K_g = A1_g⁻¹T1'V_g, V_g = Z1'[X y] of level g),
the later factors in one dense block (Λ2 = blockdiag over their levels of T_f):

    W22* = Z2'Z2 − Σ_g C_g D_g C_g',   D_g = T1 A1_g⁻¹ T1',  C_g = Z2'Z1 on level g's columns
    A22  = Λ2'W22*Λ2 + I = L22 L22',   R2 = L22⁻¹Λ2'(Z2'[X y] − Σ_g C_g T1 K_g)
    C    = [X y]'[X y] − Σ_g V_g'T1 K_g − R2'R2,   log|L|² = Σ_g log|A1_g| + log|A22|

and, for cotangents C̄ (K = sym C̄) and ℓ̄ of C and log|L|², dT_f = 2ℓ̄·½∂log|A|/∂T_f + ∂tr(KC)/∂T_f
by the selected-inversion formulas of :mod:`bayeslmm.linalg.gradient`: with U2 = A22⁻¹Λ2'(…),
P_g = C_g'Λ2U2, U1_g = K_g − A1_g⁻¹T1'P_g, Z̃1_g = V_g − W11_gT1U1_g − P_g, Z̃2 = Z2'[X y] −
Σ_g C_gT1U1_g − Z2'Z2Λ2U2, Ω22 = A22⁻¹, N_g = C_g'Λ2Ω22Λ2'C_g, H_g = T1A1_g⁻¹:

    ∂tr(KC)/∂T1 = −2 Σ_g Z̃1_g K U1_g',     ∂tr(KC)/∂T_f = −2 Σ_{i∈f} Z̃2_i K U2_i'
    ½∂log|A|/∂T1 = Σ_g W11_gT1(A1_g⁻¹ + H_g'N_gH_g) − N_gH_g,
    ½∂log|A|/∂T_f = Σ_{i∈f} [W22* Λ2Ω22]_ii.

The later factors' T_f are passed stacked and zero-padded, (F2, S, S) with S the largest S_f.
"""
from __future__ import annotations

import functools
import math

import numba
import numpy as np
from llvmlite import binding, ir
from numba.core import cgutils, types
from numba.extending import get_cython_function_address, intrinsic

from bayeslmm.linalg.compiled import (
    LOG_2PI,
    beta_gradient,
    beta_integrated,
    cached,
    cholesky_into,
    covariance_cholesky,
    logp_from_deviance,
    njit,
    product_into,
    schur_complement_small,
    solve_spd,
)
from bayeslmm.linalg.compiled_levels import downdate, gather, levels_times, times_levels
from bayeslmm.linalg.crossprod import CrossProducts


def covers(stats: CrossProducts) -> bool:
    """Whether these kernels take the statistics: two or more factors, a second block of at most
    :data:`MAX_SECOND_BLOCK` columns."""
    return stats.n_factors == 2 and stats.ZtZ2.shape[0] <= MAX_SECOND_BLOCK


def arguments(Ts, stats: CrossProducts) -> tuple:
    """The arguments of :func:`blocked_schur` before [X y]'[X y]: T1, the later T_f stacked and
    zero-padded, their levels and sizes, and the statistics (float64 / int64, contiguous)."""
    sizes = np.array([T.shape[0] for T in Ts[1:]], dtype=np.int64)
    T2 = np.zeros((len(Ts) - 1, sizes.max(), sizes.max()))
    for f, T in enumerate(Ts[1:]):
        T2[f, : sizes[f], : sizes[f]] = T
    by_level, dense = level_arguments(stats)
    return (_f64(Ts[0]), T2, np.array(stats.levels[1:], dtype=np.int64), sizes, _f64(stats.ZtZ1),
            _f64(stats.ZtXY1), _f64(stats.ZtZ2), _f64(stats.ZtXY2)) + by_level + (dense,)


def level_arguments(stats: CrossProducts) -> tuple[tuple, np.ndarray]:
    """Z2'Z1 by first-factor level (start, rows, values), and as a dense (Q2, G1·S1) array where
    the NumPy path keeps it dense (crossed designs), else an empty (Q2, 0) one."""
    by_level = stats.z2tz1_by_level
    dense = stats.pairs.dense
    dense = np.zeros((stats.ZtZ2.shape[0], 0)) if dense is None else _f64(dense.reshape(dense.shape[0], -1))
    return (by_level.start, by_level.rows, by_level.values), dense


def later_factors(dT2, Ts) -> list[np.ndarray]:
    """The stacked, padded (F2, S, S) derivative cut back into one (S_f, S_f) array per later factor."""
    return [dT2[f, : T.shape[0], : T.shape[0]] for f, T in enumerate(Ts[1:])]


def _f64(array) -> np.ndarray:
    return np.ascontiguousarray(array, dtype=np.float64)


def njit_sums(function):
    """njit (cached) for the dense Q2-sized loops: their sums may be reassociated, so that LLVM
    vectorises them (4× here); the result is still the same in every process."""
    return cached(functools.partial(numba.njit, fastmath={"reassoc", "contract"}), function)


# Q2 above which the NumPy path (LAPACK on the dense second block) is faster than these loops
MAX_SECOND_BLOCK = 250


@njit
def lambda_rows(X, T2, levels2, sizes2, transpose):
    """Λ2 X (or Λ2'X) for X of shape (Q2, k): each T entry read once and run along a row of X
    (contiguous, so the inner loop vectorises: 5× the loop over X's columns at Q2 = 130)."""
    out = np.zeros_like(X)
    start = 0
    for f in range(levels2.shape[0]):
        S = sizes2[f]
        for _ in range(levels2[f]):
            for i in range(S):
                for j in range(S):
                    t = T2[f, j, i] if transpose else T2[f, i, j]
                    for c in range(X.shape[1]):
                        out[start + i, c] += t * X[start + j, c]
            start += S
    return out


@njit
def lambda_columns(X, T2, levels2, sizes2, transpose):
    """X Λ2 (or X Λ2') for X of shape (k, Q2): (Λ2'X')' (or (Λ2X')')."""
    return np.ascontiguousarray(lambda_rows(np.ascontiguousarray(X.T), T2, levels2, sizes2, not transpose).T)


@njit
def first_factor_products(T1, Ainv, K):
    """D_g = T1 A1_g⁻¹ T1' (G1, S1, S1) and T1 K_g (G1, S1, p+1) of every level."""
    G1, S1, p1 = K.shape
    D, TK, H = np.empty((G1, S1, S1)), np.empty((G1, S1, p1)), np.empty((S1, S1))
    for g in range(G1):
        product_into(T1, Ainv[g], H, 1.0, 0.0)
        product_into(H, T1, D[g], 1.0, 0.0, False, True)
        product_into(T1, K[g], TK[g], 1.0, 0.0)
    return D, TK


@njit_sums
def rows_times_rows(A, B):
    """A B' for A (m, k) and B (n, k), as dot products of contiguous rows (no BLAS call: these
    kernels run on the caller's thread, whatever BLAS's thread count)."""
    out = np.empty((A.shape[0], B.shape[0]))
    for i in range(A.shape[0]):
        for j in range(B.shape[0]):
            s = 0.0
            for k in range(A.shape[1]):
                s += A[i, k] * B[j, k]
            out[i, j] = s
    return out


@njit_sums
def forward_lower(L, B):
    """L⁻¹B for a lower-triangular L, B of shape (n, k)."""
    out = np.empty_like(B)
    for i in range(L.shape[0]):
        for c in range(B.shape[1]):
            s = B[i, c]
            for k in range(i):
                s -= L[i, k] * out[k, c]
            out[i, c] = s / L[i, i]
    return out


@njit_sums
def backward_lower(L, B):
    """L⁻ᵀB for a lower-triangular L, B of shape (n, k)."""
    out = B.copy()
    for i in range(L.shape[0] - 1, -1, -1):
        for c in range(B.shape[1]):
            out[i, c] /= L[i, i]
        for k in range(i):  # subtract row i's contribution from the rows above, row-wise in L
            for c in range(B.shape[1]):
                out[k, c] -= L[i, k] * out[i, c]
    return out


@njit
def dense_cholesky(A):
    """(ok, L): LAPACK's Cholesky factor of the Q2 × Q2 block (numba's np.linalg), ok False where
    A is not positive definite."""
    try:
        return True, np.linalg.cholesky(A)
    except Exception:  # numba raises LinAlgError for a matrix that is not positive definite
        return False, np.zeros_like(A)


# LAPACK's dpotri (the inverse from a Cholesky factor: a third of the flops of the LU inverse numba's
# np.linalg.inv runs, 2.3x faster at Q2 = 130) called by name from the compiled code, the name bound
# to SciPy's LAPACK here at import: the machine code keeps the name, not an address, so it stays in
# numba's disk cache (a function pointer in it would not).
_DPOTRI = "bayeslmm_dpotri"
binding.add_symbol(_DPOTRI, get_cython_function_address("scipy.linalg.cython_lapack", "dpotri"))


@intrinsic
def _dpotri(typingctx, uplo, n, a, lda, info):
    """dpotri(uplo, n, a, lda, info) on the addresses of its arguments (Fortran's calling convention)."""
    def codegen(context, builder, signature, args):
        pointer = ir.IntType(8).as_pointer()
        function = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [pointer] * 5),
                                                  _DPOTRI)
        builder.call(function, [builder.inttoptr(arg, pointer) for arg in args])
        return context.get_dummy_value()
    return types.void(uplo, n, a, lda, info), codegen


@njit
def cholesky_inverse(L):
    """(L L')⁻¹ for a lower-triangular L, symmetric and full: LAPACK's dpotri on L (row-major L'
    is column-major L), which fills one triangle, mirrored into the other."""
    n = L.shape[0]
    out = np.empty((n, n))  # a fresh C-ordered array whatever L's order: L itself stays intact
    out[:, :] = L.T
    uplo, size, info = np.array([ord("L")], dtype=np.uint8), np.array([n], dtype=np.int32), np.zeros(1, np.int32)
    _dpotri(uplo.ctypes.data, size.ctypes.data, out.ctypes.data, size.ctypes.data, info.ctypes.data)
    for i in range(n):  # dpotri wrote column-major lower = row-major upper
        for j in range(i):
            out[i, j] = out[j, i]
    return out


@njit
def blocked_schur(T1, T2, levels2, sizes2, ZtZ1, ZtXY1, ZtZ2, ZtXY2, start, rows, values, dense, XYtXY):
    """The Schur complement C and log|L|² (the weights' Σ log w not subtracted) of the blocked
    Cholesky, and what :func:`blocked_vjp` reuses: (ok, log|L|², C, K, A1⁻¹, W22*, L22, Y) with
    Y = Λ2'(Z2'[X y] − Σ_g C_g T1 K_g); ok False where a block is not positive definite."""
    Q2 = ZtZ2.shape[0]
    ok, logdet, C, K, Ainv = schur_complement_small(T1, ZtZ1, ZtXY1, XYtXY)  # unrolled for one or two columns
    L22, W, Y = np.zeros((Q2, Q2)), np.zeros((Q2, Q2)), np.zeros((Q2, XYtXY.shape[0]))
    if not ok:
        return False, np.inf, C, K, Ainv, W, L22, Y
    D, TK = first_factor_products(T1, Ainv, K)
    W = downdate(ZtZ2, start, rows, values, dense, D)
    A22 = lambda_columns(lambda_rows(W, T2, levels2, sizes2, True), T2, levels2, sizes2, False)
    for i in range(Q2):
        A22[i, i] += 1.0
    ok, L22 = dense_cholesky(A22)
    if not ok:
        return False, np.inf, C, K, Ainv, W, L22, Y
    Y = lambda_rows(ZtXY2 - times_levels(start, rows, values, TK, Q2), T2, levels2, sizes2, True)
    R2 = forward_lower(L22, Y)
    product_into(R2, R2, C, -1.0, 1.0, True)
    for i in range(Q2):
        logdet += 2.0 * math.log(L22[i, i])
    return True, logdet, C, K, Ainv, W, L22, Y


@njit
def blocked_vjp(T1, T2, levels2, sizes2, ZtZ1, ZtXY1, ZtZ2, ZtXY2, start, rows, values,
                dense, K, Ainv, W, L22, Y, Cbar, logdet_bar):
    """dT1 (S1, S1) and dT2 (F2, S, S): the gradient in the T's of a scalar whose gradients in C
    and log|L|² are ``Cbar`` and ``logdet_bar``, from :func:`blocked_schur`'s results."""
    G1, S1, p1 = K.shape
    Q2 = L22.shape[0]
    Ksym = 0.5 * (Cbar + Cbar.T)
    # ∂tr(KC): U2 = A22⁻¹Y, P_g = C_g'Λ2U2, U1_g = K_g − A1_g⁻¹T1'P_g
    U2 = backward_lower(L22, forward_lower(L22, Y))
    lam_U2 = lambda_rows(U2, T2, levels2, sizes2, False)
    P = levels_times(start, rows, values, lam_U2)
    U1, lam_U1, TtP = K.copy(), np.empty((G1, S1, p1)), np.empty((S1, p1))
    for g in range(G1):
        product_into(T1, P[g], TtP, 1.0, 0.0, True)
        product_into(Ainv[g], TtP, U1[g], -1.0, 1.0)
        product_into(T1, U1[g], lam_U1[g], 1.0, 0.0)
    Z2t = ZtXY2 - times_levels(start, rows, values, lam_U1, Q2)
    product_into(ZtZ2, lam_U2, Z2t, -1.0, 1.0)
    dT1, ZK = np.zeros((S1, S1)), np.empty((S1, p1))
    Zt1 = np.empty((S1, p1))
    for g in range(G1):
        Zt1[:, :] = ZtXY1[g] - P[g]
        product_into(ZtZ1[g], lam_U1[g], Zt1, -1.0, 1.0)
        product_into(Zt1, Ksym, ZK, 1.0, 0.0)
        product_into(ZK, U1[g], dT1, -2.0, 1.0, False, True)
    dT2 = np.zeros((levels2.shape[0], T2.shape[1], T2.shape[1]))
    Z2K = np.empty((Q2, p1))
    product_into(Z2t, Ksym, Z2K, 1.0, 0.0)
    # ½∂log|A|: Ω22 = A22⁻¹, N_g = C_g'Λ2Ω22Λ2'C_g, H_g = T1A1_g⁻¹
    Omega = cholesky_inverse(L22)
    Omega_lam = lambda_columns(Omega, T2, levels2, sizes2, True)  # Ω22Λ2' = (Λ2Ω22)'
    X = lambda_rows(Omega_lam, T2, levels2, sizes2, False)  # Λ2Ω22Λ2'
    twice = 2.0 * logdet_bar
    position = 0
    for f in range(levels2.shape[0]):
        S = sizes2[f]
        for _ in range(levels2[f]):
            for i in range(S):
                for j in range(S):
                    s, d = 0.0, 0.0
                    for c in range(p1):
                        s += Z2K[position + i, c] * U2[position + j, c]
                    for q in range(Q2):
                        d += W[position + i, q] * Omega_lam[position + j, q]
                    dT2[f, i, j] += twice * d - 2.0 * s
            position += S
    H, N, inner, WT = np.empty((S1, S1)), np.empty((S1, S1)), np.empty((S1, S1)), np.empty((S1, S1))
    N_all = gather(X, start, rows, values, dense)
    for g in range(G1):
        N[:, :] = N_all[g]
        product_into(T1, Ainv[g], H, 1.0, 0.0)
        product_into(N, H, inner, 1.0, 0.0)  # N H
        WT[:, :] = Ainv[g]
        product_into(H, inner, WT, 1.0, 1.0, True)  # A1⁻¹ + H'NH
        product_into(ZtZ1[g], T1, N, 1.0, 0.0)  # N is free again: W11 T1
        product_into(N, WT, dT1, twice, 1.0)
        for r in range(S1):
            for c in range(S1):
                dT1[r, c] -= twice * inner[r, c]
    return dT1, dT2


@njit
def blocked_profiled_deviance(T1, T2, levels2, sizes2, ZtZ1, ZtXY1, ZtZ2, ZtXY2, start, rows, values,
                              dense, XYtXY, n, log_weights, reml, want_gradient):
    """The REML criterion or −2 log-likelihood (ML), β and σ profiled, and, if ``want_gradient``,
    its derivative in T1 and the stacked T2: :func:`bayeslmm.linalg.compiled.profiled_deviance`
    for several factors (∂D/∂C at σ̂² by the envelope theorem, ∂D/∂log|L|² = 1)."""
    p = XYtXY.shape[0] - 1
    dT1, dT2 = np.zeros(T1.shape), np.zeros(T2.shape)
    ok, logdet, C, K, Ainv, W, L22, Y = blocked_schur(T1, T2, levels2, sizes2, ZtZ1, ZtXY1, ZtZ2, ZtXY2,
                                                      start, rows, values, dense, XYtXY)
    if not ok:
        return np.inf, dT1, dT2
    LX, beta = np.empty((p, p)), np.empty((p, 1))
    if p > 0 and not cholesky_into(np.ascontiguousarray(C[:p, :p]), LX):
        return np.inf, dT1, dT2
    solve_spd(LX, np.ascontiguousarray(C[:p, p:]), beta)
    r2, logdet_M = C[p, p], 0.0
    for i in range(p):
        r2 -= C[i, p] * beta[i, 0]
        logdet_M += 2.0 * math.log(LX[i, i])
    if not r2 > 0.0:
        return np.inf, dT1, dT2
    dof = n - p if reml else n
    D = logdet - log_weights + dof * (1.0 + LOG_2PI + math.log(r2 / dof))
    if reml:
        D += logdet_M
    if not want_gradient:
        return D, dT1, dT2
    sigma2 = r2 / dof
    Hinv = np.zeros((p, p))
    if reml:
        solve_spd(LX, np.eye(p) * sigma2, Hinv)
    Gc = beta_gradient(Hinv, beta, sigma2)
    dT1, dT2 = blocked_vjp(T1, T2, levels2, sizes2, ZtZ1, ZtXY1, ZtZ2, ZtXY2, start, rows, values,
                           dense, K, Ainv, W, L22, Y, Gc, 1.0)
    return D, dT1, dT2


@njit
def factor_Ts(Lcov, sigma, factor_sizes):
    """T1 and the later T_f stacked and zero-padded (F2, S, S), from the block-diagonal Cholesky
    factor of every factor's covariance (columns factor after factor) over σ."""
    S1, F2 = factor_sizes[0], factor_sizes.shape[0] - 1
    T1 = np.ascontiguousarray(Lcov[:S1, :S1]) / sigma
    T2 = np.zeros((F2, np.max(factor_sizes[1:]), np.max(factor_sizes[1:])))
    start = S1
    for f in range(F2):
        S = factor_sizes[f + 1]
        T2[f, :S, :S] = Lcov[start : start + S, start : start + S] / sigma
        start += S
    return T1, T2


@njit
def blocked_marginal_logp(x, term_start, term_size, term_offset, prior_kind, factor_sizes, levels, term_eta,
                          term_constant, prior_a, prior_b, prior_constant, ZtZ1, ZtXY1, ZtZ2, ZtXY2, start, rows,
                          values, dense, XYtXY, n, log_weights, precision, shift, constant):
    """:func:`bayeslmm.linalg.compiled.marginal_logp` for two or more grouping factors: the columns
    of every factor one after another (``term_start`` and the scale priors indexed by them, σ's
    last), the likelihood from :func:`blocked_schur` and its gradient from :func:`blocked_vjp`."""
    total = np.sum(factor_sizes)
    sigma = math.exp(x[0])
    Lcov, Lcorr, norms = covariance_cholesky(x, term_start, term_size, term_offset, total)
    T1, T2 = factor_Ts(Lcov, sigma, factor_sizes)
    levels2, sizes2 = levels[1:], factor_sizes[1:]
    ok, logdet, C, K, Ainv, W, L22, Y = blocked_schur(T1, T2, levels2, sizes2, ZtZ1, ZtXY1, ZtZ2, ZtXY2, start,
                                                      rows, values, dense, XYtXY)
    dT, Gc = np.zeros((total, total)), np.zeros(XYtXY.shape)
    D, dsigma2 = np.inf, 0.0
    if ok:
        D, Gc, dsigma2 = beta_integrated(C, logdet, sigma * sigma, n, log_weights, precision, shift, constant, True)
    if np.isfinite(D):
        dT1, dT2 = blocked_vjp(T1, T2, levels2, sizes2, ZtZ1, ZtXY1, ZtZ2, ZtXY2, start, rows, values, dense,
                               K, Ainv, W, L22, Y, Gc, 1.0)
        S1 = factor_sizes[0]
        dT[:S1, :S1] = dT1
        begin = S1
        for f in range(sizes2.shape[0]):
            S = sizes2[f]
            dT[begin : begin + S, begin : begin + S] = dT2[f, :S, :S]
            begin += S
    return logp_from_deviance(x, D, dT, dsigma2, Lcov, Lcorr, norms, term_start, term_size, term_offset, term_eta,
                              term_constant, prior_kind, prior_a, prior_b, prior_constant)
