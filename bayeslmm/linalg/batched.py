"""Small dense linear algebra over many groups at once, entry by entry.

A stack of G symmetric S×S blocks is held as a dict ``{(i, j): vector of length G}``;
every step below is an elementwise operation on those vectors.  Written once against
an array namespace ``xp``: NumPy for the optimiser, ``pytensor.tensor`` for the
Bayesian model, where the same expressions become a small differentiable graph of
fused elementwise loops (no per-block LAPACK calls, no BLAS needed).  For NumPy,
one call per entry over 20,000 groups beats 20,000 LAPACK calls on 2×2 blocks.
"""
from __future__ import annotations

import numpy as np

ENTRY_LIMIT = 12  # larger symbolic matrices go to pytensor.linalg instead of entry-by-entry graphs


def entries(stack, size: int) -> dict:
    """(…, S, S) array → entry dict."""
    return {(i, j): stack[..., i, j] for i in range(size) for j in range(size)}


def assemble(blocks: dict, size: int, xp=np):
    """Entry dict → (G, S, S) array (zeros where an entry is absent)."""
    like = next(iter(blocks.values()))
    zero = xp.zeros_like(like)
    rows = [xp.stack([blocks.get((i, j), zero) for j in range(size)], axis=-1) for i in range(size)]
    return xp.stack(rows, axis=-2)


def congruence(T: dict, W: dict, size: int) -> dict:
    """T' W_g T for every g (lower triangle); T's entries are scalars, or carry leading axes."""
    WT = {(k, j): _sum(W[k, l] * T[l, j] for l in range(size)) for k in range(size) for j in range(size)}
    return {(i, j): _sum(T[k, i] * WT[k, j] for k in range(size)) for i in range(size) for j in range(i + 1)}


def cholesky(A: dict, size: int, xp=np) -> dict:
    """Lower Cholesky factor of each block, from its lower triangle (NaN where not PD)."""
    L: dict = {}
    for j in range(size):
        pivot = A[j, j] - _sum(L[j, k] ** 2 for k in range(j))
        L[j, j] = xp.sqrt(pivot) if xp is not np else np.sqrt(np.where(pivot > 0, pivot, np.nan))
        for i in range(j + 1, size):
            L[i, j] = (A[i, j] - _sum(L[i, k] * L[j, k] for k in range(j))) / L[j, j]
    return L


def inverse_lower(L: dict, size: int) -> dict:
    """Inverse of each lower-triangular block, by forward substitution."""
    inv: dict = {}
    for i in range(size):
        inv[i, i] = 1.0 / L[i, i]
        for j in range(i):
            inv[i, j] = -_sum(L[i, k] * inv[k, j] for k in range(j, i)) / L[i, i]
    return inv


def _sum(terms):
    return sum(terms, start=0.0)


# --- NumPy stacks (G, a, b) times one shared matrix: one 2-D product each -------------------


def times(X: np.ndarray, M: np.ndarray) -> np.ndarray:
    """X_g @ M for every g: (G, a, b) @ (b, c) → (G, a, c)."""
    G, a, b = X.shape
    return (X.reshape(G * a, b) @ M).reshape(G, a, M.shape[1])


def times_left(M: np.ndarray, X: np.ndarray) -> np.ndarray:
    """M @ X_g for every g: (a, b) @ (G, b, c) → (G, a, c)."""
    return transpose(times(transpose(X), M.T))


def transpose(X: np.ndarray) -> np.ndarray:
    return np.swapaxes(X, 1, 2)
