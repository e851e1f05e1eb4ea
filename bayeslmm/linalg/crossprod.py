"""Cross-products of [Z X y], computed once per data set (MixedModels.jl's createAL).

The first grouping factor (most levels) is kept as per-level S×S blocks: these
are the per-group sufficient statistics, and no evaluation ever touches n again.
The other factors, if any, are stacked into one block of Q2 = Σ G_f S_f columns.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import scipy.sparse as sp

from bayeslmm.arrays import group_sums
from bayeslmm.linalg.compiled_levels import downdate, gather
from bayeslmm.model.spec import GroupingFactor, ModelSpec


@dataclass(frozen=True)
class CrossProducts:
    n: int
    p: int
    XYtXY: np.ndarray  # (p+1, p+1): [X y]'[X y]
    ZtZ1: np.ndarray | None  # (G1, S1, S1) per-level blocks of the first factor
    ZtXY1: np.ndarray | None  # (G1, S1, p+1)
    ZtZ2: np.ndarray | None  # (Q2, Q2) dense: the other factors
    ZtXY2: np.ndarray | None  # (Q2, p+1)
    Z2tZ1: sp.csr_matrix | None  # (Q2, Q1) sparse
    levels: tuple[int, ...] = ()  # G_f of every factor
    pairs: "DowndatePairs | None" = None  # for Z2'Z1 D Z1'Z2 with D block diagonal
    log_weights: float = 0.0  # Σ log w_i of the prior weights (the rows above are scaled by √w)
    # the single factor's per-level [X y]'[X y] (leave-one-group-out), where the rows are not held
    # (bayeslmm.scaleout keeps them from its pass); None: computed from the rows when needed
    by_group: "GroupCrossProducts | None" = None

    @property
    def n_factors(self) -> int:
        return 0 if self.ZtZ1 is None else (1 if self.ZtZ2 is None else 2)

    @cached_property
    def z2tz1_by_level(self) -> "LevelColumns":
        """Z2'Z1 by level of the first factor (for the compiled kernel of several factors)."""
        if self.pairs is not None:
            return self.pairs.columns
        return level_columns(self.Z2tZ1, self.levels[0], self.ZtZ1.shape[1])


@dataclass(frozen=True)
class GroupCrossProducts:
    """What leave-one-group-out needs beyond :class:`CrossProducts`, per level of a single grouping
    factor: [X y]'[X y] of its rows (scaled by √w with prior weights), its number of rows and
    Σ log w_i (0 without weights)."""

    XYtXY: np.ndarray  # (G, p+1, p+1)
    n: np.ndarray  # (G,)
    log_weights: np.ndarray  # (G,)


def group_cross_products(spec: ModelSpec) -> GroupCrossProducts:
    """The per-level statistics of the spec's first grouping factor (see :class:`GroupCrossProducts`).

    The sums over each level's rows are one sparse product of the level indicator with the rows'
    outer products (np.add.at would be ~20x slower on the millions of rows of a Dask partition),
    their upper triangles only (k(k + 1)/2 of the k² products), mirrored after the sum."""
    factor = spec.factors[0]
    XY = np.column_stack([spec.X, spec.y])
    if spec.weights is not None:
        XY *= np.sqrt(spec.weights)[:, None]
    k = XY.shape[1]
    upper, lower = np.triu_indices(k)
    indicator = sp.csr_matrix((np.ones(spec.n), (factor.codes, np.arange(spec.n))), shape=(factor.n_levels, spec.n))
    sums = indicator @ (XY[:, upper] * XY[:, lower])
    XYtXY = np.empty((factor.n_levels, k, k))
    XYtXY[:, upper, lower] = sums
    XYtXY[:, lower, upper] = sums
    n_g = np.bincount(factor.codes, minlength=factor.n_levels).astype(float)
    log_weights = (np.zeros(factor.n_levels) if spec.weights is None
                   else np.bincount(factor.codes, np.log(spec.weights), minlength=factor.n_levels))
    return GroupCrossProducts(XYtXY, n_g, log_weights)


def factor_matrix(factor: GroupingFactor) -> sp.csr_matrix:
    """Sparse Z of one factor: column ``level * S + s`` holds ``raw[:, s]`` on that level's rows."""
    n, S = factor.raw.shape
    rows = np.repeat(np.arange(n), S)
    cols = (factor.codes[:, None] * S + np.arange(S)).reshape(-1)
    return sp.csr_matrix((factor.raw.reshape(-1), (rows, cols)), shape=(n, factor.n_levels * S))


def cross_products(spec: ModelSpec) -> CrossProducts:
    """The cross-products of [Z X y] with every row scaled by √w_i (X'WX, Z'WX, y'Wy, …) when the
    spec has prior weights: the weighted model is then the unweighted one on these statistics,
    and its log-likelihood's extra ½ Σ log w_i travels with them as ``log_weights``."""
    stats = _unweighted_cross_products(spec.weighted())
    return dataclasses.replace(stats, log_weights=spec.log_weights) if spec.weights is not None else stats


