"""Small dense linear algebra over many groups at once: arrays of shape (G, S, S).

NumPy's stacked matmul/cholesky/inv call LAPACK once per 2×2 block; with 20,000
groups that overhead dominates.  Here a product with one shared matrix is a single
2-D matmul, and Cholesky factors and triangular inverses of small blocks are
computed entry by entry, each step vectorised over the groups.
"""
from __future__ import annotations

import numpy as np

LOOP_LIMIT = 8  # blocks larger than this go to LAPACK, where per-call overhead no longer matters


def times(X: np.ndarray, M: np.ndarray) -> np.ndarray:
    """X_g @ M for every g: (G, a, b) @ (b, c) → (G, a, c)."""
    G, a, b = X.shape
    return (X.reshape(G * a, b) @ M).reshape(G, a, M.shape[1])


def times_left(M: np.ndarray, X: np.ndarray) -> np.ndarray:
    """M @ X_g for every g: (a, b) @ (G, b, c) → (G, a, c)."""
    return np.swapaxes(times(np.swapaxes(X, 1, 2), M.T), 1, 2)


def transpose(X: np.ndarray) -> np.ndarray:
    return np.swapaxes(X, 1, 2)


def cholesky(A: np.ndarray) -> np.ndarray:
    """Lower Cholesky factor of each symmetric positive-definite block; LinAlgError otherwise."""
    S = A.shape[-1]
    if S > LOOP_LIMIT:
        return np.linalg.cholesky(A)
    L = np.zeros_like(A)
    for j in range(S):
        pivot = A[:, j, j] - np.einsum("gk,gk->g", L[:, j, :j], L[:, j, :j])
        if not np.all(pivot > 0):
            raise np.linalg.LinAlgError("a block is not positive definite")
        L[:, j, j] = np.sqrt(pivot)
        for i in range(j + 1, S):
            L[:, i, j] = (A[:, i, j] - np.einsum("gk,gk->g", L[:, i, :j], L[:, j, :j])) / L[:, j, j]
    return L


def inverse_lower(L: np.ndarray) -> np.ndarray:
    """Inverse of each lower-triangular block, by forward substitution."""
    S = L.shape[-1]
    if S > LOOP_LIMIT:
        return np.linalg.inv(L)
    inv = np.zeros_like(L)
    for i in range(S):
        inv[:, i, i] = 1.0 / L[:, i, i]
        for j in range(i):
            inv[:, i, j] = -np.einsum("gk,gk->g", L[:, i, j:i], inv[:, j:i, j]) / L[:, i, i]
    return inv
