"""The moment start of several scalar terms: each factor fitted alone, from the same statistics."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import bayeslmm as blm
from bayeslmm.fit.start import moment_start, one_factor_statistics


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
    start = moment_start(model.stats, model.layout, True)
    fit = model.fit()
    np.testing.assert_allclose(start, fit.theta, rtol=0.05)
    np.testing.assert_array_equal(fit.optsum.start, start)
    assert fit.optsum.converged


@pytest.mark.filterwarnings("ignore:boundary")  # the slope's variance is 0 here
def test_no_moment_start_with_a_vector_term(ratings):
    model = blm.LMM("y ~ x + (1 + x | user) + (1 | item)", ratings)
    assert moment_start(model.stats, model.layout, True) is None
    np.testing.assert_array_equal(model.fit().optsum.start, model.layout.start)
