"""Evaluate a fitted model's design on new rows (for predict)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from bayeslmm import checks, frames
from bayeslmm.errors import LMMError
from bayeslmm.formula.design import covariate_columns, evaluate_new_rows, level_labels, new_fixed_matrix
from bayeslmm.formula.frame import formulae_frame
from bayeslmm.model.spec import ModelSpec


def read_newdata(spec: ModelSpec, newdata) -> pd.DataFrame:
    """``newdata`` (any data frame) as pandas, read as the training data were (numbers
    stored as text in covariates read as numbers); the entry point of every ``predict``."""
    newdata = frames.to_pandas(newdata, "newdata")
    return frames.read_numeric_strings(newdata, covariate_columns(spec.design.parsed, spec.design.texts, newdata))


def new_data_matrices(spec: ModelSpec, newdata: pd.DataFrame, allow_new_levels: bool, include_re: bool = True):
    """X, the offset (None without one) for ``newdata`` and, per grouping factor, (level codes, raw columns).

    Levels not seen in the fit get codes G, G+1, … (one per distinct new level).  Every
    transform (``scale``, ``poly``, contrasts) uses what it learnt from the training data.
    """
    design = spec.design
    checks.check_columns_exist([column.source for column in design.level_columns], newdata)
    frame = formulae_frame(newdata, design.level_columns, fitting=False)
    X = new_fixed_matrix(design, frame)
    offset = _new_offset(design, frame)
    factors = []
    for f, factor in enumerate(spec.factors if include_re else ()):
        group = design.factor_groups[f]
        checks.check_columns_exist(list(group), newdata)
        raw = np.column_stack([evaluate_new_rows(design.bars[b].common, frame)
                               for b, owner in enumerate(design.bar_factor) if owner == f])
        labels = level_labels(newdata, group)
        codes = pd.Index(factor.levels).get_indexer(labels)
        _check_new_levels(factor.name, newdata, group, codes, allow_new_levels)
        new = codes < 0
        codes[new] = factor.n_levels + pd.factorize(labels[new])[0]
        factors.append((codes, raw))
    return X, offset, factors


def with_offset(values: np.ndarray, offset: np.ndarray | None) -> np.ndarray:
    """``values`` plus the offset, if the model has one (its coefficient is 1)."""
    return values if offset is None else values + offset


def _new_offset(design, frame: pd.DataFrame) -> np.ndarray | None:
    if not design.offsets:
        return None
    return sum(evaluate_new_rows(offset.common, frame)[:, 0] for offset in design.offsets)


def _check_new_levels(name, newdata, group, codes, allow_new_levels) -> None:
    new = codes < 0
    if new.any() and not allow_new_levels:
        unseen = pd.unique(level_labels(newdata.loc[new], group))
        raise LMMError(
            f"newdata has {len(unseen)} level(s) of {name!r} not seen in the fit "
            f"({', '.join(map(str, unseen[:5]))}{' …' if len(unseen) > 5 else ''}); pass "
            "allow_new_levels=True to predict them (a REML/ML fit predicts them at the population level, "
            "random effects 0; a posterior draws their random effects from N(0, D))"
        )
