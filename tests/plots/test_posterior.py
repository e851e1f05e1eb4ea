"""Posterior plots (arviz-plots) hold the posterior: the forest's intervals are the draws'
quantiles, each trace line a chain's draws, the predictive lines the number asked for."""
from __future__ import annotations

import numpy as np
import plot_checks
import pytest

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
        forest(plot_checks.sleep_fit())
    with pytest.raises(LMMError, match="part must be one of fixed, variance, all"):
        forest(plot_checks.sleep_posterior(), part="random")
