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

from .crossprod import CrossProducts
from .theta import ThetaLayout

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
    R1: np.ndarray | None  # (G1, S1, p+1) = L1⁻¹ T1' Z1'[X y]
    L21: sp.csr_matrix | None  # (Q2, Q1)
    L22: np.ndarray | None  # (Q2, Q2)
    R2: np.ndarray | None  # (Q2, p+1)
    C: np.ndarray  # (p+1, p+1)
    logdet: float  # log |L_θ|²
    levels: tuple[int, ...] = ()  # G_f of every factor


@dataclass(frozen=True)
class Profile:
    """Fixed effects and penalised residual sum of squares given θ (β profiled out)."""

    LX: np.ndarray  # (p, p) lower Cholesky factor of M = X'V⁻¹X · σ²
    beta: np.ndarray  # β̂(θ)
    r2: float  # penalised residual sum of squares
    logdet_M: float  # log |M|


def factorize(theta: np.ndarray, stats: CrossProducts, layout: ThetaLayout) -> Factorization | None:
    """Blocked Cholesky at ``theta``; None where a block is not positive definite."""
    Ts = layout.factors_T(np.asarray(theta, dtype=float))
    if stats.n_factors == 0:
        return Factorization(Ts, None, None, None, None, None, stats.XYtXY.copy(), 0.0)
    T1 = Ts[0]
    A1 = T1.T @ stats.ZtZ1 @ T1 + np.eye(T1.shape[0])
    try:
        L1 = np.linalg.cholesky(A1)
    except np.linalg.LinAlgError:
        return None
    R1 = _solve_lower(L1, T1.T @ stats.ZtXY1)
    flat = R1.reshape(-1, R1.shape[-1])
    C = stats.XYtXY - flat.T @ flat
    logdet = 2.0 * np.log(np.diagonal(L1, axis1=1, axis2=2)).sum()
    if stats.n_factors == 1:
        return Factorization(Ts, L1, R1, None, None, None, C, logdet, stats.levels)
    return _factorize_other_factors(Ts, stats, L1, R1, C, logdet)


def _factorize_other_factors(Ts, stats, L1, R1, C, logdet) -> Factorization | None:
    """The second block row: L21 sparse with the pattern of Z2'Z1, L22 dense."""
    G1, S1 = L1.shape[0], L1.shape[1]
    Lam1 = block_diagonal(np.broadcast_to(Ts[0], (G1, S1, S1)))
    Lam2 = sp.block_diag([sp.kron(sp.identity(g), T) for g, T in zip(stats.levels[1:], Ts[1:])], format="csr")
    L1inv_T = block_diagonal(np.swapaxes(np.linalg.inv(L1), 1, 2))
    L21 = (Lam2.T @ stats.Z2tZ1 @ Lam1 @ L1inv_T).tocsr()
    A22 = Lam2.T @ (Lam2.T @ stats.ZtZ2).T
    A22 += np.eye(A22.shape[0]) - (L21 @ L21.T).toarray()
    try:
        L22 = np.linalg.cholesky(A22)
    except np.linalg.LinAlgError:
        return None
    rhs = Lam2.T @ stats.ZtXY2 - L21 @ R1.reshape(-1, R1.shape[-1])
    R2 = solve_lower(L22, rhs)
    C = C - R2.T @ R2
    logdet += 2.0 * np.log(np.diag(L22)).sum()
    return Factorization(Ts, L1, R1, L21, L22, R2, C, logdet, stats.levels)


def block_diagonal(blocks: np.ndarray) -> sp.bsr_matrix:
    """Sparse block-diagonal matrix from (G, S, S) blocks."""
    G, S, _ = blocks.shape
    return sp.bsr_matrix((np.ascontiguousarray(blocks), np.arange(G), np.arange(G + 1)), shape=(G * S, G * S))


