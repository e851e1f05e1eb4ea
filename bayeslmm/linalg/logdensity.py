"""THE Gaussian marginal log-likelihood of a linear mixed model, random effects integrated out.

Written once, as lme4's penalised least squares (Bates et al. 2015, JSS 67(1)):

    L_θ L_θ' = Λ_θ' Z'Z Λ_θ + I      (blocked Cholesky; first factor per level)
    C        = [X y]'[X y] − (rows of L below the Z blocks)'(…)   (a (p+1)² Schur complement)

C holds M = R_X'R_X, w = X'y-part and s = y'y-part, so β̂ = M⁻¹w and r² = s − w'β̂.
Every consumer — the REML/ML optimiser, conditional modes and variances, and the
Bayesian marginal model — evaluates these functions; nothing re-derives them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.linalg.lapack import dtrtrs

from bayeslmm.linalg import batched, dense
from bayeslmm.linalg.crossprod import CrossProducts
from bayeslmm.model.covariance import ThetaLayout

LOG_2PI = np.log(2 * np.pi)


def solve_lower(L: np.ndarray, B: np.ndarray, transpose: bool = False) -> np.ndarray:
    """L⁻¹B (or L⁻ᵀB) for one dense lower-triangular L (LAPACK dtrtrs: no per-call overhead)."""
    if L.shape[0] == 0:
        return np.zeros_like(B, dtype=float)
    x, info = dtrtrs(L, np.asarray(B, dtype=float), lower=1, trans=int(transpose))
    if info != 0:
        raise np.linalg.LinAlgError(f"triangular solve failed (info={info})")
    return x


@dataclass(frozen=True)
class Factorization:
    """The blocked Cholesky factor of Λ'Z'ZΛ + I at one θ, and the Schur complement C."""

    T: list[np.ndarray]  # relative covariance factor of each grouping factor
    L1: np.ndarray | None  # (G1, S1, S1) per level of the first factor
    L1inv: np.ndarray | None  # (G1, S1, S1) its inverse
    R1: np.ndarray | None  # (G1, S1, p+1) = L1⁻¹ T1' Z1'[X y]
    B1: np.ndarray | None  # (G1, S1, S1) = T1 L1_g⁻ᵀ, so that L21 = Λ2' Z2'Z1 blockdiag(B1)
    Z2tZ1: sp.csr_matrix | None  # the data's Z2'Z1 (a reference, for products with L21)
    L22: np.ndarray | None  # (Q2, Q2)
    R2: np.ndarray | None  # (Q2, p+1)
    C: np.ndarray  # (p+1, p+1)
    logdet: float  # log |L_θ|² − Σ log w_i = log|ZΛΛ'Z' + W⁻¹| (prior weights W; Σ log w_i = 0 without)
    levels: tuple[int, ...] = ()  # G_f of every factor
    # (Q2, Q2) = Z2'Z2 − Z2'Z1 Λ1 A1⁻¹ Λ1' Z1'Z2: the later factors' Z'Z with the first factor
    # eliminated, so that A22 = Λ2' schur_W22 Λ2 + I (kept for the gradient)
    schur_W22: np.ndarray | None = None


@dataclass(frozen=True)
class Profile:
    """Fixed effects and penalised residual sum of squares given θ (β profiled out)."""

    LX: np.ndarray  # (p, p) lower Cholesky factor of M = X'V⁻¹X · σ²
    beta: np.ndarray  # β̂(θ)
    r2: float  # penalised residual sum of squares
    logdet_M: float  # log |M|


def factorize(theta: np.ndarray, stats: CrossProducts, layout: ThetaLayout) -> Factorization | None:
    """Blocked Cholesky at ``theta``; None where a block is not positive definite."""
    return factorize_T(layout.factors_T(np.asarray(theta, dtype=float)), stats)


def factorize_T(Ts: list[np.ndarray], stats: CrossProducts) -> Factorization | None:
    """Blocked Cholesky given each factor's relative covariance factor T_f."""
    if stats.n_factors == 0:
        return Factorization(Ts, None, None, None, None, None, None, None, stats.XYtXY.copy(), -stats.log_weights)
    L1, L1inv, R1, C, logdet = factorize_first(Ts[0], stats)
    if not np.isfinite(logdet):
        return None
    logdet = logdet - stats.log_weights  # |V| = |L|² / |W|: the weights' log-determinant enters here once
    if stats.n_factors == 1:
        return Factorization(Ts, L1, L1inv, R1, None, None, None, None, C, logdet, stats.levels)
    return _factorize_other_factors(Ts, stats, L1, L1inv, R1, C, logdet)


