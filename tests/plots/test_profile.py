"""The profile zeta plot holds the profile's traces, which cross ±z at confint()'s profile ends."""
from __future__ import annotations

import numpy as np
import plot_checks
import pytest
from plot_checks import artists
from scipy import stats as st

import bayeslmm as blm
from bayeslmm.errors import LMMError
from bayeslmm.inference.profile import profile
from bayeslmm.plots import profile_zeta

pytestmark = pytest.mark.filterwarnings("ignore:.*BLAS.*", "ignore::bayeslmm.PosteriorWarning")


@pytest.fixture(scope="module")
def dyestuff_fit():
    return blm.LMM("Yield ~ 1 + (1 | Batch)", blm.datasets.load("Dyestuff")).fit()


def test_the_curves_are_the_profile_and_cross_z_at_the_confint_ends(dyestuff_fit):
    fig = profile_zeta(dyestuff_fit, level=0.99, points=12)
    traces = profile(dyestuff_fit, level=0.99, points=12)
    ends = dyestuff_fit.confint(level=0.95)
    z = st.norm.ppf(0.975)
    assert [ax.get_title() for ax in fig.axes] == list(ends.index)
    for ax in fig.axes:
        (curve,) = artists(ax, "estimate")
        trace = traces[traces["parameter"] == ax.get_title()]
        np.testing.assert_array_equal(curve.get_xdata(), trace["value"])
        np.testing.assert_array_equal(curve.get_ydata(), trace["zeta"])
        assert np.all(np.diff(curve.get_ydata()) > 0)  # ζ increases through the estimate
        # linear interpolation between 25 points of a smooth curve: 1% of the interval's width
        crossings = np.interp([-z, z], curve.get_ydata(), curve.get_xdata())
        width = ends.loc[ax.get_title(), "upper"] - ends.loc[ax.get_title(), "lower"]
        np.testing.assert_allclose(crossings, ends.loc[ax.get_title()], atol=0.01 * width)
        assert len(artists(ax, "reference")) == 10  # ±z of five levels


def test_the_profile_is_zero_at_the_ml_estimates_and_reaches_the_level(dyestuff_fit):
    traces = profile(dyestuff_fit, level=0.9, points=3)
    ml = dyestuff_fit.refit("ML")
    at_zero = traces[traces["zeta"] == 0].set_index("parameter")["value"]
    np.testing.assert_allclose(at_zero["sigma"], ml.sigma, rtol=1e-6)
    np.testing.assert_allclose(at_zero["(Intercept)"], ml.fixef()["(Intercept)"], rtol=1e-8)
    extremes = traces.groupby("parameter")["zeta"].agg(["min", "max"])
    np.testing.assert_allclose(extremes["max"], st.norm.ppf(0.95), rtol=1e-4)
    np.testing.assert_allclose(extremes.drop("sd_(Intercept)|Batch")["min"], -st.norm.ppf(0.95), rtol=1e-4)


def test_a_posterior_has_no_profile():
    with pytest.raises(LMMError, match="REML/ML fit"):
        profile_zeta(plot_checks.sleep_posterior())


def test_99_percent_profile_intervals_of_a_correlation_contain_the_95_percent_ones():
    """The 99% profile of sleepstudy's correlation reaches its bracket (its search used to
    warm-start from the boundary probe at -1 and stall)."""
    fit = plot_checks.sleep_fit()
    wide, narrow = fit.confint(level=0.99), fit.confint(level=0.95)
    assert np.isfinite(wide.to_numpy()).all()
    assert (wide["lower"] < narrow["lower"]).all() and (wide["upper"] > narrow["upper"]).all()
