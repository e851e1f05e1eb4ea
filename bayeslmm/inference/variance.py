"""Variance components, shares of variance and intraclass correlations.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from bayeslmm.inference.profile import confint
from bayeslmm.model.covariance import SIGMA, sd_name, term_labels


def variance_components(fit, level: float = 0.95) -> pd.DataFrame:
    """The course notes' table: per random effect and the residual, its variance and sd with a
    profile interval for the sd, its share of the summed variances (var_prop), and for a random
    intercept the intra-class correlation var / (var + σ²)."""
    intervals = confint(fit, method="profile", level=level)
    rows = []
    for _, row in fit.varcorr[fit.varcorr["var2"].isna()].iterrows():
        group, effect = row["grp"], row["var1"]
        label = SIGMA if group == "Residual" else sd_name(effect, _factor_of(fit, group))
        rows.append({"group": group, "effect": effect if group != "Residual" else "", "variance": row["vcov"],
                     "sd": row["sdcor"], "sd_lower": intervals.loc[label, "lower"],
                     "sd_upper": intervals.loc[label, "upper"]})
    table = pd.DataFrame(rows)
    table["var_prop"] = table["variance"] / table["variance"].sum()
    residual = fit.sigma**2
    table["icc"] = [v / (v + residual) if e == "(Intercept)" else np.nan
                    for v, e in zip(table["variance"], table["effect"])]
    return table


def _factor_of(fit, label: str) -> str:
    """'Subject.1' (a second term on Subject) → 'Subject'."""
    for term, name in zip(fit.spec.terms, term_labels(fit.spec.terms)):
        if name == label:
            return fit.spec.factors[term.factor].name
    return label
