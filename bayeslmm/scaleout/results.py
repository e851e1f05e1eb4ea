"""The REML/ML result of a Dask DataFrame model: per-row outputs are lazy Dask collections.

Everything read from the statistics (estimates, ``summary``, ``coef_table`` with Satterthwaite,
likelihood-ratio ``anova``, type-1 F tests, profile ``confint``, ``ranef`` with conditional
sds) is :class:`~bayeslmm.results.frequentist.LMMResult`'s own.  ``fitted``, ``residuals``,
``predict`` and ``pointwise_loglik`` map over the partitions and return Dask Series (call
``.compute()`` or write them out).  Methods that refit simulated responses or need every row
at once raise an LMMError that says so.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from bayeslmm.errors import LMMError
from bayeslmm.linalg import logdensity as ld
from bayeslmm.results.frequentist import QUANTILE_NAMES, LMMResult
from bayeslmm.results.newdata import new_data_matrices, read_newdata, with_offset
from bayeslmm.scaleout.design import Template
from bayeslmm.scaleout.frame import clean_rows
from bayeslmm.scaleout.statistics import factor_codes_and_columns, response_values

IN_MEMORY = "fit the model in memory instead (bayeslmm.LMM(formula, ddf.compute())) if the rows fit"


class DaskLMMResult(LMMResult):
    """A REML/ML fit of a Dask DataFrame (see the module docstring for what differs)."""

    @property
    def template(self) -> Template:
        return self.state.source.template

    def _rows_map(self, what: str, **extra):
        import dask

        meta = pd.Series(dtype=float, name=what)
        return self.state.source.data.map_partitions(
            partition_outputs, dask.delayed(self.template), what, self.state.profile.beta, dask.delayed(self._modes),
            self.sigma, meta=meta, **extra)

    def fitted(self):
        """Xβ̂ + Zb̂ (+ the offset) for the rows used in the fit: a lazy Dask Series."""
        return self._rows_map("fitted")

    def residuals(self):
        """y − fitted for the rows used in the fit: a lazy Dask Series."""
        return self._rows_map("residuals")

    def pointwise_loglik(self):
        """log N(y_i | x_iβ̂ + z_ib̂, σ̂²/w_i) of each row used in the fit (independent errors): a lazy Dask Series."""
        if self.state.residual is not None:
            raise LMMError("with a residual structure the rows of a group are correlated: their log-likelihood is not "
                           "a sum over rows")
        return self._rows_map("pointwise_loglik")

    def predict(self, newdata=None, include_re: bool = True, allow_new_levels: bool = False):
        """Predictions: lazy for the fitted rows (``newdata=None``) or a Dask ``newdata``; a pandas
        Series for an in-memory ``newdata`` (as :meth:`LMMResult.predict`)."""
        if newdata is None:
            return self.fitted() if include_re else self._rows_map("population")
        if type(newdata).__module__.split(".")[0] != "dask":
            return super().predict(newdata, include_re, allow_new_levels)
        import dask

        return newdata.map_partitions(partition_predictions, self.spec, self.state.profile.beta,
                                      dask.delayed(self._modes), include_re, allow_new_levels,
                                      meta=pd.Series(dtype=float, name="predicted"))

    def scaled_residual_quantiles(self) -> pd.Series:
        """As :meth:`LMMResult.scaled_residual_quantiles`, Dask's approximate quantiles (min and max exact)."""
        quantiles = self._rows_map("scaled").quantile([0, 0.25, 0.5, 0.75, 1]).compute()
        return pd.Series(np.asarray(quantiles), index=QUANTILE_NAMES)

    # --- what needs the rows ---------------------------------------------------------

    def simulate(self, n: int = 1, seed=None):
        raise LMMError(f"simulate() draws a response for every row, which a Dask DataFrame fit does not hold; {IN_MEMORY}")

    def bootstrap(self, n: int = 1000, seed=None, statistic=None):
        raise LMMError("the parametric bootstrap refits simulated responses of every row, which a Dask DataFrame fit "
                       f"does not hold; use confint(method='profile') or 'wald', or {IN_MEMORY}")

    def confint(self, method: str = "profile", level: float = 0.95, n: int = 1000, seed=None) -> pd.DataFrame:
        if method == "bootstrap":
            self.bootstrap()
        if method == "profile" and self.state.residual is not None:
            raise LMMError("profile intervals with a residual structure refit the rows for each fixed effect; use "
                           f"confint(method='wald'), or {IN_MEMORY}")
        return super().confint(method=method, level=level, n=n, seed=seed)

    def coef_table(self, ddf: str = "satterthwaite", level: float = 0.95) -> pd.DataFrame:
        _refuse_kenward_roger(ddf)
        return super().coef_table(ddf=ddf, level=level)

    def anova(self, type: int = 3, ddf: str = "satterthwaite") -> pd.DataFrame:
        _refuse_kenward_roger(ddf)
        if type == 3 and self.spec.p > 1:
            raise LMMError("type-3 hypotheses are built from the model matrix's rows; from a Dask DataFrame use "
                           f"anova(type=1) (sequential, from X'X), or {IN_MEMORY}")
        return super().anova(type=type, ddf=ddf)


