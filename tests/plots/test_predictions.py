"""Prediction plots hold Xβ (+ Zb) on the grid with Wald or posterior intervals computed here
from vcov() or the draws, one curve per value of `by` or per group."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plot_checks
import pytest
from plot_checks import artists
from scipy import stats as st

import bayeslmm as blm
from bayeslmm.errors import LMMError
from bayeslmm.plots import conditional_effects, predictions
from conftest import REPO

pytestmark = pytest.mark.filterwarnings("ignore:.*BLAS.*", "ignore::bayeslmm.PosteriorWarning")


@pytest.fixture(scope="module")
def sleep_fit():
    return plot_checks.sleep_fit()


@pytest.fixture(scope="module")
def sitka_fit():
    return blm.LMM("size ~ time * treat + (1 | tree)", blm.datasets.load("Sitka")).fit()


def band_ends(band, xs):
    """The lowest and highest y of a fill_between band at each x."""
    vertices = band.get_paths()[0].vertices
    low = [vertices[np.isclose(vertices[:, 0], x), 1].min() for x in xs]
    high = [vertices[np.isclose(vertices[:, 0], x), 1].max() for x in xs]
    return np.array(low), np.array(high)


@pytest.mark.parametrize("level", [0.95, 0.5])
def test_population_curve_with_the_wald_interval_of_x_beta(sleep_fit, level):
    ax = predictions(sleep_fit, level=level, points=10).axes[0]
    (line,) = artists(ax, "estimate")
    (band,) = artists(ax, "interval")
    days = np.linspace(0, 9, 10)
    X = np.column_stack([np.ones(10), days])
    estimate = X @ sleep_fit.fixef().to_numpy()
    se = np.sqrt(np.einsum("ij,jk,ik->i", X, sleep_fit.vcov().to_numpy(), X))
    z = st.norm.ppf(0.5 + level / 2)
    np.testing.assert_allclose(line.get_xdata(), days)
    np.testing.assert_allclose(line.get_ydata(), estimate, rtol=1e-10)
    low, high = band_ends(band, days)
    np.testing.assert_allclose(low, estimate - z * se, rtol=1e-10)
    np.testing.assert_allclose(high, estimate + z * se, rtol=1e-10)
    (data,) = artists(ax, "data")
    np.testing.assert_array_equal(data.get_ydata(), sleep_fit.spec.observed)


def test_group_curves_are_the_groups_coefficients(sleep_fit):
    ax = predictions(sleep_fit, groups=["308", "309"], points=5).axes[0]
    lines = artists(ax, "estimate")
    coef = sleep_fit.coef()["Subject"]
    assert len(lines) == 2 and len(artists(ax, "interval")) == 2
    for line, subject in zip(lines, ["308", "309"]):
        expected = coef.loc[subject, "(Intercept)"] + coef.loc[subject, "Days"] * line.get_xdata()
        np.testing.assert_allclose(line.get_ydata(), expected, rtol=1e-10)
    assert len(artists(ax, "data")[0].get_ydata()) == 20  # the two subjects' 10 days each
    assert [text.get_text() for text in ax.get_legend().get_texts()] == ["308", "309"]


def test_a_second_predictor_gives_one_curve_per_level(sitka_fit):
    table = conditional_effects(sitka_fit, by="treat", points=4)
    beta = sitka_fit.fixef()
    ozone = table[table["treat"] == "ozone"]
    expected = (beta["(Intercept)"] + beta["treat[ozone]"] + (beta["time"] + beta["time:treat[ozone]"]) * ozone["time"])
    np.testing.assert_allclose(ozone["estimate"], expected, rtol=1e-10)
    ax = predictions(sitka_fit, by="treat").axes[0]
    assert len(artists(ax, "estimate")) == 2 and len(artists(ax, "interval")) == 2
    assert len(artists(ax, "data")[0].get_xdata()) == sitka_fit.nobs


def test_a_numeric_second_predictor_at_its_mean_and_mean_plus_minus_sd(sitka_fit):
    table = conditional_effects(sitka_fit, x="treat", by="time")
    time = sitka_fit.spec.design.data["time"]
    np.testing.assert_allclose(sorted(table["time"].unique()), time.mean() + np.array([-1, 0, 1]) * time.std())
    ax = predictions(sitka_fit, x="treat", by="time").axes[0]
    points = artists(ax, "estimate")
    assert len(points) == 3 and all(len(p.get_xdata()) == 2 for p in points)  # two treatments each
    np.testing.assert_allclose(np.concatenate([p.get_ydata() for p in points]), table["estimate"], rtol=1e-12)


def test_posterior_curve_is_the_mean_and_quantiles_of_the_draws():
    posterior = plot_checks.sleep_posterior()
    ax = predictions(posterior, level=0.9, points=4).axes[0]
    (line,) = artists(ax, "estimate")
    (band,) = artists(ax, "interval")
    beta = posterior.posterior["beta"].values.reshape(-1, 2)
    days = np.linspace(0, 9, 4)
    draws = beta[:, :1] + beta[:, 1:] * days
    np.testing.assert_allclose(line.get_ydata(), draws.mean(axis=0), rtol=1e-10)
    low, high = band_ends(band, days)
    np.testing.assert_allclose(low, np.quantile(draws, 0.05, axis=0), rtol=1e-10)
    np.testing.assert_allclose(high, np.quantile(draws, 0.95, axis=0), rtol=1e-10)


def test_unknown_predictor_or_group_is_an_error(sleep_fit):
    with pytest.raises(LMMError, match="x must be a predictor of the fixed part: one of Days"):
        predictions(sleep_fit, x="Subject")
    with pytest.raises(LMMError, match="not a level of 'Subject'"):
        predictions(sleep_fit, groups=["999"])


def test_a_nested_groups_curve_adds_its_own_and_its_parents_random_effects():
    """y ~ x + (1 | a/b/c): a level of b:a is drawn with b:a's and a's effects; c:b:a's, not
    named, are at a new level (0)."""


    data = pd.read_csv(REPO / "tests" / "data" / "nested3.csv")
    fit = blm.LMM("y ~ x + (1 | a/b/c)", data).fit()
    level = fit.spec.factors[1].levels[0]  # factors by decreasing levels: c:b:a, b:a, a
    assert fit.spec.factors[1].name == "b:a"
    table = conditional_effects(fit, groups=[level], group="b:a", points=3)
    ranef = fit.ranef().set_index(["grpvar", "grp"])["condval"]
    b, a = level.split(":")
    shift = ranef[("b:a", level)] + ranef[("a", a)]
    beta = fit.fixef()
    np.testing.assert_allclose(table["estimate"], beta["(Intercept)"] + beta["x"] * table["x"] + shift, rtol=1e-10)


def test_posterior_group_curve_adds_the_groups_draws_of_b():
    posterior = plot_checks.sleep_posterior()
    table = conditional_effects(posterior, groups="309", level=0.8, points=3)
    beta = posterior.posterior["beta"].values.reshape(-1, 2)
    b = posterior.posterior["b_Subject"].sel(Subject="309").values.reshape(-1, 2)
    days = np.linspace(0, 9, 3)
    draws = (beta[:, :1] + b[:, :1]) + (beta[:, 1:] + b[:, 1:]) * days
    np.testing.assert_allclose(table["estimate"], draws.mean(axis=0), rtol=1e-10)
    np.testing.assert_allclose(table["lower"], np.quantile(draws, 0.1, axis=0), rtol=1e-10)
    np.testing.assert_allclose(table["upper"], np.quantile(draws, 0.9, axis=0), rtol=1e-10)
