"""A model of a Dask DataFrame: the two passes, the fits from the statistics, the lazy rows.

:class:`ScaledData` runs the first pass (global facts), learns the design, runs the second
pass (sufficient statistics) and keeps, for later, the delayed partitions: a residual
structure whitens them again at every φ the search tries (persisted on the workers first, so
that each pass re-reads no file), and per-row outputs map over them lazily.
"""
from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pandas as pd

from bayeslmm import checks
from bayeslmm.errors import ConvergenceWarning, LMMError
from bayeslmm.fit import optimize
from bayeslmm.fit.residual import check_nesting, fit_with_residual
from bayeslmm.fit.state import FitState
from bayeslmm.linalg.crossprod import CrossProducts
from bayeslmm.linalg.gradient import objective_gradient
from bayeslmm.model.spec import ModelSpec
from bayeslmm.scaleout import design as scaled_design
from bayeslmm.scaleout import passes
from bayeslmm.scaleout import statistics as scaled_statistics
from bayeslmm.scaleout.design import Template
from bayeslmm.scaleout.frame import clean_rows, model_columns
from bayeslmm.threads import one_blas_thread

SAMPLE_ROWS = 500  # rows a design is learnt on before the data set's statistics replace the sample's


class ScaledData:
    """A Dask DataFrame summarised for one model: ``spec`` (summarised), ``stats`` (without a
    residual structure), ``residual`` (the structure bound to a sample, for its parameters' names).

    Parameters
    ----------
    formula : str
        The model's lme4 formula.
    ddf : dask.dataframe.DataFrame
        The data; read twice (the two passes), never collected.
    structure : bayeslmm.cov structure
        The residual structure (``cov.Independent()`` for none).
    weights : str, optional
        The column of prior weights.
    """

    def __init__(self, formula: str, ddf, structure, weights: str | None = None):
        if weights is not None and not isinstance(weights, str):
            raise LMMError("with a Dask DataFrame, weights must be the name of one of its columns "
                           "(values in memory cannot be matched to the partitions' rows)")
        self.ddf = ddf
        extra = ((weights,) if weights else ()) + tuple(structure.columns)
        meta = pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in ddf.dtypes.items()})
        self.structure = structure if structure.columns else None
        head = _sample(ddf)
        template, facts = self._learn_design(model_columns(formula, meta, extra), meta, head, weights)
        sample = template.spec.design.data
        self.parts = self._partitions(template)
        self._summarise(template, facts, scaled_statistics.second_pass(self.parts, template, self._start_phi(sample)))
        checks.check_response_varies(self.spec)
        checks.check_response_precision(self.spec)
        checks.check_levels(self.spec)
        self.residual = None if self.structure is None else self._bound_to(sample)

    def _learn_design(self, columns, meta: pd.DataFrame, head: pd.DataFrame, weights) -> tuple[Template, object]:
        """The first pass, then the design learnt on the sample with the data set's levels and transforms."""
        sample, _ = clean_rows(head, columns)
        if len(sample) == 0:
            raise LMMError("the first rows of the Dask DataFrame all miss a value the model uses; a sample of "
                           "complete rows is needed to learn the design")
        transforms = scaled_design.stateful_transforms(*scaled_design.designs(columns, sample))
        requests = scaled_design.power_sum_requests(transforms, sample)
        group_name = None if self.structure is None else self._bound_to(sample).group_name
        facts = passes.first_pass(self.ddf, columns, requests, self.structure, group_name)
        categories = passes.categories(facts, meta)
        columns = dataclasses.replace(columns, categories=categories)
        levels = passes.factor_levels(facts, columns, categories)
        sample, _ = clean_rows(head, columns)
        return scaled_design.template(columns, sample, levels, facts.sums, weights, self.structure), facts

    def _summarise(self, template: Template, facts, total) -> None:
        """``spec``, ``template`` and ``stats`` from the second pass's sums, aliased columns dropped."""
        p = template.spec.p
        kept = scaled_design.non_aliased(total.moments, p)
        _warn_dropped(facts, template.columns.used, [template.spec.fixef_names[j] for j in range(p) if j not in kept])
        total = scaled_statistics.select_columns(total, kept, p)
        self.spec: ModelSpec = scaled_design.summarised_spec(template.spec, kept, total.moments, total.n)
        self.template = dataclasses.replace(template, spec=self.spec)
        if kept.size < p:  # the partitions evaluate the columns kept from now on
            self.parts = self._partitions(self.template)
        self.stats = scaled_statistics.cross_products_of(total, self.template) if self.structure is None else None

    def __getstate__(self) -> dict:
        """A pickled fit keeps its statistics, not the Dask graph or the workers' partitions."""
        return {**self.__dict__, "ddf": None, "parts": None}

    @property
    def data(self):
        """The Dask DataFrame (LMMError after pickling, which does not keep it)."""
        if self.ddf is None:
            raise LMMError("this fit was loaded from a file and does not hold its Dask DataFrame; per-row outputs and "
                           "refits with a residual structure need the model built again: bayeslmm.LMM(formula, ddf)")
        return self.ddf

    def _partitions(self, template: Template) -> list:
        import dask

        shared = dask.delayed(template)
        parts = [dask.delayed(scaled_statistics.partition_rows)(part, shared) for part in self.ddf.to_delayed()]
        if template.structure is not None:  # whitened again at every φ: evaluated once, kept on the workers
            parts = list(dask.persist(*parts))
        return parts

    def _bound_to(self, sample: pd.DataFrame):
        """The residual structure bound to the sample rows: its parameters' names, start and group column."""
        return self.structure.bind(sample.loc[:, list(self.structure.columns)])

    def _start_phi(self, sample: pd.DataFrame):
        return None if self.structure is None else self._bound_to(sample).start

    def stats_at(self, phi) -> tuple[CrossProducts, float]:
        """The data's cross-products whitened at φ, and Σ log|R_i(φ)|: one pass over the partitions."""
        self.data  # noqa: B018 (an LMMError after pickling)
        total = scaled_statistics.second_pass(self.parts, self.template, np.asarray(phi, dtype=float))
        return scaled_statistics.cross_products_of(total, self.template), total.logdet

    @one_blas_thread()
    def fit_state(self, layout, reml: bool, start=None, tolerances=None) -> "ScaledFitState":
        """REML or ML from the statistics (over φ too, one pass per φ, with a residual structure)."""
        if self.structure is None:
            polish = tolerances is None and self.stats.n_factors == 1
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                optsum = optimize.fit_theta(self.stats, layout, reml, start=start, tolerances=tolerances)
            for warning in caught:  # the convergence check is made again after the Newton steps
                if not (polish and issubclass(warning.category, ConvergenceWarning)):
                    warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
            if polish:
                optsum = _polished(optsum, self.stats, layout, reml)
            return ScaledFitState(self, self.spec, layout, reml, self.stats, optsum)
        if not self.spec.factors and self.residual.has_covariance_jacobian:
            raise LMMError("a residual structure without random effects is fitted with a gradient from the rows; "
                           "from a Dask DataFrame add a random effect, or fit in memory (ddf.compute())")
        self._check_partitions_nest()
        optsum, phi = fit_with_residual(self.spec, layout, self.residual, reml, stats_at=self.stats_at,
                                        start=self.residual.start)
        white, _ = self.stats_at(phi)
        return ScaledFitState(self, self.spec, layout, reml, white, optsum, self.residual, phi)

    def _check_partitions_nest(self) -> None:
        import dask

        def check(part):
            if part is not None:
                check_nesting(part.spec, part.bound)
                if part.bound.start.size != self.residual.start.size:
                    raise LMMError("the residual structure has parameters by level (e.g. one variance per time "
                                   "point) that differ between partitions; fit in memory (ddf.compute())")
            return 0

        dask.compute(*[dask.delayed(check)(part) for part in self.parts])


