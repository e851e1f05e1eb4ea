"""LMM: one model specification, fitted by REML or ML or sampled with NUTS."""
from __future__ import annotations

import dataclasses
import warnings
from functools import cached_property

import pandas as pd

from bayeslmm import bayes, checks, frames
from bayeslmm.errors import LMMError
from bayeslmm.fit import residual as fit_residual
from bayeslmm.fit.state import fit_state
from bayeslmm.formula import build_spec
from bayeslmm.linalg.crossprod import CrossProducts, cross_products
from bayeslmm.model import priors as priors_module
from bayeslmm.model import residual as cov
from bayeslmm.model.covariance import ThetaLayout, term_labels, theta_layout
from bayeslmm.model.spec import ModelSpec
from bayeslmm.results.bayesian import BayesResult
from bayeslmm.results.frequentist import LMMResult, check_method
from bayeslmm.results.posterior_printing import prior_table
from bayeslmm.scaleout import DaskLMMResult, ScaledData
from bayeslmm.threads import one_blas_thread


class LMM:
    """A linear mixed model y = Xβ + Zb + ε from an lme4 formula.

    Parameters
    ----------
    formula : str
        lme4 syntax: fixed effects as in R (``a*b``, ``0 +``, ``I(x^2)``, ``poly(x, 2)``,
        ``log(x)``, ``scale(x)``, ``offset(x)``, ``C(x, Sum)``, ``C(x, levels=[...])``,
        ``Q("my col")``) and random terms ``(1|g)``, ``(x|g)``, ``(0 + x|g)``, ``(x||g)``,
        ``(1|a/b)``, ``(1|a:b)``, crossed ``(1|a) + (1|b)``.  The README's formula table
        lists every feature with its lme4 equivalent; anything else is an LMMError.
    data : data frame
        pandas (numpy- or pyarrow-backed), polars, a pyarrow Table, or any frame narwhals or
        the dataframe interchange protocol reads; converted once to pandas, never modified.
        A ``dask.dataframe.DataFrame`` is summarised instead, partition by partition, on the
        active Dask scheduler (:mod:`bayeslmm.scaleout`; docs/dask.md), its rows never collected.
        Rows missing a used value are dropped with a warning.  Covariate and response
        columns holding only numbers written as text are read as numbers (with a warning).
    residual : bayeslmm.cov structure or str, optional
        The within-group covariance of the errors, e.g. ``cov.AR1(time="visit", group="tree")``
        or the shorthand ``"ar1(visit | tree)"``; independent errors by default.
    weights : str or array-like, optional
        lme4's prior weights, Var(ε_i) = σ²/w_i: a column of ``data`` (whose missing values
        drop their rows, as for the formula's columns) or one positive number per row of
        ``data``.  They scale every row of [y X Z] by √w_i in the sufficient statistics and
        add ½ Σ log w_i to the log-likelihood, as in lme4.  Not combined with ``residual``.
    data_name : str, optional
        What the summaries' ``Data:`` line calls the data (lme4 prints the expression passed as
        ``data``, which Python cannot see).  By default ``data.attrs["name"]`` when the frame
        has one — :func:`bayeslmm.datasets.load` names the bundled data sets so, and pandas
        carries the name through copies and subsets — and otherwise ``"data"``.

    Examples
    --------
    >>> import bayeslmm as blm
    >>> model = blm.LMM("Reaction ~ Days + (Days | Subject)", blm.datasets.load("sleepstudy"))
    >>> fit = model.fit(method="REML")
    >>> round(fit.sigma, 4)
    25.5918
    >>> blm.LMM("y ~ x", pd.DataFrame({"x": [1, 2, 3, 4], "y": [1, 3, 2, 5]}), data_name="trial").spec.data_name
    'trial'
    """

    def __init__(self, formula: str, data: pd.DataFrame, residual=None, weights=None, data_name: str | None = None,
                 **unknown):
        checks.check_arguments(unknown, LMM.__init__)
        data_name = str(data_name or getattr(data, "attrs", {}).get("name") or "data")
        residual = cov.parse(residual) if isinstance(residual, str) else (residual or cov.Independent())
        if weights is not None and residual.columns:
            raise LMMError("weights cannot be combined with a residual structure yet (both set the errors' "
                           "covariance); fit either weights=... with independent errors, or the residual "
                           "structure alone (cov.Heteroscedastic estimates unequal variances by group)")
        self.structure = residual
        self.scaled = None  # a Dask DataFrame's summary
        if frames.is_dask_frame(data):
            self.scaled = ScaledData(formula, data, residual, weights)
            self.spec, self.residual = self.scaled.spec, self.scaled.residual
            return
        data = frames.to_pandas(data)  # any data frame, converted once here  # unbound: what a saved posterior rebuilds the model with
        weight_column = (weights,) if isinstance(weights, str) else ()
        if weights is not None:  # the argument's own errors first
            weights = checks.weight_values(weights, data)
        self.spec: ModelSpec = build_spec(formula, data, extra_columns=tuple(residual.columns) + weight_column)
        if weights is not None:
            self.spec = _with_weights(self.spec, weights, data)
        self.spec = dataclasses.replace(self.spec, data_name=data_name)
        rows = data.loc[self.spec.row_labels, list(residual.columns)] if residual.columns else None
        self.residual = residual.bind(rows) if rows is not None else None
        if self.residual is not None:
            fit_residual.check_nesting(self.spec, self.residual)

    @cached_property
    def stats(self) -> CrossProducts:
        """Sufficient statistics, computed once and reused by every fit of this model."""
        return cross_products(self.spec) if self.scaled is None else self.scaled.stats

    @cached_property
    def layout(self) -> ThetaLayout:
        return theta_layout(self.spec)

    # NUTS's options and their defaults, kept here only: fit's signature has None for each, to
    # tell an option passed (an error with REML/ML) from one left out (this default)
    NUTS_DEFAULTS = {"priors": None, "draws": 1000, "tune": 1000, "chains": 4, "random_seed": None,
                     "marginalize": None, "sampler": None, "progressbar": True, "target_accept": 0.8,
                     "log_likelihood": True, "cores": None}

    def fit(self, method: str = "REML", *, start=None, priors: dict | None = None, draws: int | None = None,
            tune: int | None = None, chains: int | None = None, random_seed=None, marginalize: bool | None = None,
            sampler: str | None = None, progressbar: bool | None = None, target_accept: float | None = None,
            log_likelihood: bool | None = None, cores: int | None = None, **unknown) -> LMMResult | BayesResult:
        """Fit by ``"REML"`` (default) or ``"ML"``, or sample the posterior with ``"NUTS"``.

        Every other argument belongs to one method; passing it to another is an LMMError.

        REML/ML: ``start`` is an optional θ to start from (not with a residual structure).

        NUTS (defaults in ``LMM.NUTS_DEFAULTS``): ``priors`` overrides the default priors by
        name (see :mod:`bayeslmm.priors`); ``draws``, ``tune``, ``chains``, ``random_seed``,
        ``progressbar`` and ``target_accept`` go to the sampler.  ``sampler``: by default
        (``None``) ``"kernel"`` — nutpie's NUTS over the compiled log-density and gradient
        (:mod:`bayeslmm.linalg.compiled`) — where it covers the model (marginalised, one grouping
        factor, no residual structure), ``"pymc"`` (PyMC's NUTS on the PyMC model) otherwise;
        ``"nutpie"`` runs nutpie on PyMC's compiled graph.  ``marginalize=True`` samples σ, the sds and correlations
        with b and β integrated out by the shared log-density, then draws β and b exactly for
        every draw; ``marginalize=False`` samples the hierarchical model.  The default is True,
        except for a residual structure with several grouping factors (hierarchical, with a
        warning).  ``log_likelihood`` stores the pointwise log-likelihood for LOO.  ``cores``:
        chains run in parallel processes (PyMC's default here is one per two CPUs); worth it
        when sampling takes much longer than starting the workers, e.g. on large data.

        Examples
        --------
        >>> import bayeslmm as blm
        >>> model = blm.LMM("Reaction ~ Days + (1 | Subject)", blm.datasets.load("sleepstudy"))
        >>> model.fit(method="REML", draws=500)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        bayeslmm.errors.LMMError: fit(method='REML') does not take draws=500: an option of method='NUTS' ...
        """
        checks.check_arguments(unknown, LMM.fit)
        method = check_method(method)
        nuts = {"priors": priors, "draws": draws, "tune": tune, "chains": chains, "random_seed": random_seed,
                "marginalize": marginalize, "sampler": sampler, "progressbar": progressbar,
                "target_accept": target_accept, "log_likelihood": log_likelihood, "cores": cores}
        nuts = {name: value for name, value in nuts.items() if value is not None}
        self._check_options(method, start, nuts)
        if method == "NUTS":
            return self._sample({**LMM.NUTS_DEFAULTS, **nuts})
        if self.scaled is not None:
            return DaskLMMResult(self.scaled.fit_state(self.layout, method == "REML", start=start))
        with one_blas_thread():  # the cross-products too: the same sums on every machine
            stats = self.stats if self.residual is None else None  # re-whitened for every φ otherwise
            return LMMResult(fit_state(self.spec, self.layout, method == "REML", residual=self.residual,
                                       stats=stats, start=start))

    def _check_options(self, method: str, start, nuts: dict) -> None:
        """LMMError for an argument the method does not use (``nuts``: the NUTS options passed)."""
        if method != "NUTS" and nuts:
            passed = ", ".join(f"{name}={value!r}" for name, value in nuts.items())
            it, option = ("it", "an option") if len(nuts) == 1 else ("them", "options")
            raise LMMError(f"fit(method={method!r}) does not take {passed}: {option} of method='NUTS' "
                           f"(sampling the posterior); drop {it}, or pass method='NUTS'")
        if method == "NUTS" and start is not None:
            raise LMMError("fit(method='NUTS') does not take start=: it is the starting θ of a REML/ML fit "
                           "(NUTS chooses its own initial values); drop it, or pass method='REML'")
        if start is not None and self.residual is not None:
            raise LMMError("fit() does not take start= with a residual structure: the fit optimises θ and the "
                           "structure's parameters together from its own start; drop start=")

    def _sample(self, options: dict) -> BayesResult:
        """NUTS with every option set (``NUTS_DEFAULTS`` filled in)."""
        marginalize = options.pop("marginalize")
        if marginalize is None:
            marginalize = len(self.spec.factors) <= 1 or self.residual is None
            if not marginalize:
                warnings.warn(f"sampling the hierarchical model: marginalising {len(self.spec.factors)} grouping "
                              "factors with a residual structure is not built yet (pass marginalize=False to "
                              "silence this)", UserWarning, stacklevel=3)
        if not marginalize:
            self._check_rows_in_memory("the hierarchical model (marginalize=False) has a likelihood term per row")
        setup = self._bayes_setup(options.pop("priors"))
        options["sampler"] = bayes.resolve_sampler(setup, options["sampler"], marginalize)
        idata = bayes.sample(setup, marginalize=marginalize, **options)
        return BayesResult(setup, idata, marginalize, options["sampler"], model=self)

    def pymc_model(self, marginalize: bool = False, priors: dict | None = None):
        """The PyMC model: hierarchical (b = L z, non-centred) or with b and β integrated out."""
        if not marginalize:
            self._check_rows_in_memory("the hierarchical model has a likelihood term per row")
        return bayes.build_model(self._bayes_setup(priors), marginalize)

    def prior_summary(self, priors: dict | None = None) -> pd.DataFrame:
        """The priors ``fit(method="NUTS", priors=priors)`` would sample with, their data-scaled
        values filled in, one row per parameter (brms's ``prior_summary``; see
        :meth:`bayeslmm.results.bayesian.BayesResult.prior_summary`).

        Examples
        --------
        >>> import bayeslmm as blm
        >>> model = blm.LMM("Reaction ~ Days + (Days | Subject)", blm.datasets.load("sleepstudy"))
        >>> model.prior_summary()["prior"].tolist()  # doctest: +NORMALIZE_WHITESPACE
        ['Normal(mu=298.5, sigma=140.4)', 'Normal(mu=0, sigma=48.89)', 'LKJ(2)', 'HalfStudentT(nu=3, sigma=56.17)',
         'HalfStudentT(nu=3, sigma=10.52)', 'Exponential(scale=56.17)']
        """
        return prior_table(self.spec, self._bayes_setup(priors).priors, residual=self.residual is not None)

    def sample_prior_predictive(self, draws: int = 500, priors: dict | None = None, random_seed=None):
        """Draws from the priors and the prior predictive of y (ArviZ DataTree)."""
        self._check_rows_in_memory("the prior predictive draws y for every row")
        return bayes.prior_predictive(self._bayes_setup(priors), draws, random_seed)

    def _check_rows_in_memory(self, why: str) -> None:
        if self.scaled is not None:
            raise LMMError(f"{why}, and a model of a Dask DataFrame does not hold its rows; use the marginalised "
                           "posterior (fit(method='NUTS')), or a model of the rows in memory (ddf.compute())")

    def _bayes_setup(self, priors: dict | None) -> bayes.BayesSetup:
        if self.scaled is not None and self.residual is not None:
            raise LMMError("the posterior with a residual structure whitens the rows at every draw; from a Dask "
                           "DataFrame fit it by REML/ML, or sample in memory (ddf.compute())")
        resolved = priors_module.resolve(self.spec, tuple(term_labels(self.spec.terms)), priors,
                                         residual=self.residual is not None)
        return bayes.BayesSetup(self.spec, self.stats, resolved, self.residual)

    def __repr__(self) -> str:
        groups = ", ".join(f"{f.name} ({f.n_levels})" for f in self.spec.factors) or "none"
        return f"LMM({self.spec.formula!r}; {self.spec.n} observations; groups: {groups})"


def _with_weights(spec: ModelSpec, values, data: pd.DataFrame) -> ModelSpec:
    """The spec with the prior weights of its rows (``values``: one per row of ``data``), checked
    positive and finite."""
    if spec.n < len(data):  # rows were dropped: pick the kept ones by their labels
        if not data.index.is_unique:
            raise LMMError("weights with rows dropped for missing values need a DataFrame with unique index "
                           "labels, to tell which weights belong to the kept rows; call data.reset_index() first")
        values = values[data.index.get_indexer(spec.row_labels)]
    checks.check_weights(values)
    return dataclasses.replace(spec, weights=values)
