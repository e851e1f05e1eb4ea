"""Kenward–Roger for a block-diagonal V that need not be linear in its parameters.

Used for models with a residual covariance structure, V_b = Z_b D Z_b' + σ² R_b(ψ) in each
block b (a level of the grouping factor, or a residual group when there are no random
effects; residual groups nest within the factor's levels).  The variance parameters are
D's entries (r ≥ c, as in :mod:`bayeslmm.ddf`), σ², and the structure's ψ: its natural
coordinates where it reports them (ρ, sd ratios; ``Bound.coordinates``), else the
optimiser's φ (an unstructured Cholesky entry).  Natural coordinates because they are the
parameters users read and a correlation enters V almost linearly there (exactly, for
compound symmetry at fixed σ²), so the second-derivative term stays small; SAS's
PROC MIXED KR also works on (σ², ρ) for AR(1).  KR is not invariant under non-linear
reparametrisation, so this choice matters at second order.

Kenward & Roger (1997) in general form: with V_i = ∂V/∂σ_i, V_ij = ∂²V/∂σ_i∂σ_j,

    P_i = −X'V⁻¹V_iV⁻¹X,  Q_ij = X'V⁻¹V_iV⁻¹V_jV⁻¹X,  R_ij = X'V⁻¹V_ijV⁻¹X,
    I_ij = tr(V⁻¹V_iV⁻¹V_j) − 2 tr(ΦQ_ij) + tr(ΦP_iΦP_j),   W = 2 I⁻¹,
    Φ_A = Φ + 2Φ [Σ_ij W_ij (Q_ij − P_iΦP_j − ¼R_ij)] Φ.

Every sum over rows splits into blocks; blocks of equal size are stacked and handled as
one batch of small dense matrices (never an n × n matrix).  ∂R_b/∂φ and ∂²R_b/∂φ∂φ come
from central differences of R_b(φ), built by colouring an indicator of each row's rank
within its block with the structure's own ``colour``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bayeslmm.errors import LMMError
from bayeslmm.inference.kr_assembly import KenwardRoger, assemble, pattern, term_patterns
from bayeslmm.threads import one_blas_thread

FIRST_STEP = 1e-5  # central differences in φ: truncation ~h², rounding ~ε/h
SECOND_STEP = 1e-4  # second differences: rounding ~ε/h²


@dataclass(frozen=True)
class BlockLayout:
    """Rows of each block, blocks of equal size stacked: ``groups[s]`` is (B_s, s) row indices."""

    groups: dict  # size -> (B_s, size) row indices, rows in data order within a block
    rank: np.ndarray  # (n,) position of each row within its block
    largest: int


def block_layout(codes: np.ndarray) -> BlockLayout:
    order = np.lexsort((np.arange(codes.size), codes))
    sorted_codes = codes[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_codes)) + 1]
    sizes = np.diff(np.r_[starts, codes.size])
    rank = np.empty(codes.size, dtype=int)
    rank[order] = np.arange(codes.size) - np.repeat(starts, sizes)
    groups = {int(s): order[starts[sizes == s][:, None] + np.arange(s)] for s in np.unique(sizes)}
    return BlockLayout(groups, rank, int(sizes.max()))


def relative_covariances(bound, phi, layout: BlockLayout) -> dict:
    """R_b(φ) per block, stacked by size: colour the (n × largest) indicator of the rows' ranks.

    Row i of the coloured indicator holds R^{1/2}[i, j] at the rank of every row j of the
    same residual group (colouring acts within residual groups, which nest in blocks)."""
    n = layout.rank.size
    indicator = np.zeros((n, layout.largest))
    indicator[np.arange(n), layout.rank] = 1.0
    root = bound.colour(bound.natural(np.asarray(phi, dtype=float)), indicator)
    out = {}
    for size, rows in layout.groups.items():
        half = root[rows][:, :, :size]  # (B, s, s)
        out[size] = half @ np.swapaxes(half, 1, 2)
    return out


def coordinate_maps(bound) -> list:
    """ψ_k = f_k(φ_k): the structure's reported coordinate, or the identity where it has none."""
    return [(lambda x: x) if c is None else c[1] for c in bound.coordinates()]


