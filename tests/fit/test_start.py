"""The moment start of several scalar terms: each factor fitted alone, from the same statistics."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import bayeslmm as blm
from bayeslmm.fit import optimize
from bayeslmm.fit.start import SMALLEST_START, moment_start, one_factor_statistics


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
