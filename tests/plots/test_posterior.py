"""Posterior plots (arviz-plots) hold the posterior: the forest's intervals are the draws'
quantiles, each trace line a chain's draws, the predictive lines the number asked for."""
from __future__ import annotations

import numpy as np
import plot_checks
import pytest
from plot_checks import artists

from bayeslmm.errors import LMMError
from bayeslmm.plots import forest, posterior_predictive, trace
from bayeslmm.plots.posterior import parameter_names

pytestmark = pytest.mark.filterwarnings("ignore:.*BLAS.*", "ignore::bayeslmm.PosteriorWarning")


@pytest.fixture(scope="module")
def posterior():
    return plot_checks.sleep_posterior()


def horizontal_segments(fig) -> list[tuple[float, float]]:
    """The (left, right) ends of every two-point horizontal line: the forest's intervals."""
    return sorted((float(min(x)), float(max(x))) for ax in fig.axes for line in ax.lines
                  if len(x := line.get_xdata()) == 2 and np.ptp(line.get_ydata()) == 0)


def quantile_pairs(draws: np.ndarray, probability: float) -> list[tuple[float, float]]:
    tail = (1 - probability) / 2
    return [(float(np.quantile(d, tail)), float(np.quantile(d, 1 - tail))) for d in draws]


@pytest.mark.parametrize("level", [0.95, 0.8])
def test_forest_intervals_are_the_draws_quantiles(posterior, level):
    beta = posterior.posterior["beta"].values.reshape(-1, 2).T
    expected = sorted(quantile_pairs(beta, level) + quantile_pairs(beta, 0.5))
    np.testing.assert_allclose(horizontal_segments(forest(posterior, part="fixed", level=level)), expected,
                               rtol=1e-10)


def test_forest_of_the_variance_components(posterior):
    assert parameter_names(posterior, "variance") == ["sigma", "sd_Subject", "corr_Subject"]
    draws = [posterior.posterior[name].values.reshape(400, -1).T for name in ("sigma", "sd_Subject", "corr_Subject")]
    draws = np.concatenate(draws)  # σ, two sds, one correlation
    expected = sorted(quantile_pairs(draws, 0.95) + quantile_pairs(draws, 0.5))
    np.testing.assert_allclose(horizontal_segments(forest(posterior, part="variance")), expected, rtol=1e-10)


def test_trace_lines_are_each_chains_draws(posterior):
    fig = trace(posterior, var_names=["sigma"])
    sigma = posterior.posterior["sigma"].values  # (chain, draw)
    traces = [line.get_ydata() for ax in fig.axes for line in ax.lines if len(line.get_ydata()) == 200]
    assert len(traces) == 2
    np.testing.assert_array_equal(np.sort(np.array(traces), axis=0), np.sort(sigma, axis=0))


def test_rank_plot_has_a_line_per_chain_and_parameter(posterior):
    fig = trace(posterior, part="fixed", kind="rank")
    assert len(fig.axes) == 2
    assert all(len([line for line in ax.lines if len(line.get_xdata()) > 2]) == 2 for ax in fig.axes)


def test_posterior_predictive_overlays_the_data(posterior):
    fig = posterior_predictive(posterior, num_samples=30, kind="ecdf", random_seed=1)
    lines = fig.axes[0].lines
    assert len(lines) == 31  # 30 predictive draws and the data
    observed = posterior.spec.observed
    x, y = lines[-1].get_xdata(), lines[-1].get_ydata()  # the data's ECDF, on a grid
    np.testing.assert_allclose(y, [(observed <= value).mean() for value in x], atol=1e-12)
    assert x.min() <= observed.min() and x.max() >= observed.max()
    assert "posterior_predictive" in posterior.idata.children


def test_posterior_plots_need_a_posterior():
    with pytest.raises(LMMError, match="fit with method='NUTS'"):
        trace(plot_checks.sleep_fit())
    with pytest.raises(LMMError, match="part must be one of fixed, variance, all"):
        forest(plot_checks.sleep_posterior(), part="random")


def panel_intervals(ax):
    """(labels top to bottom, estimates, lower and upper ends) of a REML/ML forest panel."""
    (points,) = artists(ax, "estimate")
    (intervals,) = artists(ax, "interval")
    segments = np.array(intervals.get_segments())
    labels = [label.get_text() for label in ax.get_yticklabels()]
    np.testing.assert_array_equal(points.get_ydata(), ax.get_yticks())  # each label on its row
    assert np.all(np.diff(points.get_ydata()) < 0)  # the first row at the top
    return labels, points.get_xdata(), segments[:, 0, 0], segments[:, 1, 0]


def test_forest_of_a_reml_fit_has_t_and_profile_intervals():
    fit = plot_checks.sleep_fit()
    fig = forest(fit, level=0.9)
    assert [ax.get_title() for ax in fig.axes] == ["Fixed effects", "Variance components"]
    labels, estimate, lower, upper = panel_intervals(fig.axes[0])
    table = fit.coef_table(level=0.9)
    assert labels == ["(Intercept)", "Days"]
    np.testing.assert_allclose(estimate, fit.fixef(), rtol=1e-12)
    np.testing.assert_allclose(lower, table["conf_low"], rtol=1e-12)
    np.testing.assert_allclose(upper, table["conf_high"], rtol=1e-12)
    labels, estimate, lower, upper = panel_intervals(fig.axes[1])
    ends = fit.confint(level=0.9)
    assert labels == list(ends.index[:4])
    np.testing.assert_allclose(lower, ends["lower"].iloc[:4], rtol=1e-12)
    np.testing.assert_allclose(upper, ends["upper"].iloc[:4], rtol=1e-12)
    varcorr = fit.varcorr()
    np.testing.assert_allclose(estimate, varcorr["sdcor"].iloc[[0, 2, 1, 3]], rtol=1e-10)  # θ's order