def _solve_lower(L: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Batched L⁻¹B for (G, S, S) lower-triangular L."""
    if L.shape[-1] == 1:
        return B / L
    return np.linalg.solve(L, B)


def _solve_upper_T(L: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Batched L⁻ᵀB for (G, S, S) lower-triangular L and (G, S) B."""
    if L.shape[-1] == 1:
        return B / L[:, :, 0]
    return np.linalg.solve(np.swapaxes(L, 1, 2), B[..., None])[..., 0]


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


def objective_gradient(theta, stats: CrossProducts, layout: ThetaLayout, reml: bool):
    """Profiled deviance and its exact gradient in θ, for one grouping factor.

    log|A| differentiates to 2 Σ_g [W_g T A_g⁻¹]_{rc}; r² by the envelope theorem to
    −2 Σ_g [z_g u_g']_{rc} with z_g = Z_g'(y − Xβ̂ − Z_g T u_g); log|M| (REML) to
    −2 Σ_g [J_g Q_g K_g]_{cr}, J = A⁻¹T', Q = Z'X M⁻¹ X'Z, K = I − T J W.
    """
    fact = factorize(theta, stats, layout)
    prof = None if fact is None else profile(fact, stats.p)
    if prof is None or prof.r2 <= 0:
        return np.inf, np.zeros_like(np.asarray(theta, float))
    value = profiled_deviance(fact, prof, stats.n, reml)
    T, L1, W, p = fact.T[0], fact.L1, stats.ZtZ1, stats.p
    L1inv = np.linalg.inv(L1)
    Ainv = np.swapaxes(L1inv, 1, 2) @ L1inv
    d_logdet = 2.0 * (W @ T @ Ainv).sum(axis=0)
    u = conditional_u(fact, prof.beta)[0]
    ZtX, Zty = stats.ZtXY1[:, :, :p], stats.ZtXY1[:, :, p]
    z = Zty - ZtX @ prof.beta - (W @ T @ u[:, :, None])[:, :, 0]
    d_r2 = -2.0 * np.einsum("gr,gc->rc", z, u)
    dof = stats.n - p if reml else stats.n
    grad_matrix = d_logdet + dof / prof.r2 * d_r2
    if reml and p:
        J = Ainv @ T.T
        LXinv = solve_lower(prof.LX, np.eye(p))
        Minv = LXinv.T @ LXinv
        Q = ZtX @ Minv @ np.swapaxes(ZtX, 1, 2)
        K = np.eye(T.shape[0]) - T @ J @ W
        grad_matrix = grad_matrix - 2.0 * (J @ Q @ K).sum(axis=0).T
    rows, cols, index = layout.entries[0]
    grad = np.zeros(layout.size)
    grad[index] = grad_matrix[rows, cols]
    return value, grad


# --- random effects given θ and β ---------------------------------------------------


def conditional_u(fact: Factorization, beta: np.ndarray) -> list[np.ndarray]:
    """Spherical modes u = L⁻ᵀ(c − Rβ), as (G_f, S_f) per factor."""
    if fact.L1 is None:
        return []
    p = fact.C.shape[0] - 1
    v1 = fact.R1[:, :, p] - fact.R1[:, :, :p] @ beta
    if fact.L22 is None:
        return [_solve_upper_T(fact.L1, v1)]
    v2 = fact.R2[:, p] - fact.R2[:, :p] @ beta
    u2 = solve_lower(fact.L22, v2, transpose=True)
    v1 = v1 - (fact.L21.T @ u2).reshape(v1.shape)
    return [_solve_upper_T(fact.L1, v1)] + split_other_factors(u2, fact)


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
    L1inv = np.linalg.inv(fact.L1)
    blocks = [np.swapaxes(L1inv, 1, 2) @ L1inv]
    if fact.L22 is not None:
        G1, S1 = L1inv.shape[:2]
        # (LL')⁻¹ first block adds W'W with W = L22⁻¹ L21 L11⁻¹; second block is L22⁻ᵀL22⁻¹
        W = solve_lower(fact.L22, (fact.L21 @ block_diagonal(L1inv)).toarray())
        W = W.reshape(-1, G1, S1)
        blocks[0] = blocks[0] + np.einsum("qgs,qgt->gst", W, W)
        L22inv = solve_lower(fact.L22, np.eye(fact.L22.shape[0]))
        for piece in split_other_factors(L22inv.T, fact):  # (G, S, Q2): columns of L22⁻¹
            blocks.append(np.einsum("gsq,gtq->gst", piece, piece))
    return [sigma2 * T @ V @ T.T for V, T in zip(blocks, fact.T)]
