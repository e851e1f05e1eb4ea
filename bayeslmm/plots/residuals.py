"""Residual diagnostics: residuals against fitted values, normal QQ plots of the residuals and
of each random effect, residuals by group (nlme's ``plot(fit)``, ``qqnorm``, lme4's
``qqmath(ranef(fit))``)."""
from __future__ import annotations

import numpy as np
from scipy import stats as st

from bayeslmm.plots.figure import (
    DATA,
    ESTIMATE,
    MAX_LABELLED_LEVELS,
    REFERENCE,
    check_fit,
    fitted_values,
    panels,
    ranef_intervals,
)
from bayeslmm.plots.grid import check_group


def normal_quantiles(n: int) -> np.ndarray:
    """The normal quantiles R's ``qqnorm`` plots n sorted values against (``ppoints``)."""
    a = 3 / 8 if n <= 10 else 0.5
    return st.norm.ppf((np.arange(1, n + 1) - a) / (n + 1 - 2 * a))


def residuals_and_fitted(fit) -> tuple[np.ndarray, np.ndarray]:
    """(residuals, fitted values) of the fitted rows; for a posterior, y minus the posterior mean
    of Xβ + Zb, and that mean."""
    fitted = fitted_values(fit)
    return fit.spec.observed - fitted, fitted


def residuals_vs_fitted(fit):
    """Residuals against fitted values, with a line at 0 (nlme's ``plot(fit)``).

    Parameters
    ----------
    fit : LMMResult or BayesResult
        For a posterior, the fitted values are the posterior means of Xβ + Zb and the
        residuals y minus them.

    Returns
    -------
    matplotlib.figure.Figure
        One panel; the points are a Line2D with gid ``"data"``.

    Examples
    --------
    >>> import bayeslmm as blm
    >>> from bayeslmm.plots import residuals_vs_fitted
    >>> fit = blm.LMM("Reaction ~ Days + (Days | Subject)", blm.datasets.load("sleepstudy")).fit()
    >>> len(residuals_vs_fitted(fit).axes[0].lines[-1].get_xdata())
    180
    """
    check_fit(fit)
    fig, (ax,) = panels(1)
    draw_residuals_vs_fitted(ax, fit)
    return fig


def qq_residuals(fit):
    """Normal QQ plot of the residuals with R's ``qqline`` (through the quartiles).

    Parameters
    ----------
    fit : LMMResult or BayesResult

    Returns
    -------
    matplotlib.figure.Figure
        One panel: the sorted residuals against R's ``qnorm(ppoints(n))`` (gid ``"data"``) and
        the line (gid ``"reference"``).

    Examples
    --------
    >>> import bayeslmm as blm
    >>> from bayeslmm.plots import qq_residuals
    >>> fit = blm.LMM("Reaction ~ Days + (Days | Subject)", blm.datasets.load("sleepstudy")).fit()
    >>> fig = qq_residuals(fit)
    >>> bool((fig.axes[0].lines[-1].get_ydata() == fit.residuals().sort_values()).all())
    True
    """
    check_fit(fit)
    fig, (ax,) = panels(1)
    draw_qq(ax, residuals_and_fitted(fit)[0], "Residuals")
    return fig


def qq_ranef(fit, ncols: int | None = None):
    """Normal QQ plot of each random effect's conditional modes (posterior means for a
    posterior), one panel per grouping factor and term.

    Parameters
    ----------
    fit : LMMResult or BayesResult
    ncols : int, optional
        Panels per row (default: up to 4).

    Returns
    -------
    matplotlib.figure.Figure
        Per panel, the sorted estimates against normal quantiles (gid ``"data"``) and the line
        through their quartiles (gid ``"reference"``).

    Examples
    --------
    >>> import bayeslmm as blm
    >>> from bayeslmm.plots import qq_ranef
    >>> fit = blm.LMM("Reaction ~ Days + (Days | Subject)", blm.datasets.load("sleepstudy")).fit()
    >>> [ax.get_title() for ax in qq_ranef(fit).axes]
    ['Subject: (Intercept)', 'Subject: Days']
    """
    check_fit(fit)
    effects = random_effect_estimates(fit)
    fig, axes = panels(len(effects), ncols=ncols)
    for ax, (title, values) in zip(axes, effects.items()):
        draw_qq(ax, values, title)
    return fig