def factorize_first(T1, stats: CrossProducts, xp=np, as_entries: bool = False):
    """The first factor's per-level blocks: L1, L1⁻¹, R1, the Schur complement C and log|L1|².

    Entry by entry over the S×S blocks (see :mod:`bayeslmm.batched`), against the array
    namespace ``xp``: the Bayesian model builds its graph from this same function, and
    then only C and log|L1|² are used (L1, L1⁻¹, R1 are assembled for NumPy only).
    ``T1`` may carry leading axes (D, 1, S, S) to factorize D parameter values at once;
    the results then lead with D too.  ``as_entries`` (and any symbolic ``xp``) returns
    L1⁻¹ as its entry dict and R1 as its list of S rows, unassembled.
    """
    S = _static_shape(stats.ZtZ1)[1]
    T = {(k, i): T1[..., k, i] for k in range(S) for i in range(S)}
    A = batched.congruence(T, batched.entries(stats.ZtZ1, S), S)
    for s in range(S):
        A[s, s] = A[s, s] + 1.0
    L = batched.cholesky(A, S, xp)
    Linv = batched.inverse_lower(L, S)
    V = [_sum_terms(T[k, i][..., None] * stats.ZtXY1[:, k, :] for k in range(S)) for i in range(S)]  # T1'Z'[X y]
    R = [_sum_terms(Linv[i, k][..., None] * V[k] for k in range(i + 1)) for i in range(S)]  # rows of R1
    C = stats.XYtXY - _sum_terms(_gram(r, xp) for r in R)
    logdet = 2.0 * _sum_terms(xp.log(L[s, s]).sum(axis=-1) for s in range(S))
    if xp is not np or as_entries:  # what factorize_graph and the draws need
        return None, Linv, R, C, logdet
    return batched.assemble(L, S), batched.assemble(Linv, S), np.stack(R, axis=-2), C, logdet


def factorize_graph(Ts, stats: CrossProducts, xp):
    """C and log|L|² of one grouping factor against a symbolic ``xp`` (PyTensor), entry by
    entry (:func:`factorize_first`).  With several factors the Bayesian model evaluates the
    NumPy factorization inside one Op instead (:mod:`bayeslmm.bayes.factorization_op`)."""
    _, _, _, C, logdet = factorize_first(Ts[0], stats, xp=xp)
    return C, logdet - stats.log_weights  # as in factorize_T


def _static_shape(array) -> tuple:
    """The shape as integers, for a NumPy array or a PyTensor variable (whose statistics may
    be formed inside the graph, e.g. from data whitened at the residual structure's φ)."""
    return array.shape if isinstance(array, np.ndarray) else array.type.shape


def _gram(rows, xp):
    """Σ_g r_g r_g' over the levels axis (−2) of ``rows`` (…, G, k): one batched BLAS product
    in NumPy; in a PyTensor graph, elementwise products, which fuse into a faster and
    quicker-to-compile log-density than a Dot (measured on sleepstudy)."""
    if xp is np:
        return np.matmul(np.swapaxes(rows, -1, -2), rows)
    return (rows[..., :, None] * rows[..., None, :]).sum(axis=-3)


def _sum_terms(terms):
    return sum(terms, start=0.0)


def _factorize_other_factors(Ts, stats, L1, L1inv, R1, C, logdet) -> Factorization | None:
    """The second block row: L21 = Λ2'Z2'Z1Λ1L11⁻ᵀ (kept implicit), L22 dense."""
    B1 = batched.times_left(Ts[0], batched.transpose(L1inv))  # NumPy only: sparse second block
    schur_W22 = stats.pairs.downdated(stats.ZtZ2, B1 @ batched.transpose(B1))  # − Z2'Z1 Λ1 A1⁻¹ Λ1' Z1'Z2
    R1_scaled = (B1 @ R1).reshape(-1, R1.shape[-1])
    block = dense_second_block(Ts, stats, schur_W22, R1_scaled, C, logdet)
    if block is None:
        return None
    L22, R2, C, logdet = block
    return Factorization(Ts, L1, L1inv, R1, B1, stats.Z2tZ1, L22, R2, C, logdet, stats.levels, schur_W22)


