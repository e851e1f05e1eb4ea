"""The data behind prediction plots: a fit's predictors and their typical values, grids of new
rows, and predictions with intervals on them for either kind of fit."""
from __future__ import annotations

import re

import numpy as np
import pandas as pd

from bayeslmm.errors import LMMError
from bayeslmm.plots.figure import is_posterior, z_value
from bayeslmm.results.bayesian import interval_columns
from bayeslmm.results.newdata import new_data_matrices

GRID_POINTS = 50  # values of a numeric predictor along a curve


def training_data(fit) -> pd.DataFrame:
    """The fitted rows of the columns the formula reads, as the model saw them."""
    return fit.spec.design.data.loc[fit.spec.row_labels]


def grouping_columns(fit) -> dict[str, tuple[str, ...]]:
    """Each grouping factor's name and the data columns that form its levels."""
    return {factor.name: columns for factor, columns in zip(fit.spec.factors, fit.spec.design.factor_groups)}


def predictors(fit) -> list[str]:
    """The data columns of the fixed part, in the order the formula names them (not the
    response, not a grouping factor's columns)."""
    design = fit.spec.design
    grouping = {column for columns in design.factor_groups for column in columns}
    fixed = design.parsed.fixed
    found = {}
    for column in design.data.columns:
        match = re.search(rf"(?<![\w.]){re.escape(column)}(?![\w.])", fixed)
        if match and column not in grouping:
            found[column] = match.start()
    return sorted(found, key=found.get)


def is_numeric(values: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)


def levels_of(values: pd.Series) -> list:
    """A categorical predictor's levels in the model's order (a categorical's, else sorted as R)."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        return list(values.cat.remove_unused_categories().cat.categories)
    return sorted(pd.unique(values.dropna()))


def typical_value(values: pd.Series):
    """The value a predictor not on the plot is held at: the mean of a number, the first level
    (the reference of treatment contrasts) of a factor, as brms's ``conditional_effects``."""
    return float(values.mean()) if is_numeric(values) else levels_of(values)[0]


def axis_values(values: pd.Series, points: int = GRID_POINTS) -> list:
    """Values along the x axis: a grid over a number's range, or a factor's levels."""
    if is_numeric(values):
        return list(np.linspace(values.min(), values.max(), points))
    return levels_of(values)


def by_values(values: pd.Series) -> list:
    """Values of a second predictor, one curve each: a factor's levels, or a number's mean and
    mean ± sd (brms's choice)."""
    if is_numeric(values):
        mean, sd = values.mean(), values.std()
        return [mean - sd, mean, mean + sd]
    return levels_of(values)


def check_predictor(fit, name: str, role: str) -> str:
    names = predictors(fit)
    if name not in names:
        raise LMMError(f"{role} must be a predictor of the fixed part: one of {', '.join(names) or '(none)'}; "
                       f"got {name!r}")
    return name


def default_predictor(fit) -> str:
    """The first numeric predictor of the fixed part, else the first one."""
    names = predictors(fit)
    if not names:
        raise LMMError("the model has no predictor in its fixed part to plot along; name one with x=")
    data = training_data(fit)
    return next((name for name in names if is_numeric(data[name])), names[0])


def check_group(fit, group: str | None):
    """The grouping factor named ``group`` (default: the first, with the most levels)."""
    factors = {factor.name: factor for factor in fit.spec.factors}
    if not factors:
        raise LMMError("the model has no grouping factor")
    if group is None:
        return fit.spec.factors[0]
    if group not in factors:
        raise LMMError(f"group must be one of the model's grouping factors: {', '.join(factors)}; got {group!r}")
    return factors[group]


def check_levels(factor, levels) -> list[str]:
    """``levels`` (one or several) as the factor's level labels, each checked."""
    chosen = [str(level) for level in ([levels] if isinstance(levels, str) or np.isscalar(levels) else levels)]
    unknown = [level for level in chosen if level not in factor.levels]
    if unknown:
        raise LMMError(f"{', '.join(map(repr, unknown))} not a level of {factor.name!r} in the fitted data")
    return chosen


def group_rows(fit, group: str, level) -> pd.DataFrame:
    """The fitted rows of one level of a grouping factor."""
    factor = check_group(fit, group)
    return training_data(fit)[factor.codes == factor.levels.index(str(level))]


def reference_grid(fit, x: str, by: str | None = None, groups=None, group: str | None = None,
                   points: int = GRID_POINTS) -> pd.DataFrame:
    """New rows along ``x`` (for each value of ``by``; for each level in ``groups`` of the
    grouping factor ``group``), every other predictor at its typical value: over all rows for
    population curves, over that group's own rows for a group's curve.  The column ``.group``
    holds the group (None for the population)."""
    data = training_data(fit)
    frames = []
    for level in [None] if groups is None else list(groups):
        rows = data if level is None else group_rows(fit, group, level)
        base = {name: typical_value(rows[name]) for name in predictors(fit)}
        if level is not None:  # the group's own columns, so that its random effects apply
            base.update({column: rows[column].iloc[0] for column in grouping_columns(fit)[group]})
        for value in [None] if by is None else by_values(data[by]):
            frame = pd.DataFrame({**base, x: axis_values(data[x], points)})
            if by is not None:
                frame[by] = value
            frames.append(frame.assign(**{".group": level}))
    return pd.concat(frames, ignore_index=True)


def predict_with_intervals(fit, newdata: pd.DataFrame, include_re: bool, level: float = 0.95) -> pd.DataFrame:
    """``newdata`` with ``estimate, lower, upper``: for a REML/ML fit the prediction with the
    Wald interval of Xβ (± z·√(x'Vx), V = vcov(); the random effects' uncertainty is not
    included, as in lme4's predict); for a posterior the posterior mean and equal-tailed
    interval of Xβ (+ Zb).  Grouping factors missing from ``newdata`` count as new levels:
    their random effects are 0 for a REML/ML fit and drawn from N(0, D) for a posterior."""
    newdata = _with_new_levels(fit, newdata) if include_re else newdata
    if is_posterior(fit):
        table = fit.predict(newdata, include_re=include_re, allow_new_levels=True, random_seed=0, level=level)
        low, high = interval_columns(level)
        values = {"estimate": table["mean"], "lower": table[low], "upper": table[high]}
    else:
        estimate = fit.predict(newdata, include_re=include_re, allow_new_levels=True).to_numpy()
        X = new_data_matrices(fit.spec, newdata, allow_new_levels=True, include_re=False)[0]
        se = np.sqrt(np.einsum("ij,jk,ik->i", X, fit.vcov().to_numpy(), X))
        half = z_value(level) * se
        values = {"estimate": estimate, "lower": estimate - half, "upper": estimate + half}
    return newdata.assign(**{name: np.asarray(column, float) for name, column in values.items()})


def _with_new_levels(fit, newdata: pd.DataFrame) -> pd.DataFrame:
    """Grouping columns ``newdata`` lacks filled with a level the fit has not seen."""
    missing = {column for columns in fit.spec.design.factor_groups for column in columns} - set(newdata.columns)
    return newdata.assign(**{column: "(new level)" for column in sorted(missing)})