def residuals_by_group(fit, group: str | None = None):
    """Boxplots of the residuals per level of a grouping factor (the first one, with the most
    levels, by default), levels in the factor's order.

    Parameters
    ----------
    fit : LMMResult or BayesResult
    group : str, optional
        A grouping factor's name, e.g. ``"Subject"`` or a nested ``"cask:batch"``.

    Returns
    -------
    matplotlib.figure.Figure
        One panel with a box per level; the medians are Line2D with gid ``"estimate"``.

    Examples
    --------
    >>> import bayeslmm as blm
    >>> from bayeslmm.plots import residuals_by_group
    >>> fit = blm.LMM("diameter ~ 1 + (1 | plate) + (1 | sample)", blm.datasets.load("Penicillin")).fit()
    >>> residuals_by_group(fit, "sample").axes[0].get_xlabel()
    'sample'
    """
    check_fit(fit)
    fig, (ax,) = panels(1, panel_size=(6.4, 2.8))
    draw_residuals_by_group(ax, fit, group)
    return fig


def residual_diagnostics(fit, group: str | None = None, ncols: int = 3):
    """All residual diagnostics in one figure: residuals against fitted, QQ of the residuals,
    residuals by ``group``, then a QQ panel per random effect.

    Parameters
    ----------
    fit : LMMResult or BayesResult
    group : str, optional
        The grouping factor of the boxplots (default: the one with the most levels).
    ncols : int
        Panels per row.

    Returns
    -------
    matplotlib.figure.Figure
        The panels of :func:`residuals_vs_fitted`, :func:`qq_residuals`,
        :func:`residuals_by_group` and :func:`qq_ranef`, in that order.

    Examples
    --------
    >>> import bayeslmm as blm
    >>> from bayeslmm.plots import residual_diagnostics
    >>> fit = blm.LMM("Reaction ~ Days + (Days | Subject)", blm.datasets.load("sleepstudy")).fit()
    >>> len(residual_diagnostics(fit).axes)
    5
    """
    check_fit(fit)
    effects = random_effect_estimates(fit) if fit.spec.factors else {}  # a linear model has none
    by_group = 1 if fit.spec.factors else 0
    fig, axes = panels(2 + by_group + len(effects), ncols=ncols)
    residuals, _ = draw_residuals_vs_fitted(axes[0], fit)
    draw_qq(axes[1], residuals, "Residuals")
    if by_group:
        draw_residuals_by_group(axes[2], fit, group, residuals)
    for ax, (title, values) in zip(axes[2 + by_group:], effects.items()):
        draw_qq(ax, values, title)
    return fig


def random_effect_estimates(fit) -> dict[str, np.ndarray]:
    """Each factor's and term's estimates (conditional modes or posterior means), by title."""
    table = ranef_intervals(fit, 0.95)
    return {f"{grpvar}: {term}": rows["estimate"].to_numpy()
            for (grpvar, term), rows in table.groupby(["grpvar", "term"], sort=False)}


def draw_residuals_vs_fitted(ax, fit) -> tuple[np.ndarray, np.ndarray]:
    residuals, fitted = residuals_and_fitted(fit)
    ax.axhline(0.0, color="0.6", linewidth=0.8, gid=REFERENCE)
    ax.plot(fitted, residuals, "o", markersize=3, alpha=0.7, gid=DATA)
    ax.set(xlabel="Fitted values", ylabel="Residuals", title="Residuals vs fitted")
    return residuals, fitted


def draw_qq(ax, values, title: str) -> None:
    """Sorted ``values`` against normal quantiles, and the line through their quartiles."""
    values = np.sort(np.asarray(values, float))
    theoretical = normal_quantiles(values.size)
    quartiles, normal = np.quantile(values, [0.25, 0.75]), st.norm.ppf([0.25, 0.75])
    slope = (quartiles[1] - quartiles[0]) / (normal[1] - normal[0])
    ends = theoretical[[0, -1]]
    ax.plot(ends, quartiles[0] + slope * (ends - normal[0]), color="0.6", linewidth=0.8, gid=REFERENCE)
    ax.plot(theoretical, values, "o", markersize=3, gid=DATA)
    ax.set(xlabel="Normal quantiles", ylabel="Sample quantiles", title=title)


def draw_residuals_by_group(ax, fit, group: str | None, residuals=None) -> None:
    factor = check_group(fit, group)
    if residuals is None:
        residuals = residuals_and_fitted(fit)[0]
    by_level = [residuals[factor.codes == level] for level in range(factor.n_levels)]
    boxes = ax.boxplot(by_level, tick_labels=[str(level) for level in factor.levels], widths=0.6,
                       flierprops={"markersize": 3})
    for median in boxes["medians"]:
        median.set_gid(ESTIMATE)
    ax.axhline(0.0, color="0.6", linewidth=0.8, gid=REFERENCE)
    ax.tick_params(axis="x", labelrotation=90, labelsize="small")
    if factor.n_levels > MAX_LABELLED_LEVELS:
        ax.set_xticks([])
    ax.set(xlabel=factor.name, ylabel="Residuals", title=f"Residuals by {factor.name}")
