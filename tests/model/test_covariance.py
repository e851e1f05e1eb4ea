"""The covariance parameters (bayeslmm.model.covariance): every map against a dense brute-force
computation, round trips θ → T → D → (sd, cor) → θ and θ ↔ the packed LKJ factor for random
terms, the names against lme4's, and the convention for a correlation next to a zero sd."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import bayeslmm as blm
from bayeslmm.inference.bootstrap import default_statistic, default_statistic_names
from bayeslmm.model import covariance as cv
from bayeslmm.model.spec import GroupingFactor, ModelSpec, RandomTerm
from bayeslmm.results.printing import random_effects_table
from conftest import PUBLIC, case_data, our_group

pytestmark = pytest.mark.filterwarnings("ignore::bayeslmm.SingularFitWarning")

SHAPES = [  # per grouping factor, the sizes of its terms: one term, (x||g) splits, several factors
    [[1]], [[2]], [[3]], [[4]], [[1, 1]], [[1, 1, 1]], [[2, 1]], [[3], [1, 2]], [[1], [4], [2, 2]],
]


def spec_with(shape, rng) -> ModelSpec:
    """A spec whose factors hold terms of the given sizes (random columns, 5 levels)."""
    factors, terms = [], []
    for f, sizes in enumerate(shape):
        names = [f"x{f}_{k}" for k in range(sum(sizes))]
        factors.append(GroupingFactor(f"g{f}", np.arange(20) % 5, tuple("abcde"), rng.normal(size=(20, sum(sizes))),
                                      tuple(names)))
        offset = 0
        for size in sizes:
            terms.append(RandomTerm(f"g{f}", tuple(names[offset:offset + size]), f, offset))
            offset += size
    return ModelSpec("y ~ 1", "y", rng.normal(size=20), np.ones((20, 1)), ("(Intercept)",), tuple(factors),
                     tuple(terms), pd.RangeIndex(20))


def random_theta(spec, rng) -> np.ndarray:
    layout = cv.theta_layout(spec)
    return np.where(layout.diagonal, rng.uniform(0.2, 2.0, layout.size), rng.normal(size=layout.size))


def brute_lower_triangle(size):
    """lme4's order written out: for each column, the diagonal and the rows below it."""
    out = []
    for c in range(size):
        out.append((c, c))
        out += [(r, c) for r in range(size) if r > c]
    return out


# --- the walk and the packings ------------------------------------------------------------


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5])
def test_the_walk_and_both_packings(size):
    assert cv.lower_triangle(size) == brute_lower_triangle(size)
    assert cv.correlation_pairs(size) == [(r, c) for r, c in brute_lower_triangle(size) if r != c]
    assert cv.n_parameters(size) == len(brute_lower_triangle(size))
    M = np.arange(size * size, dtype=float).reshape(size, size)
    assert cv.pack_columnwise(M).tolist() == [M[r, c] for r, c in brute_lower_triangle(size)]
    row_order = [(r, c) for r in range(size) for c in range(r + 1)]  # LKJCholeskyCov: row by row
    assert cv.pack_rowwise(M).tolist() == [M[r, c] for r, c in row_order]
    L = np.tril(M + 1)
    assert np.array_equal(cv.unpack_columnwise(cv.pack_columnwise(L), size), L)
    assert np.array_equal(cv.unpack_rowwise(cv.pack_rowwise(L), size), L)
    assert np.array_equal(cv.rowwise_from_columnwise(cv.pack_columnwise(L), size), cv.pack_rowwise(L))
    assert np.array_equal(cv.columnwise_from_rowwise(cv.pack_rowwise(L), size), cv.pack_columnwise(L))


def test_rowwise_packing_is_pymcs():
    """PyMC's own unpacking of LKJCholeskyCov's vector gives back the factor we packed."""
    pm = pytest.importorskip("pymc")
    L = np.tril(np.random.default_rng(1).normal(size=(4, 4)))
    assert np.allclose(pm.math.expand_packed_triangular(4, cv.pack_rowwise(L), lower=True).eval(), L)


