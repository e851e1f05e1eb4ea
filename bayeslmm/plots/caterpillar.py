"""Caterpillar plot of the random effects (lme4's ``dotplot(ranef(fit, condVar = TRUE))``)."""
from __future__ import annotations

import numpy as np

from bayeslmm.plots.figure import ESTIMATE, INTERVAL, MAX_LABELLED_LEVELS, REFERENCE, check_fit, panels, ranef_intervals


def caterpillar(fit, level: float = 0.95, ncols: int | None = None):
    """The random effects with their intervals, one panel per grouping factor and term.

    A REML/ML fit shows each conditional mode with ± z·conditional sd (z = 1.96 for
    ``level=0.95``), as lme4's ``dotplot(ranef(fit, condVar = TRUE))``; a posterior shows each
    random effect's posterior mean with its equal-tailed ``level`` interval.  In each factor's
    panels the levels are sorted by the factor's first term (usually the intercept), so a row is
    the same level in every panel of that factor.

    Parameters
    ----------
    fit : LMMResult or BayesResult
    level : float
        Probability of the intervals.
    ncols : int, optional
        Panels per row (default: up to 4).

    Returns
    -------
    matplotlib.figure.Figure
        In each panel, a Line2D of the estimates (gid ``"estimate"``: x the estimates, y the
        rows 0, 1, …) and a LineCollection of the intervals (gid ``"interval"``).

    Examples
    --------
    >>> import bayeslmm as blm
    >>> from bayeslmm.plots import caterpillar
    >>> fit = blm.LMM("Reaction ~ Days + (Days | Subject)", blm.datasets.load("sleepstudy")).fit()
    >>> fig = caterpillar(fit)
    >>> [ax.get_title() for ax in fig.axes]
    ['Subject: (Intercept)', 'Subject: Days']
    """
    check_fit(fit)
    table = ranef_intervals(fit, level)
    panel_keys = list(dict.fromkeys(zip(table["grpvar"], table["term"])))
    fig, axes = panels(len(panel_keys), ncols=ncols, panel_size=(3.2, 0.5 + 0.12 * _most_levels(table)))
    orders = {grpvar: _level_order(table, grpvar) for grpvar in table["grpvar"].unique()}
    for ax, (grpvar, term) in zip(axes, panel_keys):
        rows = table[(table["grpvar"] == grpvar) & (table["term"] == term)].set_index("grp").loc[orders[grpvar]]
        _draw(ax, rows)
        ax.set_title(f"{grpvar}: {term}")
    return fig


def _level_order(table, grpvar: str) -> list:
    """The factor's levels sorted by its first term's estimate (lme4's dotplot order)."""
    rows = table[table["grpvar"] == grpvar]
    first = rows[rows["term"] == rows["term"].iloc[0]]
    return list(first.sort_values("estimate", kind="stable")["grp"])


def _most_levels(table) -> int:
    return int(min(table.groupby("grpvar")["grp"].nunique().max(), 3 * MAX_LABELLED_LEVELS))


def _draw(ax, rows) -> None:
    position = np.arange(len(rows))
    ax.axvline(0.0, color="0.6", linewidth=0.8, gid=REFERENCE)
    ax.hlines(position, rows["lower"], rows["upper"], color="C0", linewidth=1.0, gid=INTERVAL)
    ax.plot(rows["estimate"], position, "o", color="C0", markersize=3, gid=ESTIMATE)
    if len(rows) <= MAX_LABELLED_LEVELS:
        ax.set_yticks(position, [str(level) for level in rows.index], fontsize="small")
    else:
        ax.set_yticks([])
    ax.set_ylim(-1, len(rows))
