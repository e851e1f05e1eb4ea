"""linalg/crossprod.py: the sufficient statistics against the dense [X y Z]'[X y Z] built from
the spec by brute force, with one, two and three grouping factors, prior weights, and new responses."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import bayeslmm as blm
from bayeslmm.linalg.crossprod import ResponseProducts, cross_products, cross_products_of_columns, group_cross_products
from conftest import REPO


def _dense_Z(factor) -> np.ndarray:
    """Z of one factor, element by element: row i holds raw[i] in its level's S columns."""
    n, S = factor.raw.shape
    Z = np.zeros((n, factor.n_levels * S))
    for i in range(n):
        Z[i, factor.codes[i] * S: (factor.codes[i] + 1) * S] = factor.raw[i]
    return Z


def _dense(spec, y=None):
    """[X y]'[X y], Z1'Z1, Z1'[X y], Z2'Z2, Z2'[X y], Z2'Z1, all dense, rows scaled by √w."""
    root_w = np.ones(spec.n) if spec.weights is None else np.sqrt(spec.weights)
    XY = np.column_stack([spec.X, spec.y if y is None else y]) * root_w[:, None]
    Zs = [_dense_Z(f) * root_w[:, None] for f in spec.factors]
    Z2 = np.hstack(Zs[1:]) if len(Zs) > 1 else None
    return dict(XYtXY=XY.T @ XY, Z1tZ1=Zs[0].T @ Zs[0], Z1tXY=Zs[0].T @ XY,
                Z2tZ2=None if Z2 is None else Z2.T @ Z2, Z2tXY=None if Z2 is None else Z2.T @ XY,
                Z2tZ1=None if Z2 is None else Z2.T @ Zs[0])


def _block_diag(blocks: np.ndarray) -> np.ndarray:
    G, S, _ = blocks.shape
    out = np.zeros((G * S, G * S))
    for g in range(G):
        out[g * S: (g + 1) * S, g * S: (g + 1) * S] = blocks[g]
    return out


