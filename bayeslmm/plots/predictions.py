"""Predictions along one or two predictors with intervals, for the population or chosen groups
(brms's ``conditional_effects``, bambi's ``plot_predictions``)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from bayeslmm.plots.figure import DATA, ESTIMATE, INTERVAL, check_fit, panels
from bayeslmm.plots.grid import (
    GRID_POINTS,
    check_group,
    check_levels,
    check_predictor,
    default_predictor,
    group_rows,
    is_numeric,
    predict_with_intervals,
    reference_grid,
    training_data,
)


def conditional_effects(fit, x: str | None = None, by: str | None = None, groups=None, group: str | None = None,
                        level: float = 0.95, points: int = GRID_POINTS) -> pd.DataFrame:
    """The predictions :func:`predictions` draws, as a table.

    One row per point of each curve: the predictors, ``.group`` (the group's level, None for
    the population) and ``estimate, lower, upper``.  Arguments as :func:`predictions`.

    Examples
    --------
    >>> import bayeslmm as blm
    >>> from bayeslmm.plots import conditional_effects
    >>> fit = blm.LMM("Reaction ~ Days + (Days | Subject)", blm.datasets.load("sleepstudy")).fit()
    >>> table = conditional_effects(fit, points=3)
    >>> table[["Days", "estimate"]].round(2).values.tolist()
    [[0.0, 251.41], [4.5, 298.51], [9.0, 345.61]]
    """
    x, by, groups, group = _checked(fit, x, by, groups, group)
    grid = reference_grid(fit, x, by=by, groups=groups, group=group, points=points)
    return predict_with_intervals(fit, grid, include_re=groups is not None, level=level)


def predictions(fit, x: str | None = None, by: str | None = None, groups=None, group: str | None = None,
                level: float = 0.95, points: int = GRID_POINTS, show_data: bool = True):
    """Predicted mean response along ``x`` with its ``level`` interval.

    Every predictor not shown is held at its typical value (a number's mean, a factor's first
    level), as in brms's ``conditional_effects``.  Without ``groups`` the curves are the
    population's, Xβ; with ``groups`` (levels of the grouping factor ``group``, by default the
    one with the most levels) they are those groups', Xβ + Zb, other predictors at each group's
    own typical values.  A REML/ML fit's interval is the Wald interval of Xβ (the random effects'
    uncertainty is left out, as lme4's ``predict`` leaves it); a posterior's is the equal-tailed
    interval of the predicted mean.

    Parameters
    ----------
    fit : LMMResult or BayesResult
    x : str, optional
        A predictor of the fixed part (default: the first numeric one).  A number is drawn as a
        curve with a band, a factor as points with error bars.
    by : str, optional
        A second predictor: one curve per level of a factor, or at a number's mean and mean ± sd.
    groups : level or list of levels, optional
        Groups whose own curves to draw.
    group : str, optional
        The grouping factor ``groups`` belong to.
    level : float
        Probability of the intervals.
    points : int
        Points along a numeric ``x``.
    show_data : bool
        Also draw the observed responses (of the chosen groups, if any) at their ``x``.

    Returns
    -------
    matplotlib.figure.Figure
        One panel: per curve a Line2D (gid ``"estimate"``) and its band (gid ``"interval"``);
        the data as a Line2D of points (gid ``"data"``).

    Examples
    --------
    >>> import bayeslmm as blm
    >>> from bayeslmm.plots import predictions
    >>> fit = blm.LMM("size ~ time * treat + (1 | tree)", blm.datasets.load("Sitka")).fit()
    >>> fig = predictions(fit, x="time", by="treat")
    >>> len(fig.axes[0].get_legend().get_texts())
    2
    """
    x, by, groups, group = _checked(fit, x, by, groups, group)
    table = conditional_effects(fit, x=x, by=by, groups=groups, group=group, level=level, points=points)
    fig, (ax,) = panels(1, panel_size=(5.0, 3.6))
    numeric = is_numeric(training_data(fit)[x])
    curves = table.groupby([".group", by] if by else [".group"], sort=False, dropna=False)
    for k, (key, curve) in enumerate(curves):
        label = _label(key, by, groups is not None)
        if numeric:
            _draw_curve(ax, curve, x, f"C{k}", label)
        else:
            _draw_points(ax, curve, x, f"C{k}", label, k, len(curves))
    if show_data:
        _draw_data(ax, fit, x, groups, group, numeric)
    ax.set(xlabel=x, ylabel=fit.spec.response_name)
    if len(curves) > 1:
        ax.legend(fontsize="small", title=", ".join(([group] if groups else []) + ([by] if by else [])))
    return fig


def _checked(fit, x, by, groups, group) -> tuple:
    """(x, by, groups as a list or None, group) checked, with their defaults filled in."""
    check_fit(fit)
    x = default_predictor(fit) if x is None else check_predictor(fit, x, "x")
    by = None if by is None else check_predictor(fit, by, "by")
    if groups is None:
        return x, by, None, None
    factor = check_group(fit, group)
    return x, by, check_levels(factor, groups), factor.name


def _label(key, by: str | None, with_groups: bool) -> str:
    key = key if isinstance(key, tuple) else (key,)
    parts = ([str(key[0])] if with_groups else []) + ([_short(key[-1])] if by else [])
    return ", ".join(parts)


def _short(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _draw_curve(ax, curve: pd.DataFrame, x: str, color: str, label: str) -> None:
    ax.fill_between(curve[x], curve["lower"], curve["upper"], color=color, alpha=0.2, linewidth=0, gid=INTERVAL)
    ax.plot(curve[x], curve["estimate"], color=color, label=label or None, gid=ESTIMATE)


def _draw_points(ax, curve: pd.DataFrame, x: str, color: str, label: str, k: int, count: int) -> None:
    """A factor along x: each curve's points side by side around the level's position."""
    position = np.arange(len(curve)) + (k - (count - 1) / 2) * 0.8 / max(count, 2)
    ax.vlines(position, curve["lower"], curve["upper"], color=color, gid=INTERVAL)
    ax.plot(position, curve["estimate"], "o", color=color, label=label or None, gid=ESTIMATE)
    ax.set_xticks(np.arange(len(curve)), [str(level) for level in curve[x]])


def _draw_data(ax, fit, x: str, groups, group: str | None, numeric: bool) -> None:
    if groups is None:
        rows, y = training_data(fit), fit.spec.observed
    else:
        rows = pd.concat([group_rows(fit, group, level) for level in groups])
        y = pd.Series(fit.spec.observed, index=fit.spec.row_labels).loc[rows.index].to_numpy()
    if numeric:
        ax.plot(rows[x], y, "o", color="0.5", markersize=2.5, alpha=0.5, gid=DATA)