def _refuse_kenward_roger(ddf: str) -> None:
    if ddf == "kenward-roger":
        raise LMMError("Kenward–Roger is not built from summarised data (it sums over each row's covariance); use "
                       f"ddf='satterthwaite', or {IN_MEMORY}")


def random_part(modes: list[np.ndarray], coded) -> np.ndarray | float:
    """Σ_f z_fi b_f[level_i] (levels unseen in the fit contribute 0)."""
    total = 0.0
    for b, (codes, raw) in zip(modes, coded):
        known = codes < b.shape[0]
        contribution = np.zeros(raw.shape[0])
        contribution[known] = np.einsum("is,is->i", raw[known], b[codes[known]])
        total = total + contribution
    return total


def partition_outputs(partition: pd.DataFrame, template: Template, what: str, beta, modes, sigma: float) -> pd.Series:
    """One partition's fitted values, residuals, population predictions, scaled residuals or
    pointwise log-likelihoods (its rows missing a used value left out, as in the fit)."""
    rows, _ = clean_rows(partition, template.columns)
    if len(rows) == 0:
        return pd.Series(dtype=float, name=what)
    X, offset, _ = new_data_matrices(template.spec, rows, allow_new_levels=False, include_re=False)
    population = with_offset(X @ beta, offset)
    if what == "population":
        return pd.Series(population, index=rows.index, name=what)
    fitted = population + random_part(modes, factor_codes_and_columns(template.spec, rows))
    if what == "fitted":
        return pd.Series(fitted, index=rows.index, name=what)
    residual = response_values(template, rows) - fitted
    root_w = 1.0 if template.weights is None else np.sqrt(rows[template.weights].to_numpy(dtype=float))
    scaled = residual * root_w / sigma
    values = {"residuals": residual, "scaled": scaled,
              "pointwise_loglik": -0.5 * (scaled**2 + ld.LOG_2PI + 2 * np.log(sigma / root_w))}[what]
    return pd.Series(values, index=rows.index, name=what)


def partition_predictions(partition: pd.DataFrame, spec, beta, modes, include_re: bool,
                          allow_new_levels: bool) -> pd.Series:
    """``predict`` on one partition of new data."""
    if len(partition) == 0:
        return pd.Series(dtype=float, name="predicted")
    rows = read_newdata(spec, partition)
    X, offset, coded = new_data_matrices(spec, rows, allow_new_levels, include_re)
    values = with_offset(X @ beta, offset)
    if include_re:
        values = values + random_part(modes, coded)
    return pd.Series(values, index=rows.index, name="predicted")