def _scalar_derivatives(f, x: float) -> tuple[float, float]:
    h1, h2 = FIRST_STEP, SECOND_STEP
    first = (f(x + h1) - f(x - h1)) / (2 * h1)
    second = (f(x + h2) - 2 * f(x) + f(x - h2)) / h2**2
    return float(first), float(second)


def relative_derivatives(bound, phi, layout: BlockLayout) -> tuple[dict, dict, dict]:
    """R_b, ∂R_b/∂ψ (K, B, s, s) and ∂²R_b/∂ψ∂ψ (K, K, B, s, s) per block size.

    Central differences in φ, then the chain rule to ψ = f(φ) (coordinate-wise):
    ∂R/∂ψ_k = R_k / f_k',  ∂²R/∂ψ_k∂ψ_l = (R_kl − δ_kl R_k f_k''/f_k') / (f_k' f_l')."""
    phi = np.asarray(phi, dtype=float)
    K = phi.size

    def at(*moves):
        x = phi.copy()
        for k, h in moves:
            x[k] += h
        return relative_covariances(bound, x, layout)

    base = at()
    h1, h2 = FIRST_STEP, SECOND_STEP
    first_phi = [{s: (u - d) / (2 * h1) for (s, u), d in zip(at((k, h1)).items(), at((k, -h1)).values())}
                 for k in range(K)]
    second_phi = [[None] * K for _ in range(K)]
    for k in range(K):
        up, down = at((k, h2)), at((k, -h2))
        second_phi[k][k] = {s: (up[s] - 2 * base[s] + down[s]) / h2**2 for s in base}
        for j in range(k):
            pp, pm, mp, mm = (at((k, a), (j, b)) for a, b in ((h2, h2), (h2, -h2), (-h2, h2), (-h2, -h2)))
            second_phi[k][j] = second_phi[j][k] = {s: (pp[s] - pm[s] - mp[s] + mm[s]) / (4 * h2**2) for s in base}
    slopes = [_scalar_derivatives(f, x) for f, x in zip(coordinate_maps(bound), phi)]
    first, second = {}, {}
    for s in base:
        first[s] = np.stack([first_phi[k][s] / slopes[k][0] for k in range(K)]) if K else np.zeros((0,) + base[s].shape)
        second[s] = np.zeros((K, K) + base[s].shape)
        for k in range(K):
            for j in range(K):
                curvature = second_phi[k][j][s] - (first_phi[k][s] * slopes[k][1] / slopes[k][0] if k == j else 0.0)
                second[s][k, j] = curvature / (slopes[k][0] * slopes[j][0])
    return base, first, second


def _blocks_of(fit) -> tuple[np.ndarray, BlockLayout]:
    spec = fit.state.spec
    if len(spec.factors) > 1:
        raise LMMError("Kenward–Roger with a residual covariance structure supports at most one grouping factor "
                       f"(this model has {len(spec.factors)}); use ddf='satterthwaite'")
    if spec.factors:
        codes = spec.factors[0].codes
    elif fit.state.residual is not None:
        codes = fit.state.residual.groups
    else:
        codes = np.arange(spec.n)
    return codes, block_layout(np.asarray(codes))


def _random_patterns(fit) -> tuple[np.ndarray, np.ndarray]:
    """D (S × S, all terms on the factor) and the patterns E_k of its free entries."""
    spec = fit.state.spec
    if not spec.factors:
        return np.zeros((0, 0)), np.zeros((0, 0, 0))
    S = spec.factors[0].n_columns
    D = np.zeros((S, S))
    for term, cov in zip(spec.terms, fit.term_covariances()):
        D[term.columns, term.columns] = cov
    E = np.stack([pattern(S, [pair]) for pair in term_patterns(spec, 0)])
    return D, E


