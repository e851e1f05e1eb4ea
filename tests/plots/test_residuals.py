"""Residual diagnostics hold the residuals, fitted values, sorted residuals against normal
quantiles, the random effects' estimates and the residuals' medians per group."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plot_checks
import pytest
from plot_checks import artists
from scipy import stats as st

import bayeslmm as blm
from bayeslmm.errors import LMMError
from bayeslmm.plots import (
    caterpillar,
    qq_ranef,
    qq_residuals,
    residual_diagnostics,
    residuals_by_group,
    residuals_vs_fitted,
)
from bayeslmm.plots.residuals import normal_quantiles

pytestmark = pytest.mark.filterwarnings("ignore:.*BLAS.*", "ignore::bayeslmm.PosteriorWarning")


@pytest.fixture(scope="module")
def sleep_fit():
    return plot_checks.sleep_fit()


def points(ax):
    (line,) = artists(ax, "data")
    return line.get_xdata(), line.get_ydata()


def test_residuals_against_fitted(sleep_fit):
    x, y = points(residuals_vs_fitted(sleep_fit).axes[0])
    np.testing.assert_allclose(x, sleep_fit.fitted(), rtol=1e-12)
    np.testing.assert_allclose(y, sleep_fit.residuals(), rtol=1e-12)


def test_normal_quantiles_are_r_ppoints():
    # R: qnorm(ppoints(5)) uses a = 3/8; qnorm(ppoints(12)) a = 1/2
    np.testing.assert_allclose(normal_quantiles(5), st.norm.ppf((np.arange(1, 6) - 0.375) / 5.25))
    np.testing.assert_allclose(normal_quantiles(12), st.norm.ppf((np.arange(1, 13) - 0.5) / 12))
    assert normal_quantiles(7)[3] == 0.0  # the median


def test_qq_of_residuals_is_sorted_residuals_and_a_line_through_the_quartiles(sleep_fit):
    ax = qq_residuals(sleep_fit).axes[0]
    x, y = points(ax)
    np.testing.assert_allclose(y, np.sort(sleep_fit.residuals()), rtol=1e-12)
    np.testing.assert_allclose(x, normal_quantiles(180))
    (line,) = artists(ax, "reference")
    quartiles = np.quantile(sleep_fit.residuals(), [0.25, 0.75])
    ends = np.interp(st.norm.ppf([0.25, 0.75]), line.get_xdata(), line.get_ydata())
    np.testing.assert_allclose(ends, quartiles)


def test_qq_of_each_random_effect(sleep_fit):
    fig = qq_ranef(sleep_fit)
    ranef = sleep_fit.ranef()
    for ax, term in zip(fig.axes, ["(Intercept)", "Days"]):
        x, y = points(ax)
        np.testing.assert_allclose(y, np.sort(ranef.loc[ranef["term"] == term, "condval"]), rtol=1e-12)
        assert len(x) == 18


def test_residuals_by_group_medians():
    fit = plot_checks.penicillin_fit()
    ax = residuals_by_group(fit, "plate").axes[0]
    medians = [line.get_ydata()[0] for line in artists(ax, "estimate")]
    plates = fit.spec.design.data.loc[fit.spec.row_labels, "plate"].astype(str)
    expected = pd.Series(fit.residuals().to_numpy(), index=plates.to_numpy()).groupby(level=0).median()
    labels = [label.get_text() for label in ax.get_xticklabels()]
    assert len(medians) == 24 and labels == sorted(labels)
    np.testing.assert_allclose(medians, expected.loc[labels], rtol=1e-12)
    with pytest.raises(LMMError, match="one of the model's grouping factors: plate, sample"):
        residuals_by_group(fit, "batch")


def test_all_diagnostics_in_one_figure(sleep_fit):
    fig = residual_diagnostics(sleep_fit)
    assert [ax.get_title() for ax in fig.axes] == ["Residuals vs fitted", "Residuals", "Residuals by Subject",
                                                   "Subject: (Intercept)", "Subject: Days"]
    assert len(artists(fig.axes[2], "estimate")) == 18


def test_posterior_residuals_are_y_minus_the_posterior_mean():
    posterior = plot_checks.sleep_posterior()
    x, y = points(residual_diagnostics(posterior).axes[0])
    mean = posterior.predict()["mean"].to_numpy()
    np.testing.assert_allclose(x, mean, rtol=1e-12)
    np.testing.assert_allclose(y, posterior.spec.observed - mean, rtol=1e-12)


def test_a_linear_model_has_no_random_effects_to_plot():
    fit = blm.LMM("Reaction ~ Days", blm.datasets.load("sleepstudy")).fit()
    assert [ax.get_title() for ax in residual_diagnostics(fit).axes] == ["Residuals vs fitted", "Residuals"]
    for plot in (qq_ranef, caterpillar):
        with pytest.raises(LMMError, match="no random effects to plot"):
            plot(fit)