def _unweighted_cross_products(spec: ModelSpec) -> CrossProducts:
    XY = np.column_stack([spec.X, spec.y])
    XYtXY = XY.T @ XY
    if not spec.factors:
        return CrossProducts(spec.n, spec.p, XYtXY, None, None, None, None, None)
    levels = tuple(f.n_levels for f in spec.factors)
    first = spec.factors[0]
    G1, S1 = first.n_levels, first.n_columns
    Z1 = factor_matrix(first)
    ZtZ1 = _block_diagonal(Z1.T @ Z1, G1, S1)
    ZtXY1 = np.asarray(Z1.T @ XY).reshape(G1, S1, -1)
    if len(spec.factors) == 1:
        return CrossProducts(spec.n, spec.p, XYtXY, ZtZ1, ZtXY1, None, None, None, levels)
    Z2 = sp.hstack([factor_matrix(f) for f in spec.factors[1:]], format="csr")
    Z2t = Z2.T.tocsr()
    Z2tZ1 = (Z2t @ Z1).tocsr()
    return CrossProducts(
        spec.n, spec.p, XYtXY, ZtZ1, ZtXY1,
        ZtZ2=(Z2t @ Z2).toarray(), ZtXY2=np.asarray(Z2t @ XY), Z2tZ1=Z2tZ1, levels=levels,
        pairs=downdate_pairs(Z2tZ1, G1, S1),
    )


def cross_products_of_columns(XY, raw, codes: np.ndarray, n_levels: int, p: int, S: int, xp=np) -> CrossProducts:
    """The cross-products of [X y] and one factor's columns ``raw`` (levels ``codes``), against
    the array namespace ``xp``: the Bayesian model with a residual structure whitens the data
    inside its graph and forms these there (no factor: ``raw`` is None)."""
    XYtXY = xp.dot(XY.T, XY)
    n = XY.shape[0]
    if raw is None:
        return CrossProducts(n, p, XYtXY, None, None, None, None, None)
    ZtZ1 = group_sums(raw[:, :, None] * raw[:, None, :], codes, n_levels, xp, trailing=(S, S))
    ZtXY1 = group_sums(raw[:, :, None] * XY[:, None, :], codes, n_levels, xp, trailing=(S, p + 1))
    return CrossProducts(n, p, XYtXY, ZtZ1, ZtXY1, None, None, None, (n_levels,))


DENSE_ENTRIES = 1 << 22  # Z2'Z1 kept dense (32 MB at most) where BLAS beats the scatter of pairs
DENSE_ADVANTAGE = 20  # flops of a dense product per scattered pair product that still pay


class DowndatePairs:
    """Z2'Z1 D Z1'Z2 = Σ_g C_g D_g C_g' for D block diagonal, C_g = Z2'Z1[:, g], and its transpose.

    Each pair (i, j) of non-zero rows of C_g within one first-factor level g contributes
    C_g[i] D_g C_g[j]': compiled loops over Z2'Z1 level by level (``columns``;
    :func:`bayeslmm.linalg.compiled_levels.downdate` and ``gather``), one pass over the pairs
    with no array of them (8.7M pairs and 280 MB of index and product arrays at the 1M ratings).
    Where Z2'Z1 is small and dense (crossed designs: every subject meets most items) it is kept
    as a dense (Q2, G1, S1) array instead, and both products are BLAS products.
    """

    def __init__(self, columns: "LevelColumns", size: int, dense: np.ndarray | None = None):
        self.columns = columns  # Z2'Z1 level by level
        self.size = size  # Q2
        self.dense = dense  # Z2'Z1 as (Q2, G1, S1) where dense products are cheaper

    def scatter(self, D: np.ndarray) -> np.ndarray:
        """Σ_g C_g D_g C_g' as a new dense Q2 × Q2 matrix, for D of shape (G1, S1, S1)."""
        if self.dense is not None:
            CD = np.matmul(self.dense.transpose(1, 0, 2), D).transpose(1, 0, 2).reshape(self.size, -1)
            product = CD @ self.dense.reshape(self.size, -1).T
            return 0.5 * (product + product.T)
        return -self.downdated(np.zeros((self.size, self.size)), D)

    def downdated(self, W: np.ndarray, D: np.ndarray) -> np.ndarray:
        """W − Σ_g C_g D_g C_g' as a new array (one Q2 × Q2 array: 512 MB at Q2 = 8,000)."""
        if self.dense is not None:
            out = self.scatter(D)
            return np.subtract(W, out, out=out)
        columns = self.columns
        return downdate(np.ascontiguousarray(W, dtype=np.float64), columns.start, columns.rows, columns.values,
                        np.zeros((self.size, 0)), np.ascontiguousarray(D, dtype=np.float64))

    def gather(self, X: np.ndarray) -> np.ndarray:
        """C_g' X C_g of every first-factor level, (G1, S1, S1), for a symmetric Q2 × Q2 ``X``:
        the diagonal blocks of Z1'Z2 X Z2'Z1 (the transpose of :meth:`scatter`)."""
        if self.dense is not None:
            XC = (X @ self.dense.reshape(self.size, -1)).reshape(self.dense.shape)
            return np.matmul(self.dense.transpose(1, 2, 0), XC.transpose(1, 0, 2))
        columns = self.columns
        return gather(np.ascontiguousarray(X, dtype=np.float64), columns.start, columns.rows, columns.values,
                      np.zeros((self.size, 0)))


