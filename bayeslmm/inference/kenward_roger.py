"""Kenward–Roger and multi-df Satterthwaite tests of fixed-effect contrasts.

Kenward & Roger (1997) as pbkrtest computes it for REML fits.  V is written linearly in
its covariance parameters, V = Σ_k σ_k G_k: one σ_k per entry (r ≥ c) of each random
term's covariance D (G_k = Σ_levels z_r z_c' + z_c z_r', or z_r z_r' on the diagonal) and
σ² for the residual (G = I).  With Φ = (X'V⁻¹X)⁻¹,

    P_k = −X'V⁻¹G_kV⁻¹X,   Q_kl = X'V⁻¹G_kV⁻¹G_lV⁻¹X,   K_kl = tr(V⁻¹G_kV⁻¹G_l),
    I_kl = K_kl − 2 tr(ΦQ_kl) + tr(ΦP_kΦP_l)   (twice the expected REML information),
    W = 2 I⁻¹,   Φ_A = Φ + 2Φ [Σ_kl W_kl (Q_kl − P_kΦP_l)] Φ,

and the F statistic's scaling and denominator df come from A1 = Σ W_kl tr(ΘΦP_kΦ) tr(ΘΦP_lΦ),
A2 = Σ W_kl tr(ΘΦP_kΦΘΦP_lΦ), Θ = L'(LΦL')⁻¹L.

V⁻¹ is never formed.  V = σ²(I + ZΛΛ'Z') gives V⁻¹ = σ⁻²(I − ZKZ') with K = Λ(Λ'Z'ZΛ + I)⁻¹Λ',
so every product above reduces to Z'Z, Z'X and X'X: per level of the grouping factor when
there is one (V is block diagonal), or once over all q random effects (dense q × q) when
there are several.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from bayeslmm.errors import LMMError
from bayeslmm.inference.kenward_roger_residual import kenward_roger_blocks
from bayeslmm.inference.kr_assembly import KenwardRoger, assemble, pattern, term_patterns
from bayeslmm.linalg.crossprod import factor_matrix
from bayeslmm.threads import one_blas_thread

MAX_DENSE_RANDOM_EFFECTS = 4000  # q × q work for models with several grouping factors


@dataclass(frozen=True)
class Blocks:
    """Independent blocks of V: per block Z'Z (F), Z'X (R), K; plus X'X, n and σ²."""

    F: np.ndarray  # (B, q, q)
    R: np.ndarray  # (B, q, p)
    K: np.ndarray  # (B, q, q)
    E: np.ndarray  # (m_random, q, q): Z E_k Z' = G_k within every block
    XtX: np.ndarray
    n: int
    sigma2: float


@one_blas_thread()
def kenward_roger(fit) -> KenwardRoger:
    """Kenward–Roger pieces of a REML fit (a residual structure:
    :mod:`bayeslmm.inference.kenward_roger_residual`)."""
    if fit.state.residual is not None:
        return kenward_roger_blocks(fit)
    _check_fit(fit)
    blocks = _one_factor_blocks(fit) if len(fit.spec.factors) == 1 else dense_blocks(fit)
    return assemble_blocks(blocks)


def _check_fit(fit) -> None:
    if fit.spec.weights is not None:
        raise LMMError("Kenward–Roger is not built for models with prior weights; use ddf='satterthwaite' "
                       "(which supports them) or ddf='asymptotic'")
    if not fit.reml:
        raise LMMError("Kenward–Roger is defined for REML fits; refit with fit.refit('REML') (or "
                       "LMM(...).fit('REML')) and ask again")


def _one_factor_blocks(fit) -> Blocks:
    stats, p = fit.state.stats, fit.spec.p
    T = fit.state.factorization.T[0]
    F, R = stats.ZtZ1, stats.ZtXY1[:, :, :p]
    S = T.shape[0]
    M = np.eye(S) + T.T @ F @ T  # (G, S, S)
    K = T @ np.linalg.solve(M, np.broadcast_to(T.T, M.shape))
    E = np.stack([pattern(S, [pair]) for pair in term_patterns(fit.spec, 0)])
    return Blocks(F, R, K, E, stats.XYtXY[:p, :p], fit.spec.n, fit.sigma**2)