@dataclass
class _Sums:
    """Σ over blocks of X'V⁻¹X, P_i, Q_ij, R_ij and tr(V⁻¹V_iV⁻¹V_j)."""

    XVX: np.ndarray
    P: np.ndarray
    Q: np.ndarray
    R: np.ndarray
    K: np.ndarray

    def add(self, X, V, dV, d2V, first_nonlinear: int) -> None:
        """One stack of equal-size blocks; ``d2V`` covers parameters from ``first_nonlinear`` on
        (σ² and ψ: D's entries enter V linearly, so their second derivatives vanish)."""
        Vi = np.linalg.inv(V)
        VX = Vi @ X  # (B, s, p)
        A = dV @ VX[None]  # (m, B, s, p): V_i V⁻¹X
        ViA = Vi[None] @ A
        M = Vi[None] @ dV  # (m, B, s, s)
        self.XVX += np.einsum("bsp,bsr->pr", X, VX)
        self.P -= np.einsum("bsp,kbsr->kpr", VX, A)
        self.Q += np.einsum("kbsp,lbsr->klpr", A, ViA)
        self.R[first_nonlinear:, first_nonlinear:] += np.einsum("bsp,klbst,btr->klpr", VX, d2V, VX)
        self.K += np.einsum("kbij,lbji->kl", M, M)


@one_blas_thread()
def kenward_roger_blocks(fit) -> KenwardRoger:
    """Kenward–Roger pieces (:class:`bayeslmm.inference.kr_assembly.KenwardRoger`) of a REML
    fit, per block.

    Handles a residual structure (at most one grouping factor); on a model without one it
    reproduces :func:`bayeslmm.inference.kenward_roger.kenward_roger` (R_b = I, nothing
    non-linear).  Reached
    through ``fit.coef_table(ddf="kenward-roger")`` and ``fit.anova(ddf="kenward-roger")``.

    Examples
    --------
    >>> import bayeslmm as blm
    >>> sitka = blm.datasets.load("Sitka")
    >>> fit = blm.LMM("size ~ time * treat", sitka, residual="ar1(visit | tree)").fit()
    >>> fit.coef_table(ddf="kenward-roger")["df"].round(1).tolist()
    [284.2, 353.3, 284.2, 353.3]
    """
    if not fit.reml:
        raise LMMError("Kenward–Roger is defined for REML fits; refit with fit.refit('REML') (or "
                       "LMM(...).fit('REML')) and ask again")
    spec = fit.state.spec
    codes, layout = _blocks_of(fit)
    D, E = _random_patterns(fit)
    sigma2 = fit.sigma**2
    bound = fit.state.residual
    if bound is not None:
        base, first, second = relative_derivatives(bound, fit.state.phi, layout)
    else:
        base = {s: np.broadcast_to(np.eye(s), (rows.shape[0], s, s)) for s, rows in layout.groups.items()}
        first = {s: np.zeros((0, rows.shape[0], s, s)) for s, rows in layout.groups.items()}
        second = {s: np.zeros((0, 0, rows.shape[0], s, s)) for s, rows in layout.groups.items()}
    m_random, K = len(E), next(iter(first.values())).shape[0]
    m, p = m_random + 1 + K, spec.p
    sums = _Sums(np.zeros((p, p)), np.zeros((m, p, p)), np.zeros((m, m, p, p)), np.zeros((m, m, p, p)),
                 np.zeros((m, m)))
    for s, rows in layout.groups.items():
        X = spec.X[rows]  # (B, s, p)
        B = rows.shape[0]
        V = sigma2 * base[s]
        dV = np.empty((m, B, s, s))
        if m_random:
            Z = spec.factors[0].raw[rows]  # (B, s, S)
            Zt = np.swapaxes(Z, 1, 2)
            V = V + Z @ D @ Zt
            dV[:m_random] = Z[None] @ E[:, None] @ Zt[None]
        dV[m_random] = base[s]  # ∂V/∂σ²
        dV[m_random + 1:] = sigma2 * first[s]  # ∂V/∂ψ
        d2V = np.zeros((1 + K, 1 + K, B, s, s))  # over (σ², ψ)
        d2V[0, 1:] = d2V[1:, 0] = first[s]  # ∂²V/∂σ²∂ψ
        d2V[1:, 1:] = sigma2 * second[s]
        sums.add(X, V, dV, d2V, m_random)

    return assemble(sums.XVX, sums.P, sums.Q, sums.K, sums.R)