def dense_second_block(Ts, stats: CrossProducts, schur_W22, R1_scaled, C, logdet):
    """The second block row of the blocked Cholesky in NumPy, forming one Q2 × Q2 array: A22 =
    Λ2' schur_W22 Λ2 + I, factored in place into L22 (see :mod:`bayeslmm.linalg.dense`).

    R2 = L22⁻¹Λ2'(Z2'[X y] − Z2'Z1 R1_scaled) with R1_scaled = blockdiag(B1)R1, B1 = T1L1⁻ᵀ.
    Returns L22, R2, the Schur complement C − R2'R2 and log|L|² + log|L22|²; None where A22
    is not positive definite."""
    A22 = lambda_congruence(schur_W22, Ts, stats.levels)
    A22.flat[:: A22.shape[0] + 1] += 1.0
    L22 = dense.cholesky_in_place(A22)
    if L22 is None:
        return None
    R2 = solve_lower(L22, lambda_t_times(stats.ZtXY2 - stats.Z2tZ1 @ R1_scaled, Ts, stats.levels))
    return L22, R2, C - R2.T @ R2, logdet + 2.0 * np.log(np.diag(L22)).sum()


def scalar_lambda(Ts, levels: tuple[int, ...]) -> np.ndarray | None:
    """The diagonal of Λ2 when every factor after the first is a scalar term (θ_f repeated G_f
    times), else None."""
    if any(T.shape[0] != 1 for T in Ts[1:]):
        return None
    return np.repeat([T[0, 0] for T in Ts[1:]], levels[1:])


def lambda_congruence(X: np.ndarray, Ts, levels: tuple[int, ...], overwrite: bool = False) -> np.ndarray:
    """Λ2' X Λ2 for a symmetric Q2 × Q2 ``X`` (NumPy); with scalar terms only, one pass over
    a single new array, or over X itself when ``overwrite``."""
    scale = scalar_lambda(Ts, levels)
    if scale is None:
        return lambda_t_times(lambda_t_times(X, Ts, levels).T, Ts, levels)
    out = X if overwrite else np.multiply(X, scale[:, None])
    return dense.scale_rows_and_columns(out, scale) if overwrite else np.multiply(out, scale[None, :], out=out)


def lambda_t_times(X, Ts, levels: tuple[int, ...]):
    """Λ2' X for the stacked factors 2.., one reshape and product per factor."""
    pieces, start = [], 0
    for G, T in zip(levels[1:], Ts[1:]):
        S = T.shape[0]
        rows = X[start : start + G * S]
        if S == 1:  # a scalar term: Λ is a multiple of the identity on its rows
            pieces.append(T[0, 0] * rows)
        else:
            block = rows.reshape((G, S, -1))
            pieces.append(np.matmul(T.T, block).reshape((G * S, -1)))
        start += G * S
    return np.concatenate(pieces, axis=0)


def l21_transpose_times(fact: Factorization, x2: np.ndarray) -> np.ndarray:
    """L21' x2 = blockdiag(B1)' Z1'Z2 Λ2 x2, as (G1, S1) for x2 of length Q2, or (G1, S1, k)
    for x2 of shape (Q2, k)."""
    if x2.ndim == 1:
        return l21_transpose_times(fact, x2[:, None])[..., 0]
    lam_x2 = lambda_t_times(x2, [T.T for T in fact.T], fact.levels)
    G1, S1 = fact.L1.shape[:2]
    return np.matmul(batched.transpose(fact.B1), (fact.Z2tZ1.T @ lam_x2).reshape(G1, S1, -1))


def block_diagonal(blocks: np.ndarray) -> sp.bsr_matrix:
    """Sparse block-diagonal matrix from (G, S, S) blocks."""
    G, S, _ = blocks.shape
    return sp.bsr_matrix((np.ascontiguousarray(blocks), np.arange(G), np.arange(G + 1)), shape=(G * S, G * S))


def profile(fact: Factorization, p: int) -> Profile | None:
    """β̂(θ), r²(θ) and log|M| from the Schur complement; None when M is singular."""
    C = fact.C
    r2_total = C[p, p]
    if p == 0:
        return Profile(np.zeros((0, 0)), np.zeros(0), float(r2_total), 0.0)
    try:
        LX = np.linalg.cholesky(C[:p, :p])
    except np.linalg.LinAlgError:
        return None
    beta = solve_lower(LX, solve_lower(LX, C[:p, p]), transpose=True)
    r2 = float(r2_total - C[:p, p] @ beta)
    return Profile(LX, beta, r2, 2.0 * np.log(np.diag(LX)).sum())


def profiled_deviance(fact: Factorization, prof: Profile, n: int, reml: bool) -> float:
    """−2 log-likelihood (ML) or the REML criterion, with β and σ profiled out."""
    p = prof.beta.shape[0]
    if prof.r2 <= 0:
        return np.inf
    if reml:
        dof = n - p
        return fact.logdet + prof.logdet_M + dof * (1.0 + LOG_2PI + np.log(prof.r2 / dof))
    return fact.logdet + n * (1.0 + LOG_2PI + np.log(prof.r2 / n))