def dense_blocks(fit) -> Blocks:
    """One block over all random effects: Z'Z dense, for several grouping factors."""
    spec = fit.spec
    sizes = [f.n_levels * f.n_columns for f in spec.factors]
    q = sum(sizes)
    if q == 0:  # no random effects: only σ², and KR reduces to the exact t / F tests of OLS
        empty = np.zeros((1, 0, 0))
        return Blocks(empty, np.zeros((1, 0, spec.p)), empty, np.zeros((0, 0, 0)), spec.X.T @ spec.X, spec.n,
                       fit.sigma**2)
    if q > MAX_DENSE_RANDOM_EFFECTS:
        raise LMMError(f"Kenward–Roger with several grouping factors works on the q × q random-effect matrix "
                       f"and this model has q = {q} > {MAX_DENSE_RANDOM_EFFECTS}; use ddf='satterthwaite'")
    Z = sp.hstack([factor_matrix(f) for f in spec.factors], format="csr")
    F = (Z.T @ Z).toarray()
    R = np.asarray(Z.T @ spec.X)
    Lam = sp.block_diag([sp.kron(sp.identity(f.n_levels), T) for f, T in zip(spec.factors, fit.state.factorization.T)],
                        format="csr").toarray()
    M = np.eye(q) + Lam.T @ F @ Lam
    K = Lam @ np.linalg.solve(M, Lam.T)
    E, start = [], 0
    for index, (factor, size) in enumerate(zip(spec.factors, sizes)):
        S = factor.n_columns
        for pair in term_patterns(spec, index):
            block = np.zeros((q, q))
            block[start:start + size, start:start + size] = np.kron(np.eye(factor.n_levels), pattern(S, [pair]))
            E.append(block)
        start += size
    return Blocks(F[None], R[None], K[None], np.stack(E), spec.X.T @ spec.X, spec.n, fit.sigma**2)


def assemble_blocks(b: Blocks) -> KenwardRoger:
    """The sums of :mod:`bayeslmm.inference.kr_assembly` for V = σ²(I + ZΛΛ'Z'), from the
    blocks' cross-products (V⁻¹ = σ⁻²(I − ZKZ')), then the assembly."""
    s2 = b.sigma2
    eye = np.eye(b.F.shape[1])
    N = eye - b.K @ b.F  # V⁻¹Z = Z N / σ²
    Nt = np.swapaxes(N, 1, 2)
    C = b.F @ N / s2  # Z'V⁻¹Z
    A = Nt @ b.R / s2  # Z'V⁻¹X
    RKR = np.einsum("bsp,bst,btr->pr", b.R, b.K, b.R)
    KR_ = b.K @ b.R
    RKFKR = np.einsum("bsp,bst,btr->pr", KR_, b.F, KR_)
    NtR = Nt @ b.R
    XVX = (b.XtX - RKR) / s2
    XV2X = (b.XtX - 2 * RKR + RKFKR) / s2**2
    XV3X = (b.XtX - 2 * RKR + RKFKR - np.einsum("bsp,bst,btr->pr", NtR, b.K, NtR)) / s2**3
    ZV2X = Nt @ NtR / s2**2
    ZV2Z = Nt @ b.F @ N / s2**2
    KF = b.K @ b.F
    trV2 = (b.n - 2 * np.trace(KF, axis1=1, axis2=2).sum() + np.einsum("bst,bts->", KF, KF)) / s2**2

    U = np.einsum("kst,btp->kbsp", b.E, A)  # E_k Z'V⁻¹X
    m = len(b.E) + 1
    p = A.shape[2]
    P = np.empty((m, p, p))
    P[:-1] = -np.einsum("bsp,kbsr->kpr", A, U)
    P[-1] = -XV2X
    Q = np.empty((m, m, p, p))
    CU = np.einsum("bst,lbtr->lbsr", C, U)
    Q[:-1, :-1] = np.einsum("kbsp,lbsr->klpr", U, CU)
    Q[:-1, -1] = np.einsum("kbsp,bsr->kpr", U, ZV2X)
    Q[-1, :-1] = np.swapaxes(Q[:-1, -1], 1, 2)
    Q[-1, -1] = XV3X
    EC = np.einsum("kst,btu->kbsu", b.E, C)
    Ktr = np.empty((m, m))
    Ktr[:-1, :-1] = np.einsum("kbsu,lbus->kl", EC, EC)
    Ktr[:-1, -1] = Ktr[-1, :-1] = np.einsum("kst,bts->k", b.E, ZV2Z)
    Ktr[-1, -1] = trV2

    return assemble(XVX, P, Q, Ktr)


def kr_moments(kr: KenwardRoger, L: np.ndarray) -> tuple[float, float, int]:
    """A1, A2 and the number of rows q of the contrast L (rows assumed independent)."""
    L = np.atleast_2d(L)
    Theta = L.T @ np.linalg.solve(L @ kr.phi @ L.T, L)
    u = Theta @ kr.phi @ kr.P @ kr.phi  # (m, p, p): ΘΦP_kΦ
    traces = np.trace(u, axis1=1, axis2=2)
    A1 = float(traces @ kr.W @ traces)
    A2 = float(np.einsum("kl,kpr,lrp->", kr.W, u, u))
    return A1, A2, L.shape[0]