# --- the maps, against dense computations -------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
def test_maps_agree_with_dense_computations(shape):
    rng = np.random.default_rng(len(str(shape)))
    spec = spec_with(shape, rng)
    layout, theta, sigma = cv.theta_layout(spec), random_theta(spec, rng), 1.7
    factors = cv.term_factors(spec.terms, theta)
    # each term's T is its block of the grouping factor's T (lme4's Λθ), assembled back the same
    Tf = layout.factors_T(theta)
    for term, T in zip(spec.terms, factors):
        assert np.array_equal(T, Tf[term.factor][term.columns, term.columns])
    assert all(np.array_equal(a, b) for a, b in zip(cv.grouping_factors(spec, factors), Tf))
    expected, k = [], 0
    for term, T in zip(spec.terms, factors):
        S = term.size
        D = np.array([[sigma**2 * sum(T[i, m] * T[j, m] for m in range(S)) for j in range(S)] for i in range(S)])
        assert np.allclose(cv.covariance(T, sigma), D, rtol=1e-13)
        sd, cor = cv.sd_cor(D)
        assert np.allclose(sd, [np.sqrt(D[i, i]) for i in range(S)], rtol=1e-13)
        assert np.allclose(cor, [[D[i, j] / np.sqrt(D[i, i] * D[j, j]) for j in range(S)] for i in range(S)])
        for r, c in brute_lower_triangle(S):
            expected.append(np.sqrt(D[r, r]) if r == c else D[r, c] / np.sqrt(D[r, r] * D[c, c]))
            assert layout.lower[k] == (0.0 if r == c else -np.inf)
            k += 1
    assert np.allclose(cv.sdcor_of_theta(spec.terms, theta, sigma), expected, rtol=1e-12)
    assert np.concatenate([cv.theta_lower(t.size) for t in spec.terms]).tolist() == layout.lower.tolist()


@pytest.mark.parametrize("shape", SHAPES)
def test_round_trips(shape):
    rng = np.random.default_rng(7 + len(str(shape)))
    spec = spec_with(shape, rng)
    theta, sigma = random_theta(spec, rng), 0.6
    factors = cv.term_factors(spec.terms, theta)
    assert np.array_equal(cv.theta_of_factors(factors), theta)
    # θ → T → D → (sd, cor) → θ: the Cholesky factor with a positive diagonal is unique
    natural = cv.sdcor_of_theta(spec.terms, theta, sigma)
    assert np.allclose(cv.theta_of_sdcor(spec.terms, natural, sigma), theta, rtol=1e-10, atol=1e-12)
    for term, T, block in zip(spec.terms, factors, cv.term_slices(spec.terms)):
        D = cv.covariance(T, sigma)
        sd, cor = cv.sdcor_matrices(natural[block], term.size)
        assert np.allclose(cv.covariance_of_sdcor(sd, cor), D, rtol=1e-12)
        assert np.allclose(cv.cholesky_of_sdcor(sd, cor), sigma * T, rtol=1e-10, atol=1e-12)
        assert np.allclose(cv.correlation_matrix(cv.correlations(cor), term.size), cor, rtol=1e-15)
        # θ ↔ the packed LKJ factor σT (row by row)
        packed = cv.lkj_of_theta(theta[block], term.size, sigma)
        assert np.allclose(packed, cv.pack_rowwise(sigma * T), rtol=1e-15)
        assert np.allclose(cv.theta_of_lkj(packed, term.size, sigma), theta[block], rtol=1e-14)


def test_maps_take_stacks():
    """Posterior draws: the maps work on (draws, S, S) stacks like on one matrix."""
    rng = np.random.default_rng(3)
    T = np.tril(rng.normal(size=(6, 3, 3)))
    sigma = rng.uniform(0.5, 2, 6)
    D = cv.covariance(T, sigma)
    sd, cor = cv.sd_cor(D)
    for d in range(6):
        assert np.allclose(D[d], cv.covariance(T[d], sigma[d]))
        assert np.allclose(cor[d], cv.sd_cor(D[d])[1])
    assert np.allclose(cv.covariance_of_sdcor(sd, cor), D)
    assert np.allclose(cv.theta_of_lkj(cv.lkj_of_theta(cv.pack_columnwise(T), 3, sigma), 3, sigma),
                       cv.pack_columnwise(T))


def test_invalid_sds_and_correlations_have_no_theta():
    term = RandomTerm("g", ("a", "b", "c"), 0, 0)
    valid = np.array([1.0, 0.2, 0.1, 2.0, 0.3, 0.5])
    assert cv.theta_of_sdcor([term], valid, 1.0) is not None
    assert cv.theta_of_sdcor([term], np.where(np.arange(6) == 0, -1.0, valid), 1.0) is None  # negative sd
    assert cv.theta_of_sdcor([term], np.where(np.arange(6) == 1, 1.0, valid), 1.0) is None  # |cor| = 1
    not_positive = np.array([1.0, 0.9, -0.9, 1.0, 0.9, 1.0])  # each |cor| < 1, R indefinite
    assert cv.theta_of_sdcor([term], not_positive, 1.0) is None


# --- a correlation next to a zero sd -------------------------------------------------------------


