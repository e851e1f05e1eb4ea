"""A REML/ML fit's forest: the fixed effects with their t intervals (lmerTest's df) and the
sds, correlations and σ with their profile intervals (lme4's ``confint``)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from bayeslmm.model.covariance import SIGMA, sdcor_names, sdcor_of_theta
from bayeslmm.plots.figure import ESTIMATE, INTERVAL, REFERENCE, panels


def fixed_intervals(fit, level: float) -> pd.DataFrame:
    """``estimate, lower, upper`` of each fixed effect: t intervals with Satterthwaite's df."""
    table = fit.coef_table(level=level)
    return pd.DataFrame({"estimate": table["estimate"], "lower": table["conf_low"], "upper": table["conf_high"]})


def variance_intervals(fit, level: float) -> pd.DataFrame:
    """``estimate, lower, upper`` of each sd, correlation and σ (confint's labels): the fit's
    estimates with the profile intervals."""
    names = sdcor_names(fit.spec) + [SIGMA]
    ends = fit.confint(method="profile", level=level).loc[names]
    estimate = np.r_[sdcor_of_theta(fit.spec.terms, fit.theta, fit.sigma), fit.sigma]
    return pd.DataFrame({"estimate": estimate, "lower": ends["lower"], "upper": ends["upper"]}, index=names)


def coefficient_forest(fit, part: str, level: float):
    """A panel per part (fixed effects, variance components): estimates and intervals, the
    first row at the top."""
    tables = {"fixed": [("Fixed effects", fixed_intervals)], "variance": [("Variance components", variance_intervals)]}
    chosen = tables.get(part, tables["fixed"] + tables["variance"])
    fig, axes = panels(len(chosen), ncols=1, panel_size=(5.0, 2.6))
    for ax, (title, intervals) in zip(axes, chosen):
        _draw(ax, intervals(fit, level))
        ax.set_title(title)
    return fig


def _draw(ax, table: pd.DataFrame) -> None:
    position = np.arange(len(table))[::-1]  # the first row at the top
    if (table["lower"] < 0).any() and (table["upper"] > 0).any():
        ax.axvline(0.0, color="0.6", linewidth=0.8, gid=REFERENCE)
    ax.hlines(position, table["lower"], table["upper"], color="C0", gid=INTERVAL)
    ax.plot(table["estimate"], position, "o", color="C0", gid=ESTIMATE)
    ax.set_yticks(position, list(table.index), fontsize="small")
    ax.set_ylim(-0.7, len(table) - 0.3)
