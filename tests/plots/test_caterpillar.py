"""The caterpillar plot holds ranef()'s estimates and interval ends, sorted per factor."""
from __future__ import annotations

import numpy as np
import plot_checks
import pytest
from plot_checks import artists
from scipy import stats as st

from bayeslmm.errors import LMMError
from bayeslmm.plots import caterpillar

pytestmark = pytest.mark.filterwarnings("ignore:.*BLAS.*", "ignore::bayeslmm.PosteriorWarning")


@pytest.fixture(scope="module")
def sleep_fit():
    return plot_checks.sleep_fit()


@pytest.fixture(scope="module")
def sleep_posterior():
    return plot_checks.sleep_posterior()


@pytest.fixture(scope="module")
def penicillin_fit():
    return plot_checks.penicillin_fit()


def panel_data(ax):
    """(levels top to bottom as drawn, estimates, interval ends) of one panel."""
    (points,) = artists(ax, "estimate")
    (intervals,) = artists(ax, "interval")
    levels = [label.get_text() for label in ax.get_yticklabels()]
    segments = np.array(intervals.get_segments())  # (levels, 2 ends, xy)
    return levels, points.get_xdata(), segments[:, 0, 0], segments[:, 1, 0], points.get_ydata(), segments[:, 0, 1]


@pytest.mark.parametrize("level", [0.95, 0.8])
def test_intervals_are_conditional_modes_plus_minus_z_condsd(sleep_fit, level):
    fig = caterpillar(sleep_fit, level=level)
    ranef = sleep_fit.ranef()
    z = st.norm.ppf(0.5 + level / 2)
    assert [ax.get_title() for ax in fig.axes] == ["Subject: (Intercept)", "Subject: Days"]
    first_levels = None
    for ax, term in zip(fig.axes, ["(Intercept)", "Days"]):
        levels, estimate, lower, upper, y_points, y_segments = panel_data(ax)
        expected = ranef[ranef["term"] == term].set_index("grp").loc[levels]
        assert len(levels) == 18
        np.testing.assert_allclose(estimate, expected["condval"], rtol=1e-12)
        np.testing.assert_allclose(lower, expected["condval"] - z * expected["condsd"], rtol=1e-12)
        np.testing.assert_allclose(upper, expected["condval"] + z * expected["condsd"], rtol=1e-12)
        np.testing.assert_array_equal(y_points, np.arange(18))
        np.testing.assert_array_equal(y_segments, np.arange(18))
        first_levels = first_levels or levels
        assert levels == first_levels  # a row is one level in every panel of the factor
    intercepts = ranef[ranef["term"] == "(Intercept)"].set_index("grp").loc[first_levels, "condval"]
    assert np.all(np.diff(intercepts) >= 0)  # sorted by the first term


def test_one_panel_per_grouping_factor_of_crossed_effects(penicillin_fit):
    fig = caterpillar(penicillin_fit)
    ranef = penicillin_fit.ranef()
    assert [ax.get_title() for ax in fig.axes] == ["plate: (Intercept)", "sample: (Intercept)"]
    for ax, name in zip(fig.axes, ["plate", "sample"]):
        levels, estimate, *_ = panel_data(ax)
        assert sorted(levels) == sorted(ranef.loc[ranef["grpvar"] == name, "grp"])
        assert np.all(np.diff(estimate) >= 0)


def test_posterior_intervals(sleep_posterior):
    fig = caterpillar(sleep_posterior, level=0.9)
    ranef = sleep_posterior.ranef(level=0.9)
    for ax, term in zip(fig.axes, ["(Intercept)", "Days"]):
        levels, estimate, lower, upper, *_ = panel_data(ax)
        expected = ranef[ranef["term"] == term].set_index("grp").loc[levels]
        np.testing.assert_allclose(estimate, expected["mean"], rtol=1e-12)
        np.testing.assert_allclose(lower, expected["l-90% CI"], rtol=1e-12)
        np.testing.assert_allclose(upper, expected["u-90% CI"], rtol=1e-12)


def test_refuses_what_is_not_a_fit():
    with pytest.raises(LMMError, match="plots take a fit"):
        caterpillar("not a fit")
