"""The lower triangle of a random term's S × S covariance: its one walk and its two packings.

lme4 orders a term's parameters (θ, the sd/cor vector, confint's rows) column by column,
the diagonal entry first in each column: (0,0), (1,0), …, (S-1,0), (1,1), (2,1), … .
PyMC's ``LKJCholeskyCov`` packs its Cholesky factor row by row (NumPy's ``tril_indices``):
(0,0), (1,0), (1,1), (2,0), … .  Every other module gets these orders from here.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np


def lower_triangle(size: int) -> list[tuple[int, int]]:
    """(row, column) of each lower-triangle entry of an S × S matrix, in lme4's order."""
    return [(r, c) for c in range(size) for r in range(c, size)]


def correlation_pairs(size: int) -> list[tuple[int, int]]:
    """(row, column) of each entry below the diagonal, in lme4's order (its correlations)."""
    return [(r, c) for r, c in lower_triangle(size) if r != c]


def varcorr_entries(size: int) -> list[tuple[int, int]]:
    """The entries in lme4's ``as.data.frame(VarCorr)`` order: the variances, then the
    covariances column by column."""
    return [(i, i) for i in range(size)] + correlation_pairs(size)


def n_parameters(size: int) -> int:
    """Free entries of an S × S lower triangle: S(S+1)/2."""
    return size * (size + 1) // 2


@lru_cache(maxsize=None)
def columnwise_indices(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices of the lower triangle in lme4's (θ's) order (read-only, cached:
    the profile maps parameters at every deviance evaluation)."""
    entries = lower_triangle(size)
    rows, cols = zip(*entries) if entries else ((), ())
    return _read_only(np.array(rows, dtype=np.intp), np.array(cols, dtype=np.intp))


@lru_cache(maxsize=None)
def rowwise_indices(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices of the lower triangle in PyMC's LKJ order (row by row; read-only)."""
    return _read_only(*np.tril_indices(size))


def _read_only(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    for a in arrays:
        a.flags.writeable = False
    return arrays


def pack_columnwise(M: np.ndarray) -> np.ndarray:
    """The lower triangle of ``M`` (…, S, S) as a vector (…, S(S+1)/2) in θ's order."""
    return _pack(M, columnwise_indices(M.shape[-1]))


def unpack_columnwise(v: np.ndarray, size: int) -> np.ndarray:
    """The lower-triangular (…, S, S) matrix whose θ-ordered lower triangle is ``v``."""
    return _unpack(v, size, columnwise_indices(size))


def pack_rowwise(M: np.ndarray) -> np.ndarray:
    """The lower triangle of ``M`` (…, S, S) as PyMC's LKJ packs it."""
    return _pack(M, rowwise_indices(M.shape[-1]))


def unpack_rowwise(v: np.ndarray, size: int) -> np.ndarray:
    """The lower-triangular (…, S, S) matrix of a vector packed as PyMC's LKJ packs it."""
    return _unpack(v, size, rowwise_indices(size))


def rowwise_from_columnwise(v: np.ndarray, size: int) -> np.ndarray:
    """A θ-ordered packed triangle re-ordered as PyMC's LKJ packs it."""
    return pack_rowwise(unpack_columnwise(v, size))


def columnwise_from_rowwise(v: np.ndarray, size: int) -> np.ndarray:
    """An LKJ-packed triangle re-ordered as θ."""
    return pack_columnwise(unpack_rowwise(v, size))


def _pack(M: np.ndarray, indices) -> np.ndarray:
    rows, cols = indices
    return np.asarray(M)[..., rows, cols]


def _unpack(v: np.ndarray, size: int, indices) -> np.ndarray:
    v = np.asarray(v, dtype=float)
    rows, cols = indices
    M = np.zeros(v.shape[:-1] + (size, size))
    M[..., rows, cols] = v
    return M
