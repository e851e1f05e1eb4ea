"""The data of each group with its fitted lines (nlme's ``plot(augPred(fit))``), in a panel per
group (lattice) or on one axis (spaghetti)."""
from __future__ import annotations

import numpy as np

from bayeslmm.plots.figure import DATA, GROUP, INTERVAL, POPULATION, check_fit, fitted_values, panels
from bayeslmm.plots.grid import (
    check_group,
    check_levels,
    check_predictor,
    default_predictor,
    predict_with_intervals,
    reference_grid,
    training_data,
)

MAX_PANELS = 36  # a lattice of more groups is unreadable: the first 36 are drawn unless levels= says


def lattice(fit, x: str | None = None, group: str | None = None, levels=None, ncols: int | None = None):
    """One panel per group: its observed responses against ``x``, its fitted line Xβ + Zb and
    the population line Xβ at its rows (nlme's ``plot(augPred(fit, level = 0:1))``).

    The lines join the group's fitted rows in the order of ``x``; a posterior's lines are the
    posterior means.

    Parameters
    ----------
    fit : LMMResult or BayesResult
    x : str, optional
        A predictor of the fixed part (default: the first numeric one).
    group : str, optional
        A grouping factor (default: the one with the most levels).
    levels : list, optional
        The groups to draw (default: all, at most the first 36).
    ncols : int, optional
        Panels per row (default: up to 6).

    Returns
    -------
    matplotlib.figure.Figure
        Per panel, titled by the level: the data (Line2D, gid ``"data"``), the group's line
        (gid ``"group"``) and the population's (gid ``"population"``).

    Examples
    --------
    >>> import bayeslmm as blm
    >>> from bayeslmm.plots import lattice
    >>> fit = blm.LMM("Reaction ~ Days + (Days | Subject)", blm.datasets.load("sleepstudy")).fit()
    >>> fig = lattice(fit)
    >>> len(fig.axes), fig.axes[0].get_title()
    (18, '308')
    """
    check_fit(fit)
    x = default_predictor(fit) if x is None else check_predictor(fit, x, "x")
    factor = check_group(fit, group)
    chosen = _chosen_levels(factor, levels)
    fig, axes = panels(len(chosen), ncols=ncols or min(len(chosen), 6), sharex=True, sharey=True,
                       panel_size=(2.2, 1.9))
    curves = _curves(fit, x)
    for ax, level in zip(axes, chosen):
        rows = np.flatnonzero(factor.codes == factor.levels.index(level))
        rows = rows[np.argsort(curves["x"][rows], kind="stable")]
        ax.plot(curves["x"][rows], curves["y"][rows], "o", color="C0", markersize=3, gid=DATA)
        ax.plot(curves["x"][rows], curves["population"][rows], "--", color="0.5", linewidth=1, gid=POPULATION)
        ax.plot(curves["x"][rows], curves["group"][rows], color="C1", linewidth=1.2, gid=GROUP)
        ax.set_title(str(level), fontsize="small")
    fig.supxlabel(x)
    fig.supylabel(fit.spec.response_name)
    return fig


def spaghetti(fit, x: str | None = None, group: str | None = None, show_data: bool = False,
              level: float = 0.95):
    """Every group's fitted line on one axis, with the population's curve and its interval.

    The group lines join each group's fitted values Xβ + Zb in the order of ``x``; the
    population curve is :func:`~bayeslmm.plots.predictions`'s (other predictors at their
    typical values).

    Returns
    -------
    matplotlib.figure.Figure
        One panel: a Line2D per group (gid ``"group"``), the population's (gid
        ``"population"``) with its band (gid ``"interval"``), and with ``show_data`` the data
        (gid ``"data"``).

    Examples
    --------
    >>> import bayeslmm as blm
    >>> from bayeslmm.plots import spaghetti
    >>> fit = blm.LMM("Reaction ~ Days + (Days | Subject)", blm.datasets.load("sleepstudy")).fit()
    >>> len([line for line in spaghetti(fit).axes[0].lines if line.get_gid() == "group"])
    18
    """
    check_fit(fit)
    x = default_predictor(fit) if x is None else check_predictor(fit, x, "x")
    factor = check_group(fit, group)
    curves = _curves(fit, x)
    fig, (ax,) = panels(1, panel_size=(5.0, 3.6))
    if show_data:
        ax.plot(curves["x"], curves["y"], "o", color="0.5", markersize=2.5, alpha=0.5, gid=DATA)
    for code in range(factor.n_levels):
        rows = np.flatnonzero(factor.codes == code)
        rows = rows[np.argsort(curves["x"][rows], kind="stable")]
        ax.plot(curves["x"][rows], curves["group"][rows], color="C0", linewidth=0.8, alpha=0.5, gid=GROUP)
    population = predict_with_intervals(fit, reference_grid(fit, x), include_re=False, level=level)
    ax.fill_between(population[x], population["lower"], population["upper"], color="C1", alpha=0.25,
                    linewidth=0, gid=INTERVAL)
    ax.plot(population[x], population["estimate"], color="C1", linewidth=2.5, gid=POPULATION)
    ax.set(xlabel=x, ylabel=fit.spec.response_name, title=f"{factor.name}: fitted lines")
    return fig


def _chosen_levels(factor, levels) -> list:
    return list(factor.levels[:MAX_PANELS]) if levels is None else check_levels(factor, levels)


def _curves(fit, x: str) -> dict[str, np.ndarray]:
    """Per fitted row: x, the observed response, the group-level and population-level fits."""
    return {"x": training_data(fit)[x].to_numpy(), "y": fit.spec.observed,
            "group": fitted_values(fit), "population": fitted_values(fit, include_re=False)}
