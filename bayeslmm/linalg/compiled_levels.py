"""Compiled loops over Z2'Z1 level by level of the first grouping factor.

Z2'Z1 (Q2 × G1·S1) is held as :class:`bayeslmm.linalg.crossprod.LevelColumns`: level g meets the
rows ``rows[start[g]:start[g+1]]`` (sorted) with values ``values`` in its S1 columns; or, where it
is mostly non-zero (crossed designs), as a dense (Q2, G1·S1) array ``dense`` (else (Q2, 0)).
The downdate W − Σ_g C_g D_g C_g' and its transpose, the gather of C_g'XC_g, are the
second-block steps of the blocked Cholesky and its gradient, shared by the compiled kernels
(:mod:`bayeslmm.linalg.compiled_blocked`) and the NumPy path
(:class:`bayeslmm.linalg.crossprod.DowndatePairs`).
"""
from __future__ import annotations

import numpy as np

from bayeslmm.linalg.compiled import njit, product_into


@njit
def downdate(ZtZ2, start, rows, values, dense, D):
    """W22* = Z2'Z2 − Σ_g C_g D_g C_g' (C_g: level g's rows of Z2'Z1, dense in its S1 columns).
    ``dense``: Z2'Z1 as a dense (Q2, G1·S1) array where most of it is non-zero (crossed designs),
    then one BLAS product; else (Q2, 0) and loops over each level's rows."""
    S1 = values.shape[1]
    if dense.shape[1] > 0:
        E = np.empty_like(dense)  # Z2'Z1 blockdiag(D)
        for q in range(dense.shape[0]):
            for g in range(D.shape[0]):
                for t in range(S1):
                    s = 0.0
                    for u in range(S1):
                        s += dense[q, g * S1 + u] * D[g, u, t]
                    E[q, g * S1 + t] = s
        W = np.dot(E, dense.T)
        for i in range(W.shape[0]):  # symmetric up to rounding: made exactly so, as the NumPy path does
            for j in range(i + 1):
                W[i, j] = W[j, i] = ZtZ2[i, j] - 0.5 * (W[i, j] + W[j, i])
        return W
    W = ZtZ2.copy()
    if S1 == 1:  # scalar first-factor terms: the same products with no per-level temporaries
        for g in range(start.shape[0] - 1):
            d = D[g, 0, 0]
            for a in range(start[g], start[g + 1]):
                e, qa = values[a, 0] * d, rows[a]
                for b in range(a, start[g + 1]):
                    W[qa, rows[b]] -= e * values[b, 0]
        for i in range(W.shape[0]):
            for j in range(i):
                W[i, j] = W[j, i]
        return W
    for g in range(start.shape[0] - 1):
        a0, a1 = start[g], start[g + 1]
        E = np.empty((a1 - a0, S1))
        product_into(values[a0:a1], D[g], E, 1.0, 0.0)
        for a in range(a0, a1):
            qa = rows[a]
            for b in range(a, a1):
                s = 0.0
                for t in range(S1):
                    s += E[a - a0, t] * values[b, t]
                W[qa, rows[b]] -= s
    for i in range(W.shape[0]):  # the loops above wrote the upper triangle (rows sorted per level)
        for j in range(i):
            W[i, j] = W[j, i]
    return W


@njit
def gather(X, start, rows, values, dense):
    """N_g = C_g' X C_g of every first-factor level, (G1, S1, S1), for a symmetric Q2 × Q2 X
    (the transpose of :func:`downdate`'s product)."""
    G1, S1 = start.shape[0] - 1, values.shape[1]
    N = np.zeros((G1, S1, S1))
    if dense.shape[1] > 0:
        dense_t = np.ascontiguousarray(dense.T)
        XC_t = np.dot(dense_t, X)  # (X Z2'Z1)' = Z1'Z2 X, X symmetric
        for g in range(G1):
            for s in range(S1):
                for t in range(S1):
                    acc = 0.0
                    for q in range(dense.shape[0]):
                        acc += dense_t[g * S1 + s, q] * XC_t[g * S1 + t, q]
                    N[g, s, t] = acc
        return N
    if S1 == 1:  # scalar first-factor terms: the same sums, accumulated in a scalar
        for g in range(G1):
            acc = 0.0
            for a in range(start[g], start[g + 1]):
                row, va = X[rows[a]], values[a, 0]
                acc += row[rows[a]] * va * va
                for b in range(a + 1, start[g + 1]):
                    vb = values[b, 0]
                    acc += row[rows[b]] * (va * vb + vb * va)
            N[g, 0, 0] = acc
        return N
    for g in range(G1):  # Σ_{a,b} v_a X_ab v_b' over the level's rows: the pairs b > a twice, by symmetry
        for a in range(start[g], start[g + 1]):
            row = X[rows[a]]
            for s in range(S1):
                x = row[rows[a]] * values[a, s]
                for t in range(S1):
                    N[g, s, t] += x * values[a, t]
            for b in range(a + 1, start[g + 1]):
                x = row[rows[b]]
                for s in range(S1):
                    for t in range(S1):
                        N[g, s, t] += x * (values[a, s] * values[b, t] + values[b, s] * values[a, t])
    return N


@njit
def times_levels(start, rows, values, X, Q2):
    """Z2'Z1 X for X of shape (G1, S1, k): (Q2, k)."""
    out = np.zeros((Q2, X.shape[2]))
    for g in range(start.shape[0] - 1):
        for a in range(start[g], start[g + 1]):
            for s in range(values.shape[1]):
                v = values[a, s]
                for c in range(X.shape[2]):
                    out[rows[a], c] += v * X[g, s, c]
    return out


@njit
def levels_times(start, rows, values, Y):
    """Z1'Z2 Y for Y of shape (Q2, k): (G1, S1, k)."""
    G1, S1 = start.shape[0] - 1, values.shape[1]
    out = np.zeros((G1, S1, Y.shape[1]))
    for g in range(G1):
        for a in range(start[g], start[g + 1]):
            for s in range(S1):
                v = values[a, s]
                for c in range(Y.shape[1]):
                    out[g, s, c] += v * Y[rows[a], c]
    return out
