"""What a Dask DataFrame model reads from each partition, and how each partition is cleaned.

The first pass (:mod:`bayeslmm.scaleout.passes`) and the second
(:mod:`bayeslmm.scaleout.statistics`) see a partition through :func:`clean_rows`: the used
columns as numpy-backed pandas (:func:`bayeslmm.frames.to_pandas`, as an in-memory fit
converts), rows missing a used value dropped and counted, and the categorical columns cast to
the data set's categories so that every partition codes a level the same way.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from bayeslmm import frames
from bayeslmm.errors import LMMError
from bayeslmm.formula.bars import ParsedFormula, parse_formula
from bayeslmm.formula.design import bar_groups, covariate_columns
from bayeslmm.formula.frame import FormulaeTexts, formulae_texts


@dataclass(frozen=True)
class Columns:
    """The columns a model reads from the data, by role."""

    formula: str
    parsed: ParsedFormula
    texts: FormulaeTexts
    covariates: tuple[str, ...]  # response, fixed part, offsets, the bars' left-hand sides
    groups: tuple[tuple[str, ...], ...]  # each grouping factor's columns
    extra: tuple[str, ...] = ()  # the weights' and residual structure's columns
    # the data set's categories of every categorical column (filled in by the first pass)
    categories: dict = field(default_factory=dict)

    @property
    def used(self) -> list[str]:
        grouping = {name for group in self.groups for name in group}
        return sorted(set(self.covariates) | grouping | set(self.extra))


def model_columns(formula: str, meta: pd.DataFrame, extra: tuple[str, ...]) -> Columns:
    """The columns ``formula`` reads from a frame shaped like ``meta`` (a Dask frame's empty meta)."""
    parsed = parse_formula(formula)
    texts = formulae_texts(parsed)
    covariates = tuple(covariate_columns(parsed, texts, meta))
    columns = Columns(formula, parsed, texts, covariates, tuple(bar_groups(parsed)), tuple(extra))
    missing = [name for name in columns.used if name not in meta.columns]
    if missing:
        raise LMMError(f"column(s) {missing} are not in the Dask DataFrame; its columns are {list(meta.columns)}")
    return columns


def is_categorical(column: pd.Series) -> bool:
    """Columns formulae reads as factors: text, categories and booleans."""
    return not pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column)


def clean_rows(partition: pd.DataFrame, columns: Columns) -> tuple[pd.DataFrame, int]:
    """The used columns of a partition without rows missing a value, and how many were dropped."""
    used = columns.used
    if len(partition) == 0:
        return partition.loc[:, used], 0
    rows = frames.to_pandas(partition.loc[:, used])
    for name in used:
        values = rows[name]
        if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            if np.isinf(values.to_numpy(dtype=float, na_value=np.nan)).any():
                raise LMMError(f"column {name!r} has infinite values; replace them with finite numbers or NaN "
                               "(NaN rows are dropped)")
    missing = rows.isna().any(axis=1).to_numpy()
    rows = rows.loc[~missing]
    for name, categories in columns.categories.items():
        rows[name] = pd.Categorical(rows[name], categories=categories)
    return rows, int(missing.sum())
