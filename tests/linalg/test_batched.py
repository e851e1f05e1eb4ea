"""linalg/batched.py: the entry-by-entry kernels over stacks of blocks against numpy.linalg on
random symmetric positive-definite batches, in NumPy and in PyTensor."""
from __future__ import annotations

import numpy as np
import pytest

from bayeslmm.linalg import batched

SIZES = [1, 2, 3, 5]


def _spd(G: int, S: int, seed: int) -> np.ndarray:
    A = np.random.default_rng(seed).normal(size=(G, S, S))
    return A @ A.transpose(0, 2, 1) + 0.1 * np.eye(S)


def _lower(L: dict, S: int) -> np.ndarray:
    """A lower-triangle entry dict → (G, S, S) array."""
    return batched.assemble({k: v for k, v in L.items() if k[0] >= k[1]}, S)


@pytest.mark.parametrize("S", SIZES)
def test_entries_and_assemble_round_trip(S):
    A = _spd(7, S, 0)
    np.testing.assert_array_equal(batched.assemble(batched.entries(A, S), S), A)


@pytest.mark.parametrize("S", SIZES)
def test_cholesky_is_numpys(S):
    A = _spd(50, S, 1)
    L = batched.cholesky(batched.entries(A, S), S)
    np.testing.assert_allclose(_lower(L, S), np.linalg.cholesky(A), rtol=1e-10, atol=1e-12)


def test_cholesky_is_nan_where_not_positive_definite():
    A = np.stack([np.eye(2), np.array([[1.0, 2.0], [2.0, 1.0]])])  # the second has eigenvalue −1
    L = batched.cholesky(batched.entries(A, 2), 2)
    assert np.isfinite(L[1, 1][0]) and np.isnan(L[1, 1][1])


@pytest.mark.parametrize("S", SIZES)
def test_inverse_lower_is_numpys_inverse(S):
    L_true = np.linalg.cholesky(_spd(50, S, 2))
    inv = batched.inverse_lower(batched.entries(L_true, S), S)
    np.testing.assert_allclose(_lower(inv, S), np.linalg.inv(L_true), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("S", SIZES)
def test_congruence_is_t_transpose_w_t(S):
    """Lower triangle of T'W_gT, for T shared by all blocks (scalars) and for T per block."""
    W = _spd(30, S, 3)
    T_shared = np.random.default_rng(4).normal(size=(S, S))
    out = batched.congruence(batched.entries(T_shared, S), batched.entries(W, S), S)
    expected = T_shared.T @ W @ T_shared
    np.testing.assert_allclose(_lower(out, S), np.tril(expected), rtol=1e-10, atol=1e-10)
    T_each = np.random.default_rng(5).normal(size=(30, S, S))
    out = batched.congruence(batched.entries(T_each, S), batched.entries(W, S), S)
    expected = T_each.transpose(0, 2, 1) @ W @ T_each
    np.testing.assert_allclose(_lower(out, S), np.tril(expected), rtol=1e-10, atol=1e-10)


def test_assemble_fills_absent_entries_with_zeros():
    blocks = {(0, 0): np.array([1.0, 2.0]), (1, 1): np.array([3.0, 4.0])}
    out = batched.assemble(blocks, 2)
    np.testing.assert_array_equal(out, [np.diag([1.0, 3.0]), np.diag([2.0, 4.0])])


def test_stacks_times_a_shared_matrix():
    rng = np.random.default_rng(6)
    X, M, N = rng.normal(size=(9, 3, 4)), rng.normal(size=(4, 2)), rng.normal(size=(5, 3))
    np.testing.assert_allclose(batched.times(X, M), X @ M, rtol=1e-12)
    np.testing.assert_allclose(batched.times_left(N, X), N @ X, rtol=1e-12)
    np.testing.assert_array_equal(batched.transpose(X), X.transpose(0, 2, 1))


@pytest.mark.parametrize("S", [1, 3])
def test_pytensor_graph_equals_numpy(S):
    """The same expressions built with pytensor.tensor (the Bayesian model's path) compute the
    Cholesky factor and its inverse of every block."""
    pt = pytest.importorskip("pytensor.tensor")
    import pytensor

    A = _spd(20, S, 7)
    stack = pt.tensor3("A")
    L = batched.cholesky(batched.entries(stack, S), S, xp=pt)
    inv = batched.inverse_lower(L, S)
    outputs = [batched.assemble({k: v for k, v in d.items() if k[0] >= k[1]}, S, xp=pt) for d in (L, inv)]
    chol, inverse = pytensor.function([stack], outputs)(A)
    np.testing.assert_allclose(chol, np.linalg.cholesky(A), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(inverse, np.linalg.inv(np.linalg.cholesky(A)), rtol=1e-9, atol=1e-12)
