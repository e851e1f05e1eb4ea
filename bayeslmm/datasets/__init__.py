"""Bundled example data sets (see SOURCES.md beside this file)."""
from __future__ import annotations

from importlib import resources

import pandas as pd

from bayeslmm.errors import LMMError

NAMES = ("sleepstudy", "Dyestuff", "Penicillin", "Pastes", "Sitka")


def load(name: str) -> pd.DataFrame:
    """Load a bundled data set by name (case-insensitive): one of ``NAMES``.

    Examples
    --------
    >>> import bayeslmm as blm
    >>> blm.datasets.load("sleepstudy").shape
    (180, 3)
    >>> blm.datasets.load("sleepstudy").attrs["name"]
    'sleepstudy'
    """
    match = {n.lower(): n for n in NAMES}.get(str(name).lower())
    if match is None:
        raise LMMError(f"no bundled data set {name!r}; choose one of {', '.join(NAMES)}")
    with resources.files(__package__).joinpath(f"{match}.csv").open() as handle:
        data = pd.read_csv(handle, dtype=_dtypes(match))
    data.attrs["name"] = match  # what a summary's "Data:" line prints (see bayeslmm.LMM)
    return data


def _dtypes(name: str) -> dict[str, type]:
    # grouping columns stay labels even when they look like numbers (Subject 308, tree 1)
    return {"sleepstudy": {"Subject": str}, "Sitka": {"tree": str}}.get(name, {})
