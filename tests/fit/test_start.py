"""The moment start of several scalar terms: each factor fitted alone, from the same statistics."""
from __future__ import annotations

import itertools
import warnings

import numpy as np
import pandas as pd
import pytest

import bayeslmm as blm
from bayeslmm.fit import optimize
from bayeslmm.fit.start import SMALLEST_START, absorbed_shares, moment_start, one_factor_statistics
from bayeslmm.linalg import gradient as gr


@pytest.fixture(scope="module")
def ratings() -> pd.DataFrame:
    """400 users × 150 items, 6,000 ratings; sds 0.5 (users), 0.7 (items), 1 (residual)."""
    rng = np.random.default_rng(12)
    data = pd.DataFrame({"user": rng.integers(0, 400, 6000), "item": rng.integers(0, 150, 6000)})
    data["x"] = rng.normal(size=len(data))
    data["y"] = (0.2 * data.x + 0.5 * rng.normal(size=400)[data.user] + 0.7 * rng.normal(size=150)[data.item]
                 + rng.normal(size=len(data)))
    return data.assign(user=data.user.map("u{}".format), item=data.item.map("i{}".format))


def test_one_factor_statistics_are_those_of_the_model_with_that_factor_alone(ratings):
    stats = blm.LMM("y ~ x + (1 | user) + (1 | item)", ratings).stats
    for factor, formula in [(0, "y ~ x + (1 | user)"), (1, "y ~ x + (1 | item)")]:
        alone = blm.LMM(formula, ratings).stats
        mine = one_factor_statistics(stats, factor)
        np.testing.assert_allclose(mine.ZtZ1, alone.ZtZ1, rtol=1e-12)
        np.testing.assert_allclose(mine.ZtXY1, alone.ZtXY1, rtol=1e-12)
        assert mine.n_factors == 1 and mine.levels == alone.levels


def test_the_moment_start_of_crossed_intercepts_is_near_the_optimum_and_is_used(ratings):
    model = blm.LMM("y ~ x + (1 | user) + (1 | item)", ratings)
    start = moment_start(model.stats, model.layout, True, optimize.fit_theta)
    fit = model.fit()
    np.testing.assert_allclose(start, fit.theta, rtol=0.05)
    np.testing.assert_array_equal(fit.optsum.start, start)
    assert fit.optsum.converged


def test_one_factor_statistics_of_a_vector_term_are_those_of_the_factor_alone(ratings):
    stats = blm.LMM("y ~ x + (1 | user) + (1 + x | item)", ratings).stats
    alone = blm.LMM("y ~ x + (1 + x | item)", ratings).stats
    mine = one_factor_statistics(stats, 1, (1, 2))
    np.testing.assert_allclose(mine.ZtZ1, alone.ZtZ1, rtol=1e-12)
    np.testing.assert_allclose(mine.ZtXY1, alone.ZtXY1, rtol=1e-12)


def test_the_moment_start_of_crossed_vector_terms_is_near_the_optimum_and_is_used():
    """Subjects × items with correlated slopes: the start from each factor alone has its diagonal
    within 20% of θ̂, and L-BFGS-B from it needs fewer evaluations than from lme4's start."""
    rng = np.random.default_rng(3)
    subj, item = (a.ravel() for a in np.meshgrid(np.arange(40), np.arange(30), indexing="ij"))
    x = rng.choice([-0.5, 0.5], subj.size)
    b_subj, b_item = rng.normal(size=(40, 2)) * [0.8, 0.4], rng.normal(size=(30, 2)) * [0.5, 0.3]
    y = 1 + 0.3 * x + b_subj[subj, 0] + b_subj[subj, 1] * x + b_item[item, 0] + b_item[item, 1] * x
    data = pd.DataFrame({"y": y + rng.normal(size=subj.size), "x": x, "subj": subj, "item": item})
    model = blm.LMM("y ~ x + (1 + x | subj) + (1 + x | item)", data)
    start = moment_start(model.stats, model.layout, True, optimize.fit_theta)
    fit = model.fit()
    diagonal = model.layout.diagonal
    np.testing.assert_allclose(start[diagonal], fit.theta[diagonal], rtol=0.2)
    np.testing.assert_array_equal(fit.optsum.start, start)
    assert fit.optsum.converged
    lme4_start = optimize.fit_theta(model.stats, model.layout, True, start=model.layout.start)
    assert fit.loglik == pytest.approx(-0.5 * lme4_start.deviance, abs=1e-7)
    assert fit.optsum.n_evaluations < lme4_start.n_evaluations


