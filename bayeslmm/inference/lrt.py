"""Likelihood-ratio tests of nested models (lme4's anova), with boundary-corrected p-values.
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy import stats

from bayeslmm.checks import check_same_weights, same_response
from bayeslmm.errors import LMMError
from bayeslmm.inference.bootstrap import bootstrap_lrt_column
from bayeslmm.threads import one_blas_thread


@one_blas_thread()
def anova(*fits, names: list[str] | None = None, method: str = "lrt", n: int = 1000, seed=None) -> pd.DataFrame:
    """Likelihood-ratio table of nested models, one row per model in the order given.

    Columns ``npar, AIC, BIC, logLik, deviance, Chisq, Df, Pr(>Chisq)``.  REML fits whose
    fixed effects differ are refitted by ML first (lme4's behaviour, with a warning saying so).
    When the next model adds exactly one random-effect column (a variance and its covariances),
    the null value is on the boundary and ``Pr(>Chisq) boundary`` gives the p-value of the
    χ̄² mixture 0.5·χ²(Df−1) + 0.5·χ²(Df) (Self & Liang 1987; Stram & Lee 1994); the table's
    ``attrs["note"]`` says which mixture was used.

    ``method="bootstrap"`` adds ``Pr(>Chisq) bootstrap``: each row's Chisq referred to its
    parametric-bootstrap distribution under the previous (smaller) model, from ``n`` simulated
    responses refitted by both (pbkrtest's ``PBmodcomp``; see :mod:`bayeslmm.bootstrap`).

    Examples
    --------
    >>> import bayeslmm as blm
    >>> trees = blm.datasets.load("Sitka")
    >>> small = blm.LMM("size ~ time + (1 | tree)", trees).fit()
    >>> large = blm.LMM("size ~ time + (time | tree)", trees).fit()
    >>> round(float(blm.anova(small, large)["Chisq"].iloc[1]), 3)
    39.81
    """
    if len(fits) < 2:
        raise LMMError("anova compares at least two fitted models, e.g. anova(m0, m1)")
    _check_same_data(fits)
    fits = _refit_by_ml_if_needed(list(fits))
    labels = names or [f"model {i + 1}" for i in range(len(fits))]
    if len(labels) != len(fits):
        raise LMMError(f"names has {len(labels)} entries for {len(fits)} models")
    table = pd.DataFrame({"npar": [f.npar for f in fits], "AIC": [f.aic for f in fits],
                          "BIC": [f.bic for f in fits], "logLik": [f.loglik for f in fits],
                          "deviance": [-2 * f.loglik for f in fits]}, index=labels)
    chisq = np.r_[np.nan, 2 * np.diff(table["logLik"].to_numpy())]
    df = np.r_[np.nan, np.diff(table["npar"].to_numpy())]
    table["Chisq"], table["Df"] = chisq, df
    table["Pr(>Chisq)"] = [np.nan] + [stats.chi2.sf(c, d) if d > 0 else np.nan for c, d in zip(chisq[1:], df[1:])]
    notes = _boundary_column(table, fits)
    if method == "bootstrap":
        notes.append(bootstrap_lrt_column(table, fits, n, seed))
    elif method != "lrt":
        raise LMMError(f"method must be 'lrt' or 'bootstrap'; got {method!r}")
    table.attrs["note"] = " ".join(notes)
    return table


def _check_same_data(fits) -> None:
    first = fits[0].spec
    for fit in fits[1:]:
        if fit.spec.response_name != first.response_name:
            raise LMMError(f"models have different responses ({first.response_name!r} and "
                           f"{fit.spec.response_name!r}); a likelihood-ratio test needs the same y")
        if fit.spec.n != first.n or not same_response(fit.spec, first):
            raise LMMError(f"models were fitted to different rows ({first.n} and {fit.spec.n} observations); "
                           "fit them to the same data (drop missing values first)")
        check_same_weights(first, fit.spec)


def _refit_by_ml_if_needed(fits: list) -> list:
    reml = [f.reml for f in fits]
    fixed = {tuple(f.spec.fixef_names) for f in fits}
    if any(reml) and len(fixed) > 1:
        warnings.warn("refitting model(s) with ML (instead of REML) to compare fixed effects", UserWarning,
                      stacklevel=3)
        return [f.refit("ML") if f.reml else f for f in fits]
    if any(reml) and not all(reml):
        raise LMMError("cannot compare a REML fit with an ML fit; fit both the same way")
    return fits


def _random_columns(fit) -> set[tuple[str, str]]:
    return {(fit.spec.factors[t.factor].name, c) for t in fit.spec.terms for c in t.column_names}


def _boundary_column(table: pd.DataFrame, fits) -> list[str]:
    """p-values from the χ̄² mixture where the larger model adds one random-effect column."""
    column, notes = [np.nan], []
    for small, large, chisq, df in zip(fits[:-1], fits[1:], table["Chisq"][1:], table["Df"][1:]):
        added = _random_columns(large) - _random_columns(small)
        same_rest = (small.spec.fixef_names == large.spec.fixef_names
                     and _random_columns(small) <= _random_columns(large))
        if same_rest and len(added) == 1 and df >= 1:
            p = 0.5 * stats.chi2.sf(chisq, df - 1) + 0.5 * stats.chi2.sf(chisq, df) if df > 1 else \
                0.5 * stats.chi2.sf(chisq, 1)
            column.append(p)
            notes.append(f"{table.index[len(column) - 1]}: boundary p-value from 0.5·χ²({int(df) - 1}) + "
                         f"0.5·χ²({int(df)}) for the added random effect {added.pop()[1]!r}.")
        else:
            column.append(np.nan)
    if notes:
        table["Pr(>Chisq) boundary"] = column
    return notes