def test_correlation_next_to_a_zero_sd_is_nan_and_maps_back_as_zero():
    """lme4: as.data.frame(VarCorr) reports NaN for a correlation with a zero sd (0/0); the
    correlations between the other columns stay defined."""
    T = np.array([[1.0, 0, 0], [0, 0, 0], [0.5, 0, 2.0]])  # column 1 has sd 0
    sd, cor = cv.sd_cor(cv.covariance(T, 3.0))
    assert sd[1] == 0 and np.all(np.diag(cor) == 1)
    undefined = np.zeros((3, 3), dtype=bool)
    undefined[1, [0, 2]] = undefined[[0, 2], 1] = True
    assert np.array_equal(np.isnan(cor), undefined)
    assert np.isclose(cor[2, 0], 0.5 / np.hypot(0.5, 2.0))
    assert np.array_equal(np.isnan(cv.sdcor_vector(cv.covariance(T, 3.0))), [False, True, False, False, True, False])
    # back to D, the factor and θ: NaN read as 0, the covariance unchanged
    assert np.allclose(cv.covariance_of_sdcor(sd, cor), cv.covariance(T, 3.0))
    assert np.allclose(cv.cholesky_of_sdcor(sd, cor), 3.0 * T)
    term = RandomTerm("g", ("a", "b", "c"), 0, 0)
    theta = cv.theta_of_sdcor([term], cv.sdcor_vector(cv.covariance(T, 3.0)), 3.0)
    assert np.allclose(theta, cv.pack_columnwise(T))


def test_zero_sd_convention_in_varcorr_summary_and_bootstrap():
    """The fit's tables and bootstrap statistic follow the convention at a θ with a zero sd
    (lme4 at θ = (1.21, 0, 0) for (1 + x | Subject): sdcor NaN for the correlation only)."""
    fit = blm.LMM("Reaction ~ Days + (Days | Subject)", blm.datasets.load("sleepstudy")).fit()
    fit.theta = np.array([fit.theta[0], 0.0, 0.0])
    table = fit.varcorr()
    assert table["sdcor"].isna().tolist() == [False, False, True, False]
    assert table["sdcor"].iloc[1] == 0.0
    statistic = pd.Series(default_statistic(fit), index=default_statistic_names(fit))
    assert statistic.isna().tolist() == [False, True, False, False, False, False]


def test_summary_marks_only_the_correlations_next_to_a_zero_sd():
    """lme4 prints NaN for those correlations only; the others of the term stay numbers."""
    data = blm.datasets.load("sleepstudy").assign(D2=lambda d: (d["Days"] - 4.5) ** 2 / 10)
    fit = blm.LMM("Reaction ~ Days + (Days + D2 | Subject)", data).fit()
    fit.theta = np.array([1.0, 0.0, 0.3, 0.0, 0.0, 0.5])  # T's column order; Days has sd 0
    printed = random_effects_table(fit).iloc[:3, 4:].to_numpy().tolist()
    expected_cor = 0.3 / np.hypot(0.3, 0.5)
    assert printed == [["", ""], ["nan", ""], [f"{expected_cor:.2f}", "nan"]]


# --- names against lme4's ------------------------------------------------------------------------


def fitted(case_id):
    case = PUBLIC[case_id]
    return blm.LMM(case["formula"], case_data(case)).fit(case["method"])


def test_confint_and_bootstrap_names_are_lme4s():
    fit = fitted("sleepstudy_slope_reml")
    names = PUBLIC["sleepstudy_profile_ci"]["params"]  # lme4's confint(fit, oldNames = FALSE)
    assert cv.sdcor_names(fit.spec) + [cv.SIGMA] + list(fit.spec.fixef_names) == names
    assert default_statistic_names(fit) == names
    assert list(fit.confint(method="wald").index) == names


@pytest.mark.parametrize("case_id", ["sleepstudy_slope_reml", "sleepstudy_uncorr_reml", "pastes_nested_reml",
                                     "penicillin_crossed_reml"])
def test_varcorr_rows_and_term_labels_are_lme4s(case_id):
    """grp (R's make.unique: 'Subject.1' for the second term of (Days || Subject)), var1, var2."""
    fit = fitted(case_id)
    rows = [key for term, label in zip(fit.spec.terms, cv.term_labels(fit.spec.terms))
            for key, _ in cv.varcorr_rows(term, label)] + [("Residual", None, None)]
    expected = [(our_group(r["grp"]), r["var1"], r["var2"]) for r in PUBLIC[case_id]["varcorr"]]
    assert rows == expected
    table = fit.varcorr()[["grp", "var1", "var2"]].fillna("")
    assert table.to_numpy().tolist() == [[v or "" for v in row] for row in expected]


def test_theta_names_are_lme4s():
    """lme4's names(getME(fit, "theta")) for (1 + x | Subject)."""
    fit = fitted("sleepstudy_slope_reml")
    assert list(fit.layout.names) == ["Subject.(Intercept)", "Subject.Days.(Intercept)", "Subject.Days"]


def test_posterior_coords_name_every_column_and_pair():
    spec = fitted("sleepstudy_slope_reml").spec
    labels = cv.term_labels(spec.terms)
    coords = cv.random_effect_coords(spec, labels)
    assert coords[cv.effect_dim("Subject")] == ["(Intercept)", "Days"]
    assert coords[cv.pair_dim("Subject")] == ["(Intercept),Days"]
    assert len(coords["Subject"]) == 18
    assert cv.term_pairs(spec.terms[0]) == [(1, 0)]
