"""Cross-products of [Z X y], computed once per data set (MixedModels.jl's createAL).

The first grouping factor (most levels) is kept as per-level S×S blocks: these
are the per-group sufficient statistics, and no evaluation ever touches n again.
The other factors, if any, are stacked into one block of Q2 = Σ G_f S_f columns.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .spec import GroupingFactor, ModelSpec


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

    @property
    def n_factors(self) -> int:
        return 0 if self.ZtZ1 is None else (1 if self.ZtZ2 is None else 2)


def factor_matrix(factor: GroupingFactor) -> sp.csr_matrix:
    """Sparse Z of one factor: column ``level * S + s`` holds ``raw[:, s]`` on that level's rows."""
    n, S = factor.raw.shape
    rows = np.repeat(np.arange(n), S)
    cols = (factor.codes[:, None] * S + np.arange(S)).reshape(-1)
    return sp.csr_matrix((factor.raw.reshape(-1), (rows, cols)), shape=(n, factor.n_levels * S))


def cross_products(spec: ModelSpec) -> CrossProducts:
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
    return CrossProducts(
        spec.n, spec.p, XYtXY, ZtZ1, ZtXY1,
        ZtZ2=(Z2t @ Z2).toarray(), ZtXY2=np.asarray(Z2t @ XY), Z2tZ1=(Z2t @ Z1).tocsr(), levels=levels,
    )


def _block_diagonal(ZtZ: sp.spmatrix, G: int, S: int) -> np.ndarray:
    """The G diagonal S×S blocks of a block-diagonal sparse matrix."""
    coo = ZtZ.tocoo()
    blocks = np.zeros((G, S, S))
    np.add.at(blocks, (coo.row // S, coo.row % S, coo.col % S), coo.data)
    return blocks