@dataclass(frozen=True)
class LevelColumns:
    """Z2'Z1 level by level of the first factor: level g meets the rows ``rows[start[g]:start[g+1]]``
    of Z2'Z1 (sorted), whose entries in g's S1 columns are the same rows of ``values``."""

    start: np.ndarray  # (G1 + 1,) int64
    rows: np.ndarray  # (nnz,) int64
    values: np.ndarray  # (nnz, S1)


def level_columns(Z2tZ1: sp.csr_matrix, G1: int, S1: int) -> LevelColumns:
    Q2 = Z2tZ1.shape[0]
    coo = Z2tZ1.tocoo()
    level_pattern = sp.csc_matrix((np.ones(coo.nnz), (coo.row, coo.col // S1)), shape=(Q2, G1))
    level_pattern.sum_duplicates()
    level_pattern.sort_indices()
    rows, counts = level_pattern.indices, np.diff(level_pattern.indptr)
    by_column = Z2tZ1.tocsc()
    values = np.stack([by_column[rows, np.repeat(np.arange(G1), counts) * S1 + s].A1 for s in range(S1)], axis=1)
    return LevelColumns(level_pattern.indptr.astype(np.int64), rows.astype(np.int64),
                        np.ascontiguousarray(values, dtype=np.float64).reshape(len(rows), S1))


def downdate_pairs(Z2tZ1: sp.csr_matrix, G1: int, S1: int) -> DowndatePairs:
    Q2 = Z2tZ1.shape[0]
    columns = level_columns(Z2tZ1, G1, S1)
    counts = np.diff(columns.start)
    n_pairs = int(np.sum(counts * (counts + 1) // 2))  # the pairs i ≤ j within each level
    dense_cost = Q2 * Q2 * G1 * S1
    if Q2 * G1 * S1 <= DENSE_ENTRIES and dense_cost <= DENSE_ADVANTAGE * n_pairs * S1 * S1:
        return DowndatePairs(columns, Q2, Z2tZ1.toarray().reshape(Q2, G1, S1))
    return DowndatePairs(columns, Q2)


def _block_diagonal(ZtZ: sp.spmatrix, G: int, S: int) -> np.ndarray:
    """The G diagonal S×S blocks of a block-diagonal sparse matrix."""
    coo = ZtZ.tocoo()
    blocks = np.zeros((G, S, S))
    np.add.at(blocks, (coo.row // S, coo.row % S, coo.col % S), coo.data)
    return blocks


class ResponseProducts:
    """The y-dependent cross-products for new responses on the same X and Z (bootstrap refits).

    Only [X y]'[X y]'s last row and column, Z_f'y of each factor and y'y depend on y; the
    sparse Z' and X' are built once here, and the cross-products of many responses come
    from one sparse product for all of them, never touching the y-free blocks again.
    """

    def __init__(self, spec: ModelSpec):
        self.root_weights = None if spec.weights is None else np.sqrt(spec.weights)[:, None]
        spec = spec.weighted()
        self.Xt = np.ascontiguousarray(spec.X.T)
        self.Z1t = factor_matrix(spec.factors[0]).T.tocsr() if spec.factors else None
        self.Z2t = (sp.hstack([factor_matrix(f) for f in spec.factors[1:]], format="csr").T.tocsr()
                    if len(spec.factors) > 1 else None)

    def with_responses(self, stats: CrossProducts, Y: np.ndarray) -> list[CrossProducts]:
        """One CrossProducts per column of ``Y`` (n × k), sharing every y-free array of ``stats``."""
        Y = np.asarray(Y, dtype=float)
        if self.root_weights is not None:  # the responses' rows scaled by √w, as the statistics' are
            Y = Y * self.root_weights
        XtY, yty = self.Xt @ Y, np.einsum("ik,ik->k", Y, Y)
        Z1tY = None if self.Z1t is None else np.asarray(self.Z1t @ Y).reshape(stats.ZtXY1.shape[0], -1, Y.shape[1])
        Z2tY = None if self.Z2t is None else np.asarray(self.Z2t @ Y)
        out = []
        for k in range(Y.shape[1]):
            XYtXY = stats.XYtXY.copy()
            XYtXY[:-1, -1] = XYtXY[-1, :-1] = XtY[:, k]
            XYtXY[-1, -1] = yty[k]
            out.append(dataclasses.replace(
                stats, XYtXY=XYtXY,
                ZtXY1=None if Z1tY is None else _with_last(stats.ZtXY1, Z1tY[..., k]),
                ZtXY2=None if Z2tY is None else _with_last(stats.ZtXY2, Z2tY[:, k])))
        return out


def _with_last(A: np.ndarray, last: np.ndarray) -> np.ndarray:
    """A copy of A with its last column (the y column of Z'[X y]) replaced."""
    out = A.copy()
    out[..., -1] = last
    return out