def _assert_matches(stats, dense, spec):
    G1, S1 = spec.factors[0].n_levels, spec.factors[0].n_columns
    np.testing.assert_allclose(stats.XYtXY, dense["XYtXY"], rtol=1e-12)
    # Z1'Z1 is block diagonal: the kept blocks are all of it
    np.testing.assert_allclose(_block_diag(stats.ZtZ1), dense["Z1tZ1"], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(stats.ZtXY1.reshape(G1 * S1, -1), dense["Z1tXY"], rtol=1e-12)
    assert stats.n == spec.n and stats.p == spec.p
    assert stats.levels == tuple(f.n_levels for f in spec.factors)
    if len(spec.factors) == 1:
        assert stats.n_factors == 1 and stats.ZtZ2 is None and stats.Z2tZ1 is None
        return
    assert stats.n_factors == 2
    np.testing.assert_allclose(stats.ZtZ2, dense["Z2tZ2"], rtol=1e-12)
    np.testing.assert_allclose(stats.ZtXY2, dense["Z2tXY"], rtol=1e-12)
    np.testing.assert_allclose(stats.Z2tZ1.toarray(), dense["Z2tZ1"], rtol=1e-12)


@pytest.fixture(scope="module")
def sleep():
    data = blm.datasets.load("sleepstudy")
    return data.assign(day=data["Days"].astype(str), w=1 + (data["Days"] % 3) / 2)


SPECS = {  # name: (formula, dataset or None for sleep, weights)
    "one factor, slopes": ("Reaction ~ Days + (Days | Subject)", None, None),
    "one factor, weights": ("Reaction ~ Days + (Days | Subject)", None, "w"),
    "two crossed factors": ("diameter ~ 1 + (1 | plate) + (1 | sample)", "Penicillin", None),
    "nested factors": ("strength ~ 1 + (1 | batch/cask)", "Pastes", None),
    "slopes and a second factor, weights": ("Reaction ~ Days + (Days | Subject) + (1 | day)", None, "w"),
    "three crossed factors": ("y ~ x + (1 | f1) + (1 | f2) + (1 | f3)", "tests/data/crossed3.csv", None),
}


def _spec(name, sleep):
    formula, dataset, weights = SPECS[name]
    if dataset is None:
        data = sleep
    else:
        data = pd.read_csv(REPO / dataset) if dataset.endswith(".csv") else blm.datasets.load(dataset)
    return blm.LMM(formula, data, weights=weights).spec


@pytest.mark.parametrize("name", SPECS)
def test_cross_products_equal_the_dense_ones(name, sleep):
    spec = _spec(name, sleep)
    stats = cross_products(spec)
    _assert_matches(stats, _dense(spec), spec)
    expected_log_weights = 0.0 if spec.weights is None else np.sum(np.log(spec.weights))
    assert stats.log_weights == pytest.approx(expected_log_weights, rel=1e-12)


def test_the_first_factor_has_the_most_levels(sleep):
    spec = _spec("slopes and a second factor, weights", sleep)
    assert [f.name for f in spec.factors] == ["Subject", "day"]
    assert [f.n_levels for f in spec.factors] == [18, 10]


@pytest.mark.parametrize("name", ["two crossed factors", "nested factors", "slopes and a second factor, weights",
                                  "three crossed factors"])
def test_downdate_pairs_scatter_the_dense_product(name, sleep):
    """pairs.scatter(D) = Z2'Z1 blockdiag(D) Z1'Z2 for a random symmetric D_g per first-factor level."""
    spec = _spec(name, sleep)
    stats = cross_products(spec)
    G1, S1 = spec.factors[0].n_levels, spec.factors[0].n_columns
    A = np.random.default_rng(0).normal(size=(G1, S1, S1))
    D = A @ A.transpose(0, 2, 1)
    C = stats.Z2tZ1.toarray()
    np.testing.assert_allclose(stats.pairs.scatter(D), C @ _block_diag(D) @ C.T, rtol=1e-10, atol=1e-10)
    W = stats.ZtZ2.copy()
    np.testing.assert_allclose(stats.pairs.downdated(W, D), W - C @ _block_diag(D) @ C.T, rtol=1e-10, atol=1e-10)
    np.testing.assert_array_equal(W, stats.ZtZ2)  # a new array: the statistics are not written


@pytest.mark.parametrize("name", ["one factor, weights", "two crossed factors", "slopes and a second factor, weights",
                                  "three crossed factors"])
def test_new_responses_give_the_cross_products_of_those_responses(name, sleep):
    spec = _spec(name, sleep)
    stats = cross_products(spec)
    Y = np.random.default_rng(1).normal(size=(spec.n, 3))
    out = ResponseProducts(spec).with_responses(stats, Y)
    assert len(out) == 3
    for k, new in enumerate(out):
        _assert_matches(new, _dense(spec, Y[:, k]), spec)
        assert new.ZtZ1 is stats.ZtZ1  # the y-free blocks are shared, not recomputed
    np.testing.assert_array_equal(stats.XYtXY, cross_products(spec).XYtXY)  # the original is untouched


def test_cross_products_of_columns_equal_the_sparse_path(sleep):
    """The array-namespace form (used inside PyMC graphs) with NumPy equals cross_products."""
    spec = _spec("one factor, slopes", sleep)
    factor, stats = spec.factors[0], cross_products(spec)
    XY = np.column_stack([spec.X, spec.y])
    dense = cross_products_of_columns(XY, factor.raw, factor.codes, factor.n_levels, spec.p, factor.n_columns)
    np.testing.assert_allclose(dense.XYtXY, stats.XYtXY, rtol=1e-12)
    np.testing.assert_allclose(dense.ZtZ1, stats.ZtZ1, rtol=1e-12)
    np.testing.assert_allclose(dense.ZtXY1, stats.ZtXY1, rtol=1e-12)
    no_factor = cross_products_of_columns(XY, None, None, 0, spec.p, 0)
    assert no_factor.n_factors == 0 and no_factor.n == spec.n


def test_no_random_term():
    spec = blm.LMM("size ~ time * treat", blm.datasets.load("Sitka")).spec
    stats = cross_products(spec)
    XY = np.column_stack([spec.X, spec.y])
    np.testing.assert_allclose(stats.XYtXY, XY.T @ XY, rtol=1e-12)
    assert stats.n_factors == 0 and stats.levels == ()


@pytest.mark.parametrize("name", ["one factor, slopes", "one factor, weights"])
def test_group_cross_products_are_each_levels_own(name, sleep):
    """Leave-one-group-out's per-level statistics: [X y]'[X y] of each level's rows (scaled by √w),
    symmetric, with the level's row count and Σ log w."""
    spec = _spec(name, sleep)
    groups = group_cross_products(spec)
    XY = np.column_stack([spec.X, spec.y])
    weights = np.ones(spec.n) if spec.weights is None else spec.weights
    for g in range(spec.factors[0].n_levels):
        rows = spec.factors[0].codes == g
        scaled = XY[rows] * np.sqrt(weights[rows])[:, None]
        np.testing.assert_allclose(groups.XYtXY[g], scaled.T @ scaled, rtol=1e-12)
        assert groups.n[g] == rows.sum()
        assert groups.log_weights[g] == pytest.approx(np.log(weights[rows]).sum(), abs=1e-12)
    np.testing.assert_array_equal(groups.XYtXY, groups.XYtXY.transpose(0, 2, 1))
