"""The unrolled per-level loops of the one-factor kernel (one or two columns per level) equal the
general S×S loop they stand in for."""
from __future__ import annotations

import numpy as np
import pytest

from bayeslmm.linalg import compiled


def _statistics(rng, levels: int, S: int, p1: int, scale: float = 1.0):
    """Z_g'Z_g, Z_g'[X y] and [X y]'[X y] of random rows, S + 2 to 11 per level (A_g well conditioned)."""
    ZtZ, ZtXY, XYtXY = np.zeros((levels, S, S)), np.zeros((levels, S, p1)), np.zeros((p1, p1))
    for g in range(levels):
        rows = rng.integers(S + 2, 12)
        Z, XY = scale * rng.normal(size=(rows, S)), rng.normal(size=(rows, p1))
        ZtZ[g], ZtXY[g] = Z.T @ Z, Z.T @ XY
        XYtXY += XY.T @ XY
    return ZtZ, ZtXY, XYtXY


@pytest.mark.parametrize("S", [1, 2])
@pytest.mark.parametrize("full_T", [False, True])
def test_unrolled_levels_equal_the_general_loop(S, full_T):
    """C, log|A|, K and A⁻¹ of schur_complement_small and the T-derivative of schur_gradient_small,
    against the general schur_complement / schur_gradient, with a lower-triangular and a full T; also with
    levels whose determinants multiply past LOG_FLUSH (log|A| logged in pieces)."""
    rng = np.random.default_rng(13 + S)
    for levels, scale in ((40, 1.0), (300, 1e3)):
        ZtZ, ZtXY, XYtXY = _statistics(rng, levels, S, p1=4, scale=scale)
        T = rng.normal(size=(S, S)) if full_T else np.tril(rng.normal(size=(S, S)))
        fast, general = (f(T, ZtZ, ZtXY, XYtXY) for f in (compiled.schur_complement_small, compiled.schur_complement))
        assert fast[0] and general[0]
        assert fast[1] == pytest.approx(general[1], rel=1e-13)
        for a, b in zip(fast[2:], general[2:]):
            np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-11 * np.abs(b).max())
        Gc = rng.normal(size=(4, 4))
        Gc += Gc.T
        dT = compiled.schur_gradient(T, ZtZ, ZtXY, general[3], general[4], Gc)
        np.testing.assert_allclose(compiled.schur_gradient_small(T, ZtZ, ZtXY, fast[3], fast[4], Gc), dT,
                                   rtol=1e-11, atol=1e-11 * np.abs(dT).max())


def test_unrolled_levels_report_a_matrix_that_is_not_positive_definite():
    """A NaN in T (a failed step) is reported as not positive definite, as the general loop does."""
    ZtZ, ZtXY, XYtXY = _statistics(np.random.default_rng(5), 10, 2, p1=3)
    T = np.array([[np.nan, 0.0], [0.1, 1.0]])
    assert not compiled.schur_complement_small(T, ZtZ, ZtXY, XYtXY)[0]
    assert not compiled.schur_complement(T, ZtZ, ZtXY, XYtXY)[0]