def deviance_at(fact: Factorization, prof: Profile, n: int, sigma2: float, beta=None, reml=False) -> float:
    """Unprofiled −2 log-likelihood at σ² (and β for ML; REML integrates β under a flat prior)."""
    p = prof.beta.shape[0]
    if reml:
        return fact.logdet + prof.logdet_M + (n - p) * (LOG_2PI + np.log(sigma2)) + prof.r2 / sigma2
    shift = prof.LX.T @ (np.asarray(beta, float) - prof.beta) if p else np.zeros(0)
    return fact.logdet + n * (LOG_2PI + np.log(sigma2)) + (prof.r2 + shift @ shift) / sigma2


def sigma2_hat(prof: Profile, n: int, reml: bool) -> float:
    return prof.r2 / (n - prof.beta.shape[0] if reml else n)


def objective(theta, stats: CrossProducts, layout: ThetaLayout, reml: bool) -> float:
    """The profiled deviance as a function of θ alone (what the optimiser minimises)."""
    fact = factorize(theta, stats, layout)
    prof = None if fact is None else profile(fact, stats.p)
    return np.inf if prof is None else profiled_deviance(fact, prof, stats.n, reml)


# --- derivatives (one grouping factor) -------------------------------------------


# --- random effects given θ and β ---------------------------------------------------


def conditional_u(fact: Factorization, beta: np.ndarray, noise: np.ndarray | None = None) -> list[np.ndarray]:
    """u = L⁻ᵀ(c − Rβ + noise), as (G_f, S_f) per factor.

    With no noise these are the conditional modes; with noise = σ z, z ~ N(0, I) of
    length Q = Σ G_f S_f, an exact draw from u | β, θ, σ, y.
    """
    if fact.L1 is None:
        return []
    p = fact.C.shape[0] - 1
    v1 = fact.R1[:, :, p] - fact.R1[:, :, :p] @ beta
    if noise is not None:
        v1 = v1 + noise[: v1.size].reshape(v1.shape)
    if fact.L22 is None:
        return [_times_inverse_transpose(fact.L1inv, v1)]
    v2 = fact.R2[:, p] - fact.R2[:, :p] @ beta
    if noise is not None:
        v2 = v2 + noise[v1.size:]
    u2 = solve_lower(fact.L22, v2, transpose=True)
    v1 = v1 - l21_transpose_times(fact, u2)
    return [_times_inverse_transpose(fact.L1inv, v1)] + split_other_factors(u2, fact)


def _times_inverse_transpose(L1inv: np.ndarray, v: np.ndarray) -> np.ndarray:
    """L_g⁻ᵀ v_g for every group, from the stored inverses."""
    return np.einsum("gts,gt->gs", L1inv, v)


def split_other_factors(stacked: np.ndarray, fact: Factorization) -> list[np.ndarray]:
    """Cut the stacked second block (Q2 rows) into (G_f, S_f, …) pieces per factor."""
    out, start = [], 0
    for G, T in zip(fact.levels[1:], fact.T[1:]):
        S = T.shape[0]
        out.append(stacked[start : start + G * S].reshape(G, S, *stacked.shape[1:]))
        start += G * S
    return out


def conditional_modes(fact: Factorization, beta: np.ndarray) -> list[np.ndarray]:
    """b = Λ u per factor, (G_f, S_f): lme4's conditional modes (BLUPs)."""
    return [u @ T.T for u, T in zip(conditional_u(fact, beta), fact.T)]


def conditional_covariances(fact: Factorization, sigma2: float) -> list[np.ndarray]:
    """Var(b_g | y) = σ² T [(L L')⁻¹]_gg T' per level, (G_f, S_f, S_f) per factor (lme4's condVar)."""
    if fact.L1 is None:
        return []
    L1inv = fact.L1inv
    blocks = [batched.transpose(L1inv) @ L1inv]
    if fact.L22 is not None:
        G1, S1 = L1inv.shape[:2]
        # (LL')⁻¹ first block adds W'W with W = L22⁻¹ L21 L11⁻¹; second block is L22⁻ᵀL22⁻¹
        L21_L11inv = fact.Z2tZ1 @ block_diagonal(fact.B1 @ L1inv)
        W = solve_lower(fact.L22, lambda_t_times(L21_L11inv.toarray(), fact.T, fact.levels))
        W = W.reshape(-1, G1, S1)
        blocks[0] = blocks[0] + np.einsum("qgs,qgt->gst", W, W)
        L22inv = solve_lower(fact.L22, np.eye(fact.L22.shape[0]))
        for piece in split_other_factors(L22inv.T, fact):  # (G, S, Q2): columns of L22⁻¹
            blocks.append(np.einsum("gsq,gtq->gst", piece, piece))
    return [sigma2 * T @ V @ T.T for V, T in zip(blocks, fact.T)]