class ScaledFitState(FitState):
    """A fit state whose data are a Dask DataFrame (``source``, a :class:`ScaledData`): refits and
    re-whitening come from the statistics, never from rows."""

    def __init__(self, source: ScaledData, *args, **kwargs):
        self.source = source
        super().__init__(*args, **kwargs)

    def stats_at(self, phi) -> tuple[CrossProducts, float]:
        return (self.stats, 0.0) if self.residual is None else self.source.stats_at(phi)

    def refit(self, reml: bool | None = None, y=None, stats: CrossProducts | None = None, start=None,
              tolerances=None) -> "ScaledFitState":
        if y is not None or stats is not None:
            raise LMMError("refitting to another response needs the rows; with a Dask DataFrame, fit in memory "
                           "(ddf.compute()) for simulation-based methods")
        return self.source.fit_state(self.layout, self.reml if reml is None else reml, start=start,
                                     tolerances=tolerances)


def _polished(optsum, stats: CrossProducts, layout, reml: bool, steps: int = 4):
    """θ̂ after Newton steps (exact gradient, Hessian by its differences) while they shrink the gradient.

    L-BFGS-B's relative stop on the deviance (ftol) can end at a scaled gradient of ~1e-6, i.e. sds
    ~1e-8 apart between two fits whose statistics differ in the last bits (summation order); with
    one factor a step costs milliseconds against the passes over the data.  A step is taken when
    it shrinks the largest scaled gradient and does not raise the deviance beyond its rounding."""
    scale = layout.scale
    x = optsum.theta / scale

    def at(z):
        value, grad = objective_gradient(z * scale, stats, layout, reml)
        return value, grad * scale

    value, grad = at(x)
    for _ in range(steps):
        h = 1e-6 * np.maximum(np.abs(x), 1.0)
        hessian = np.column_stack([(at(x + step)[1] - grad) / h[j] for j, step in enumerate(np.diag(h))])
        try:
            trial = x - np.linalg.solve(0.5 * (hessian + hessian.T), grad)
        except np.linalg.LinAlgError:
            break
        if np.any(trial[layout.diagonal] <= 0):
            break
        trial_value, trial_grad = at(trial)
        if np.max(np.abs(trial_grad)) >= np.max(np.abs(grad)) or trial_value > value + 1e-12 * abs(value):
            break
        x, value, grad = trial, trial_value, trial_grad
    if value > optsum.deviance + 1e-12 * abs(optsum.deviance):
        x, value = optsum.theta / scale, optsum.deviance
    theta = x * scale
    converged, message, norm = optimize.check_convergence(theta, value, objective_gradient(theta, stats, layout, reml)[1],
                                                          stats, layout, reml, optsum.message)
    return dataclasses.replace(optsum, theta=theta, deviance=value, gradient_norm=norm, converged=converged,
                               message=f"{message} (L-BFGS-B, then Newton steps)")


def _sample(ddf) -> pd.DataFrame:
    with warnings.catch_warnings():  # fewer rows than asked in the first partitions is fine
        warnings.simplefilter("ignore", UserWarning)
        return ddf.head(SAMPLE_ROWS, npartitions=min(ddf.npartitions, 4))


def _warn_dropped(facts: passes.GlobalFacts, used: list[str], aliased: list[str]) -> None:
    """The in-memory fit's warnings: rows dropped for missing values, aliased columns dropped."""
    if facts.dropped:
        warnings.warn(f"dropped {facts.dropped} of {facts.kept + facts.dropped} rows with missing values in the "
                      f"columns the model uses ({', '.join(used)})", stacklevel=5)
    if aliased:
        plural = "s" if len(aliased) > 1 else ""
        warnings.warn(f"fixed-effect model matrix is rank deficient so dropping {len(aliased)} column{plural} / "
                      f"coefficient{plural}: {', '.join(aliased)}", stacklevel=5)
