"""The row bookkeeping residual structures share: group codes and time positions."""
from __future__ import annotations

import numpy as np
import pandas as pd

from bayeslmm.errors import LMMError


def codes(data: pd.DataFrame, column: str) -> np.ndarray:
    """Integer codes of ``column``'s levels, in sorted order of the levels."""
    return pd.factorize(data[column], sort=True)[0]


def ordered_times(data: pd.DataFrame, time: str, group: str):
    """Group codes, integer time positions, time gaps (from the first level, gaps kept) and the
    time levels; every group must have distinct time points."""
    groups = codes(data, group)
    values = data[time]
    if pd.api.types.is_numeric_dtype(values):
        levels = np.unique(values.to_numpy())
        if not np.allclose(levels, np.round(levels)):
            raise LMMError(f"time column {time!r} must hold integers or an ordered factor (visit numbers)")
        positions = np.searchsorted(levels, values.to_numpy())
        gaps = np.round(values.to_numpy() - levels.min()).astype(int)
    else:
        categories = values.astype("category").cat
        levels = np.asarray(categories.categories)
        positions = gaps = categories.codes.to_numpy()
    pairs = pd.DataFrame({"g": groups, "t": positions})
    if pairs.duplicated().any():
        count = int(pairs.duplicated().sum())
        raise LMMError(f"time {time!r} repeats within a level of {group!r} in {count} row(s); "
                       "each group needs distinct time points")
    return groups, positions, np.asarray(gaps), levels
