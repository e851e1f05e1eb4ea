"""ModelSpec: the plain, immutable description of a linear mixed model's data.

Everything downstream (sufficient statistics, the log-density, the optimiser,
the Bayesian model, the result tables) reads only this.  No pymc, no scipy.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class GroupingFactor:
    """One grouping factor with the columns of every random term on it.

    ``raw[:, s]`` multiplies ``b[codes, s]``: Z is never formed, its rows are
    ``raw[i]`` placed at the columns of level ``codes[i]``.
    """

    name: str  # lme4's label: "Subject", "cask:batch"
    codes: np.ndarray  # (n,) level index of each row
    levels: tuple[str, ...]
    raw: np.ndarray  # (n, S) left-hand-side columns of all terms on this factor
    column_names: tuple[str, ...]

    @property
    def n_levels(self) -> int:
        return len(self.levels)

    @property
    def n_columns(self) -> int:
        return self.raw.shape[1]


@dataclass(frozen=True)
class RandomTerm:
    """One bar ``(lhs | g)``: columns of one factor sharing one covariance matrix."""

    group_name: str
    column_names: tuple[str, ...]
    factor: int  # index into ModelSpec.factors
    offset: int  # first column of this term inside the factor's raw matrix

    @property
    def size(self) -> int:
        return len(self.column_names)

    @property
    def columns(self) -> slice:
        return slice(self.offset, self.offset + self.size)


@dataclass(frozen=True)
class ModelSpec:
    """y, X and the random-effect factors of one model, rows already cleaned."""

    formula: str
    response_name: str
    y: np.ndarray  # (n,) the working response: the observed response minus the offset, if any
    X: np.ndarray  # (n, p)
    fixef_names: tuple[str, ...]
    factors: tuple[GroupingFactor, ...]  # by decreasing number of levels
    terms: tuple[RandomTerm, ...]  # lme4's order: by decreasing number of levels
    row_labels: pd.Index  # the caller's index labels of the rows used
    design: Any = field(default=None, compare=False, repr=False)  # for new data
    # offset() terms, summed: their coefficient is fixed at 1, so they are subtracted from
    # the response once (y above) and added back in fitted values and predictions
    offset: np.ndarray | None = field(default=None, compare=False, repr=False)  # (n,)
    # lme4's prior weights: Var(ε_i) = σ² / w_i
    weights: np.ndarray | None = field(default=None, compare=False, repr=False)  # (n,)
    # what the summary's "Data:" line calls the data (lme4 prints the call's expression)
    data_name: str = field(default="data", compare=False)
    # data summarised, not held (bayeslmm.scaleout: a Dask DataFrame): the number of rows; y, X and
    # the factors' columns are then a few moment rows with the data's means and second moments
    summarised_rows: int | None = field(default=None, compare=False, repr=False)

    @property
    def observed(self) -> np.ndarray:
        """The response as observed (the offset added back)."""
        return self.y if self.offset is None else self.y + self.offset

    @property
    def log_weights(self) -> float:
        """Σ log w_i: the prior weights add ½ Σ log w_i to the Gaussian log-likelihood (0 without)."""
        return 0.0 if self.weights is None else float(np.log(self.weights).sum())

    @property
    def noise_scale(self) -> np.ndarray | float:
        """sd(ε_i) / σ = 1/√w_i (1.0 without weights): what simulated noise and pointwise
        densities scale σ by."""
        return 1.0 if self.weights is None else 1.0 / np.sqrt(self.weights)

    def weighted(self) -> "ModelSpec":
        """This spec with y, X and every factor's columns scaled by √w and no weights: an
        unweighted model whose log-likelihood differs from this one's only by ½ Σ log w_i."""
        if self.weights is None:
            return self
        root = np.sqrt(self.weights)
        factors = tuple(replace(f, raw=f.raw * root[:, None]) for f in self.factors)
        return replace(self, y=self.y * root, X=self.X * root[:, None], factors=factors, weights=None)

    @property
    def n(self) -> int:
        return self.y.shape[0] if self.summarised_rows is None else self.summarised_rows

    @property
    def rows_in_memory(self) -> bool:
        """False for a spec of summarised data, whose per-row arrays are moment rows, not the data."""
        return self.summarised_rows is None

    @property
    def p(self) -> int:
        return self.X.shape[1]
