"""Posterior plots drawn by arviz-plots: a forest of the parameters, trace or rank plots, and
the posterior predictive density over the data's."""
from __future__ import annotations

from bayeslmm.errors import LMMError
from bayeslmm.plots.coefficients import coefficient_forest
from bayeslmm.plots.figure import check_fit, check_posterior, figure_of, is_posterior

PARTS = ("fixed", "variance", "all")
NOT_PARAMETERS = ("b_", "corr_chol_")  # random effects (the caterpillar's) and the correlations' Cholesky factors


def parameter_names(fit, part: str = "all") -> list[str]:
    """The posterior's variables of the fixed effects (``"fixed"``: ``beta``), of the variance
    components (``"variance"``: sds, correlations, σ, a residual structure's) or both."""
    check_part(part)
    names = [name for name in fit.posterior.data_vars if not name.startswith(NOT_PARAMETERS)]
    variance = [name for name in names if name != "beta"]
    return {"fixed": ["beta"], "variance": variance, "all": ["beta"] + variance}[part]


def check_part(part: str) -> None:
    if part not in PARTS:
        raise LMMError(f"part must be one of {', '.join(PARTS)}; got {part!r}")


def forest(fit, part: str = "all", var_names=None, level: float = 0.95):
    """Forest plot of the parameters with their intervals.

    A posterior's: each parameter's median with its 50% and ``level`` equal-tailed intervals,
    the chains combined (arviz-plots' ``plot_forest``).  A REML/ML fit's: the fixed effects
    with their t intervals (Satterthwaite's df, ``coef_table``) in one panel and the sds,
    correlations and σ with their profile intervals (``confint``) in another.

    Parameters
    ----------
    fit : BayesResult or LMMResult
    part : {"all", "fixed", "variance"}
        The fixed effects, the variance components (sds, correlations, σ and a residual
        structure's parameters), or both.  Their scales differ: one part at a time reads better.
    var_names : list of str, optional
        Posterior variables to show instead of ``part``'s (a posterior only).
    level : float
        Probability of the outer interval.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import bayeslmm as blm
    >>> from bayeslmm.plots import forest
    >>> model = blm.LMM("Reaction ~ Days + (Days | Subject)", blm.datasets.load("sleepstudy"))
    >>> post = model.fit(method="NUTS", draws=200, tune=200, chains=2, random_seed=1, progressbar=False)
    >>> fig = forest(post, part="fixed")
    >>> len(fig.axes)
    2
    """
    import arviz_plots as azp

    check_fit(fit)
    if not is_posterior(fit):
        check_part(part)
        return coefficient_forest(fit, part, level)
    names = var_names or parameter_names(fit, part)
    plot = azp.plot_forest(fit.idata, var_names=names, combined=True, ci_kind="eti", ci_probs=(0.5, level),
                           backend="matplotlib")
    return figure_of(plot)


def trace(fit, part: str = "all", var_names=None, kind: str = "trace"):
    """Trace plots (each chain's draws, with their densities) or rank plots of the posterior.

    ``kind="trace"``: arviz-plots' ``plot_trace_dist``; ``kind="rank"``: ``plot_rank``, the
    fractional ranks' ECDF of each chain, whose envelope a well-mixed chain stays inside.
    ``part`` and ``var_names`` as in :func:`forest`.

    Examples
    --------
    >>> import bayeslmm as blm
    >>> from bayeslmm.plots import trace
    >>> model = blm.LMM("Reaction ~ Days + (Days | Subject)", blm.datasets.load("sleepstudy"))
    >>> post = model.fit(method="NUTS", draws=200, tune=200, chains=2, random_seed=1, progressbar=False)
    >>> fig = trace(post, part="fixed", kind="rank")
    >>> len(fig.axes)
    2
    """
    import arviz_plots as azp

    check_posterior(fit, "trace")
    names = var_names or parameter_names(fit, part)
    if kind == "trace":
        plot = azp.plot_trace_dist(fit.idata, var_names=names, backend="matplotlib")
    elif kind == "rank":
        plot = azp.plot_rank(fit.idata, var_names=names, backend="matplotlib")
    else:
        raise LMMError(f"kind must be 'trace' or 'rank'; got {kind!r}")
    return figure_of(plot)


def posterior_predictive(fit, num_samples: int = 50, kind: str = "kde", random_seed=None):
    """The density of ``num_samples`` posterior predictive draws of y over the observed y's
    (arviz-plots' ``plot_ppc_dist``; ``kind`` ``"kde"``, ``"hist"`` or ``"ecdf"``).

    Draws the predictive sample (``fit.sample_posterior_predictive(random_seed)``) into
    ``fit.idata`` first if it has none.

    Examples
    --------
    >>> import bayeslmm as blm
    >>> from bayeslmm.plots import posterior_predictive
    >>> model = blm.LMM("Reaction ~ Days + (Days | Subject)", blm.datasets.load("sleepstudy"))
    >>> post = model.fit(method="NUTS", draws=200, tune=200, chains=2, random_seed=1, progressbar=False)
    >>> len(posterior_predictive(post, num_samples=20, random_seed=1).axes[0].lines)
    21
    """
    import arviz_plots as azp

    check_posterior(fit, "posterior_predictive")
    if "posterior_predictive" not in fit.idata.children:
        fit.sample_posterior_predictive(random_seed=random_seed)
    plot = azp.plot_ppc_dist(fit.idata, kind=kind, num_samples=num_samples, backend="matplotlib")
    return figure_of(plot)