# --- β integrated under its prior (Bayesian marginal likelihood) ----------------------------


def deviance_beta_integrated(C, logdet, n: int, sigma2, precision, shift, constant, xp=np):
    """−2 log p(y | θ, σ) with b and β integrated out, β under a Gaussian (or flat) prior.

    With H = M/σ² + P0 and h = w/σ² + P0 m0 (M, w, s from the Schur complement C):

        −2ℓ = log|L|² + n log(2πσ²) + s/σ² + log|H| − h'H⁻¹h + constant

    where ``constant`` is the prior's μ'Dμ − log|D|₊ − (flat coordinates)·log 2π.  A flat
    prior (P0 = 0) gives the REML likelihood at σ; a Gaussian one, N(y | Xm0, σ²V + XS0X').
    Written against ``xp`` so the Bayesian model evaluates this same function.
    """
    p = precision.shape[0]
    base = logdet + n * (LOG_2PI + xp.log(sigma2)) + C[p, p] / sigma2 + constant
    if p == 0:
        return base
    H = C[:p, :p] / sigma2 + precision
    h = C[:p, p] / sigma2 + shift
    if xp is np:
        LH = np.linalg.cholesky(H)
        z = solve_lower(LH, h)
        return base + 2.0 * np.log(np.diag(LH)).sum() - (z * z).sum()
    return base + _logdet_minus_quadratic(H, h, p, xp)


def _logdet_minus_quadratic(H, h, p: int, xp):
    """log|H| − h'H⁻¹h for a PyTensor H, by the entry-by-entry Cholesky: a few fused scalar
    operations rather than LAPACK calls from Python (p is the number of fixed effects)."""
    if p > batched.ENTRY_LIMIT:
        import pytensor.tensor as pt

        LH = pt.linalg.cholesky(H)
        z = pt.linalg.solve_triangular(LH, h, lower=True)
        return 2.0 * pt.log(pt.diagonal(LH)).sum() - (z * z).sum()
    L = batched.cholesky({(i, j): H[i, j] for i in range(p) for j in range(i + 1)}, p, xp)
    z: list = []
    for i in range(p):  # forward substitution L z = h
        z.append((h[i] - _sum_terms(L[i, k] * z[k] for k in range(i))) / L[i, i])
    return 2.0 * _sum_terms(xp.log(L[i, i]) for i in range(p)) - _sum_terms(zi * zi for zi in z)


def beta_conditional(C, sigma2, precision: np.ndarray, shift: np.ndarray):
    """Mean and lower Cholesky factor of the precision of β | θ, σ, y: N(H⁻¹h, H⁻¹).

    ``C`` may carry leading axes (D, p+1, p+1) with ``sigma2`` of shape (D,).
    """
    p = precision.shape[0]
    sigma2 = np.asarray(sigma2, dtype=float)[..., None, None]
    H = C[..., :p, :p] / sigma2 + precision
    h = C[..., :p, p:] / sigma2 + shift[:, None]
    return np.linalg.solve(H, h)[..., 0], np.linalg.cholesky(H)


def group_deviances(fact: Factorization, XYtXY_g: np.ndarray, n_g: np.ndarray, sigma2: float, beta,
                    log_weights_g=0.0) -> np.ndarray:
    """−2 log p(y_g | β, θ, σ) of each level of a single grouping factor, b_g integrated out.

    log|A_g| + n_g log(2πσ²) + (e_g'e_g − ‖L_g⁻¹T'Z_g'e_g‖²)/σ² − Σ_{i∈g} log w_i, e_g = y_g − X_gβ
    (Woodbury), where L_g⁻¹T'Z_g'e_g is the same c − Rβ the conditional modes use; with prior
    weights, ``XYtXY_g`` are of the rows scaled by √w and ``log_weights_g`` is Σ_{i∈g} log w_i.
    """
    p = beta.shape[0]
    coef = np.append(-np.asarray(beta, float), 1.0)
    residual_ss = np.einsum("i,gij,j->g", coef, XYtXY_g, coef)
    v = fact.R1[:, :, p] - fact.R1[:, :, :p] @ beta
    logdet_g = 2.0 * np.log(np.diagonal(fact.L1, axis1=1, axis2=2)).sum(axis=1)
    return (logdet_g - log_weights_g + n_g * (LOG_2PI + np.log(sigma2))
            + (residual_ss - (v**2).sum(axis=1)) / sigma2)
