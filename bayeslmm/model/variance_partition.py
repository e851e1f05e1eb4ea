"""The variance partition: each grouping factor's share of the variance and its intraclass
correlation (ICC), defined once for REML/ML fits and for posteriors (applied to every draw).

The course notes (week 6, "Random intercept model") define the ICC of a random intercept
b_i ~ N(0, d) with errors N(0, σ²I) as the correlation of two observations of one group:

    Cov(Y_ij, Y_ik) = d + σ² I(j = k)  ⇒  Corr(Y_ij, Y_ik) = d / (d + σ²) = ρ,  j ≠ k,

and their table of variance components ("Interpretation of variance components") reports each
variance and its share of the summed variances, ``var_prop`` (tree 0.908, Residual 0.092 for
Sitka).  With several grouping factors the same definition, read off the marginal covariance
V = ZDZ' + σ²I at covariates 0, gives for two observations that share the group of factor f:

    icc_f = (Σ of the intercept variances of f and of every factor f is nested in) / total,
    total = Σ of all the intercept variances + σ².

For nested factors (``(1|batch/cask)``) two samples of one cask share its batch too, so the
cask's ICC includes the batch's variance; two samples of one batch from different casks
correlate by batch / total only.  For crossed factors the ICC of f is the correlation of two
observations that share f's group and no other.  Nesting is read from the data: f is nested in
g when every group of f lies inside one group of g.

Random slopes have other units (response per unit of their covariate): their variances are
reported, but neither counted in the total nor given a share or an ICC (NaN).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bayeslmm.errors import LMMError
from bayeslmm.model.spec import ModelSpec

INTERCEPT = "(Intercept)"
RESIDUAL = "Residual"


@dataclass(frozen=True)
class VarianceRow:
    """One row of the partition: a random-effect column of a term, or the residual."""

    group: str  # the grouping factor's name, or "Residual"
    effect: str  # the term's column ("(Intercept)", "Days"); "" for the residual
    factor: int | None  # index into spec.factors; None for the residual

    @property
    def is_intercept(self) -> bool:
        return self.effect == INTERCEPT


def variance_rows(spec: ModelSpec) -> list[VarianceRow]:
    """The partition's rows: each term's columns in lme4's term order, then the residual."""
    rows = [VarianceRow(spec.factors[term.factor].name, name, term.factor)
            for term in spec.terms for name in term.column_names]
    return rows + [VarianceRow(RESIDUAL, "", None)]


def nested_in(spec: ModelSpec) -> np.ndarray:
    """``nested[f, g]``: every group of factor f lies inside one group of factor g (f in f too)."""
    factors = spec.factors
    if len(factors) > 1 and not spec.rows_in_memory:
        raise LMMError("intraclass correlations with several grouping factors need to know which factors are nested, "
                       "which is read from the rows; a model of a Dask DataFrame does not hold them (fit in memory: "
                       "bayeslmm.LMM(formula, ddf.compute()))")
    nested = np.eye(len(factors), dtype=bool)
    for f, inner in enumerate(factors):
        for g, outer in enumerate(factors):
            if f != g:
                pairs = np.unique(np.c_[inner.codes, outer.codes], axis=0)
                nested[f, g] = len(pairs) == len(np.unique(inner.codes))
    return nested


def variance_partition(spec: ModelSpec, variances: np.ndarray) -> dict[str, np.ndarray]:
    """``var_prop`` and ``icc`` for each row of :func:`variance_rows` (the module docstring
    defines them).

    ``variances`` holds the rows' variances on its last axis, σ² last; leading axes (draws)
    are kept, so a posterior passes all its draws at once.  NaN where a row has no share
    (slopes) or no ICC (slopes, the residual).
    """
    variances = np.asarray(variances, dtype=float)
    rows = variance_rows(spec)
    by_factor = np.zeros(variances.shape[:-1] + (len(spec.factors),))
    for k, row in enumerate(rows[:-1]):
        if row.is_intercept:
            by_factor[..., row.factor] += variances[..., k]
    total = by_factor.sum(axis=-1) + variances[..., -1]
    shared = by_factor @ nested_in(spec).T.astype(float)  # shared[..., f]: f's and its parents' variance
    var_prop = np.full(variances.shape, np.nan)
    icc = np.full(variances.shape, np.nan)
    for k, row in enumerate(rows):
        if row.factor is None:
            var_prop[..., k] = variances[..., k] / total
        elif row.is_intercept:
            var_prop[..., k] = variances[..., k] / total
            icc[..., k] = shared[..., row.factor] / total
    return {"var_prop": var_prop, "icc": icc}