def test_a_variance_fitted_as_0_alone_starts_off_the_bound_and_the_fit_finds_the_optimum():
    """A random slope without variance: the start keeps every diagonal at least SMALLEST_START off
    the bound (a start on it would stay there); the optimum is the one from lme4's start."""
    rng = np.random.default_rng(4)
    subj, item = (a.ravel() for a in np.meshgrid(np.arange(40), np.arange(30), indexing="ij"))
    x = rng.choice([-0.5, 0.5], subj.size)
    y = 1 + 0.3 * x + 0.8 * rng.normal(size=40)[subj] + 0.5 * rng.normal(size=30)[item] + rng.normal(size=subj.size)
    data = pd.DataFrame({"y": y, "x": x, "subj": subj, "item": item})
    model = blm.LMM("y ~ x + (1 + x | subj) + (1 | item)", data)
    start = moment_start(model.stats, model.layout, True, optimize.fit_theta)
    diagonal = model.layout.diagonal
    assert np.all(start[diagonal] >= SMALLEST_START * model.layout.scale[diagonal])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit, lme4_start = model.fit(), optimize.fit_theta(model.stats, model.layout, True, start=model.layout.start)
    assert fit.optsum.deviance <= lme4_start.deviance + 1e-7


def _schools(seed: int = 14) -> pd.DataFrame:
    """40 schools × 4 classes × 15 pupils, 50 neighbourhoods crossed with schools (bench_crossed's
    three-factor design): classes nested in schools, both crossed with neighbourhoods."""
    rng = np.random.default_rng(seed)
    school, klass = np.repeat(np.arange(40), 60), np.repeat(np.arange(160), 15)
    hood = rng.integers(0, 50, school.size)
    ses = rng.normal(size=school.size)
    y = (1 + 0.3 * ses + 0.6 * rng.normal(size=40)[school] + 0.2 * rng.normal(size=40)[school] * ses
         + 0.4 * rng.normal(size=160)[klass] + 0.3 * rng.normal(size=50)[hood] + rng.normal(size=school.size))
    return pd.DataFrame({"y": y, "ses": ses, "school": school, "class": klass, "hood": hood}).astype(
        {"school": str, "class": str, "hood": str})


def _shares_from_counts(data: pd.DataFrame, f: str, g: str) -> tuple[float, float]:
    """a_fg and r_fg of fit/start.py's docstring, from the table of counts n_jk itself."""
    counts = pd.crosstab(data[f], data[g]).to_numpy(dtype=float)
    n_j, n_k, n = counts.sum(axis=1), counts.sum(axis=0), counts.sum()
    share = (counts**2).sum(axis=1) / n_j**2
    residual_like = np.where(n_j > 1, (1 - share) / np.maximum(n_j - 1, 1), 0.0)
    absorbed = max(0.0, np.sum(n_j / n * (share - residual_like)) - np.sum((n_k / n) ** 2))
    return absorbed, np.sum(n_j * (1 - share)) / np.sum(n_j - 1)


def test_absorbed_shares_are_those_of_the_table_of_counts():
    """The shares from the cross-products equal those computed from pd.crosstab of the data, for
    every ordered pair of the three factors (nested and crossed): classes alone take all of their
    school's variance but the intercept's part, and none into their residual."""
    data = _schools()
    model = blm.LMM("y ~ ses + (1 + ses | school) + (1 | class) + (1 | hood)", data)
    absorbed, within = absorbed_shares(model.stats, model.layout.factor_sizes)
    names = [factor.name for factor in model.spec.factors]
    for f, g in itertools.permutations(range(3), 2):
        expected = _shares_from_counts(data, names[f], names[g])
        assert (absorbed[f, g], within[f, g]) == pytest.approx(expected, rel=1e-12, abs=1e-14), (names[f], names[g])
    klass, school = names.index("class"), names.index("school")
    assert absorbed[klass, school] == pytest.approx(1 - 1 / 40) and within[klass, school] == 0


def test_a_fully_crossed_design_absorbs_nothing_into_the_factors_covariance():
    """Every subject meets every item once: S_j = 1/n_j and the intercept takes the rest, so a = 0
    and r = 1 (the moment start of crossed factors, as before nested ones were matched)."""
    subj, item = (a.ravel() for a in np.meshgrid(np.arange(20), np.arange(12), indexing="ij"))
    data = pd.DataFrame({"y": np.random.default_rng(2).normal(size=subj.size), "subj": subj, "item": item})
    model = blm.LMM("y ~ 1 + (1 | subj) + (1 | item)", data)
    absorbed, within = absorbed_shares(model.stats, model.layout.factor_sizes)
    np.testing.assert_allclose(absorbed, 0.0, atol=1e-15)
    np.testing.assert_allclose(within, 1.0 - np.eye(2), rtol=1e-14)


def test_the_moment_start_of_nested_and_crossed_factors_is_near_the_optimum():
    """Classes in schools crossed with neighbourhoods: with the nested shares the start's deviance
    is within 10 of the optimum (without them, 102: classes alone carry their school's variance),
    and L-BFGS-B from it needs fewer evaluations than from lme4's start."""
    model = blm.LMM("y ~ ses + (1 + ses | school) + (1 | class) + (1 | hood)", _schools())
    stats, layout = model.stats, model.layout
    start = moment_start(stats, layout, True, optimize.fit_theta)
    fit = model.fit()
    np.testing.assert_array_equal(fit.optsum.start, start)
    assert gr.objective(start, stats, layout, True) - fit.optsum.deviance < 10
    lme4_start = optimize.fit_theta(stats, layout, True, start=layout.start)
    assert fit.optsum.deviance <= lme4_start.deviance + 1e-7
    assert fit.optsum.n_evaluations < lme4_start.n_evaluations
