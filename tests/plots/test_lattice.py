"""Lattice and spaghetti plots hold each group's data, its fitted values and the population's."""
from __future__ import annotations

import numpy as np
import plot_checks
import pytest
from plot_checks import artists

import bayeslmm as blm
from bayeslmm.errors import LMMError
from bayeslmm.plots import lattice, spaghetti

pytestmark = pytest.mark.filterwarnings("ignore:.*BLAS.*", "ignore::bayeslmm.PosteriorWarning")


@pytest.fixture(scope="module")
def sleep_fit():
    return plot_checks.sleep_fit()


def by_subject(fit, values, subject):
    """The values of one subject's rows, in the order of Days."""
    data = fit.spec.design.data
    rows = (data["Subject"].astype(str) == subject).to_numpy()
    order = np.argsort(data.loc[rows, "Days"].to_numpy(), kind="stable")
    return np.asarray(values)[rows][order]


def test_each_panel_holds_the_groups_data_and_fitted_lines(sleep_fit):
    fig = lattice(sleep_fit)
    population = sleep_fit.predict(include_re=False)
    assert [ax.get_title() for ax in fig.axes] == list(sleep_fit.spec.factors[0].levels)
    for ax in fig.axes:
        subject = ax.get_title()
        (data,) = artists(ax, "data")
        (group,) = artists(ax, "group")
        (pop,) = artists(ax, "population")
        np.testing.assert_array_equal(data.get_xdata(), np.arange(10))
        np.testing.assert_array_equal(data.get_ydata(), by_subject(sleep_fit, sleep_fit.spec.observed, subject))
        np.testing.assert_allclose(group.get_ydata(), by_subject(sleep_fit, sleep_fit.fitted(), subject), rtol=1e-12)
        np.testing.assert_allclose(pop.get_ydata(), by_subject(sleep_fit, population, subject), rtol=1e-12)


def test_chosen_levels_and_a_model_without_predictors():
    fit = blm.LMM("strength ~ 1 + (1 | batch/cask)", blm.datasets.load("Pastes")).fit()
    with pytest.raises(LMMError, match="no predictor in its fixed part"):
        lattice(fit)  # no predictor to plot along
    fit = blm.LMM("size ~ time * treat + (1 | tree)", blm.datasets.load("Sitka")).fit()
    fig = lattice(fit, levels=["1", "2", "3"])
    assert [ax.get_title() for ax in fig.axes] == ["1", "2", "3"]
    assert all(len(artists(ax, "data")[0].get_xdata()) == 5 for ax in fig.axes)
    assert len(lattice(fit).axes) == 36  # of 79 trees, the first 36 unless levels= says
    with pytest.raises(LMMError, match="'999' not a level of 'tree'"):
        lattice(fit, levels=["1", "999"])


def test_spaghetti_has_a_fitted_line_per_group_and_the_population_curve(sleep_fit):
    ax = spaghetti(sleep_fit, show_data=True).axes[0]
    lines = artists(ax, "group")
    assert len(lines) == 18
    fitted = np.sort(np.concatenate([line.get_ydata() for line in lines]))
    np.testing.assert_allclose(fitted, np.sort(sleep_fit.fitted()), rtol=1e-12)
    (pop,) = artists(ax, "population")
    beta = sleep_fit.fixef()
    np.testing.assert_allclose(pop.get_ydata(), beta["(Intercept)"] + beta["Days"] * pop.get_xdata(), rtol=1e-12)
    assert len(artists(ax, "interval")) == 1
    assert len(artists(ax, "data")[0].get_ydata()) == 180


def test_posterior_lines_are_posterior_means():
    posterior = plot_checks.sleep_posterior()
    ax = lattice(posterior, levels="308").axes[0]
    (group,) = artists(ax, "group")
    np.testing.assert_allclose(group.get_ydata(), by_subject(posterior, posterior.predict()["mean"], "308"),
                               rtol=1e-12)