def kr_df_and_scale(kr: KenwardRoger, L: np.ndarray) -> tuple[float, float]:
    """Denominator df and the F scaling λ of Kenward & Roger's approximate F(q, df)."""
    A1, A2, q = kr_moments(kr, L)
    B = (A1 + 6 * A2) / (2 * q)
    g = ((q + 1) * A1 - (q + 4) * A2) / ((q + 2) * A2)
    denominator = 3 * q + 2 * (1 - g)
    c1, c2, c3 = g / denominator, (q - g) / denominator, (q + 2 - g) / denominator
    V0 = 1 + c1 * B
    V0 = 0.0 if abs(V0) < 1e-10 else V0
    V1, V2 = 1 - c2 * B, 1 - c3 * B
    ratio = 1.0 if abs(1 - A2 / q) < 1e-14 and abs(V1) < 1e-14 else (1 - A2 / q) / V1
    rho = ratio**2 * V0 / (q * V2)
    df = 4 + (q + 2) / (q * rho - 1)
    scale = 1.0 if abs(df - 2) < 1e-2 else df * (1 - A2 / q) / (df - 2)
    return float(df), float(scale)


# --- F tests of a hypothesis matrix L (H0: Lβ = 0) ----------------------------------------


@dataclass(frozen=True)
class FTest:
    """One row of an F table: the unscaled Wald F (for the sums of squares) and the test."""

    wald_f: float  # β'L'(L Var L')⁻¹Lβ / q, before any scaling
    num_df: int
    den_df: float
    f_value: float


def independent_rows(L: np.ndarray) -> np.ndarray:
    """An orthonormal basis of L's row space (KR's test depends on that space only)."""
    _, s, Vt = np.linalg.svd(np.atleast_2d(L), full_matrices=False)
    return Vt[s > 1e-10 * max(s.max(initial=0.0), 1e-300)]


def kenward_roger_ftest(kr: KenwardRoger, L: np.ndarray, beta: np.ndarray) -> FTest:
    """pbkrtest's KRmodcomp for H0: Lβ = 0: Wald F with Φ_A, scaled by λ, on (q, df) df."""
    L = independent_rows(L)
    Lb = L @ beta
    wald_f = float(Lb @ np.linalg.solve(L @ kr.phi_adjusted @ L.T, Lb)) / len(L)
    df, scale = kr_df_and_scale(kr, L)
    return FTest(wald_f, len(L), df, scale * wald_f)


def satterthwaite_ftest(vcov: np.ndarray, gradients: np.ndarray, A: np.ndarray, L: np.ndarray,
                        beta: np.ndarray) -> FTest:
    """lmerTest's multi-df Satterthwaite F: L Var(β̂) L' = Σ d_m v_m v_m'; each v_m'L is a 1-df
    contrast with its own Satterthwaite ν_m, and the F's df combine them (Fai & Cornelius 1996).
    ``gradients`` are ∂Var(β̂)/∂varpar_k and A the variance parameters' covariance."""
    L = np.atleast_2d(L)
    d, vectors = np.linalg.eigh(L @ vcov @ L.T)
    order = np.argsort(d)[::-1]  # R's eigen: decreasing
    d, vectors = d[order], vectors[:, order]
    positive = d > max(np.sqrt(np.finfo(float).eps) * d[0], 0.0)
    d, rows = d[positive], vectors[:, positive].T @ L
    t2 = (rows @ beta) ** 2 / d
    grads = np.einsum("mp,kpr,mr->mk", rows, gradients, rows)
    nu = 2 * d**2 / np.einsum("mk,kl,ml->m", grads, A, grads)
    wald_f = float(t2.sum() / len(d))
    return FTest(wald_f, len(d), _combined_df(nu), wald_f)


def _combined_df(nu: np.ndarray) -> float:
    """The F's denominator df from the 1-df ν_m: 2E/(E − q), E = Σ ν_m/(ν_m − 2) (2 if any ν_m ≤ 2)."""
    if len(nu) == 1:
        return float(nu[0])
    if np.all(np.abs(np.diff(nu)) < 1e-8):
        return float(np.mean(nu))
    if np.any(nu <= 2):
        return 2.0
    E = np.sum(nu / (nu - 2))
    return float(2 * E / (E - len(nu)))
