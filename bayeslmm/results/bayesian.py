"""BayesResult: a posterior from NUTS, as ArviZ data and pandas tables lme4/brms users know."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import xarray as xr

from bayeslmm import bayes
from bayeslmm.checks import check_level, check_same_weights, same_response
from bayeslmm.errors import LMMError
from bayeslmm.inference.emmeans import posterior_contrasts, posterior_emmeans
from bayeslmm.model.covariance import corr_variable, effect_dim, pair_dim, sd_variable, term_pairs, varcorr_rows
from bayeslmm.model.variance_partition import variance_partition, variance_rows
from bayeslmm.persist import save_posterior
from bayeslmm.results.counts import SpecCounts
from bayeslmm.results.newdata import new_data_matrices, read_newdata
from bayeslmm.results.posterior_printing import BayesSummary, prior_table

RHAT_LIMIT = 1.01
ESS_PER_CHAIN = 100  # bulk/tail ESS below 100 per chain is reported as low (Vehtari et al. 2021)


class PosteriorWarning(UserWarning):
    """Divergences, R-hat above 1.01 or a low effective sample size."""


class BayesResult(SpecCounts):
    """A linear mixed model's posterior, sampled with NUTS.

    ``idata`` is the ArviZ DataTree (``posterior``, ``sample_stats``, ``observed_data``,
    ``log_likelihood``); the tables use ArviZ's columns (``mean, sd, l-95% CI, u-95% CI,
    ess_bulk, ess_tail, r_hat, mcse_mean, mcse_sd``).

    The API is :class:`~bayeslmm.results.frequentist.LMMResult`'s: tables are methods
    (``fixef()``, ``varcorr()``, ``ranef()``, ``residual_params()``, ``variance_components()``,
    ``predict()``), because they take ``level=``; scalars are properties (``nobs``, ``ngrps``).
    ``level`` (default 0.95) is the probability of the equal-tailed interval between the
    posterior's (1 − level)/2 and (1 + level)/2 quantiles, in the columns ``l-95% CI`` and
    ``u-95% CI`` (named after the level, as brms names them).

    Examples
    --------
    >>> import bayeslmm as blm
    >>> model = blm.LMM("Reaction ~ Days + (Days | Subject)", blm.datasets.load("sleepstudy"))
    >>> post = model.fit(method="NUTS", draws=200, tune=300, chains=2, random_seed=1, progressbar=False)
    >>> list(post.fixef().index)
    ['(Intercept)', 'Days']
    """

    def __init__(self, setup: bayes.BayesSetup, idata, marginalize: bool, sampler: str, model=None):
        self.setup, self.idata, self._model = setup, idata, model
        self.marginalize, self.sampler = marginalize, sampler
        self.diagnostics = self._diagnose()

    @property
    def spec(self):
        return self.setup.spec

    @property
    def structure(self):
        """The residual structure as written (unbound), e.g. ``cov.AR1(time=..., group=...)``."""
        return self._model.structure

    def save(self, path):
        """Write the posterior and the model to one netCDF file; :func:`bayeslmm.load` reads it.

        The draws go through exactly (ArviZ's groups, h5netcdf); the model is rebuilt on
        loading from the formula, the training rows, the residual structure and the priors
        stored beside them (docs/design.md, "Saved posteriors").  Returns the path.

        Examples
        --------
        >>> import tempfile, pathlib
        >>> import bayeslmm as blm
        >>> model = blm.LMM("Reaction ~ Days + (1 | Subject)", blm.datasets.load("sleepstudy"))
        >>> post = model.fit(method="NUTS", draws=100, tune=100, chains=2, random_seed=1, progressbar=False)
        >>> path = post.save(pathlib.Path(tempfile.mkdtemp()) / "posterior.nc")
        >>> blm.load(path).fixef().equals(post.fixef())
        True
        """
        return save_posterior(self, path)

    @property
    def posterior(self) -> xr.Dataset:
        return self.idata["posterior"].to_dataset()

    # --- tables --------------------------------------------------------------------------

    def fixef(self, level: float = 0.95) -> pd.DataFrame:
        """Posterior summary of the fixed effects, indexed by their names."""
        table = _summary({"beta": self.posterior["beta"]}, level)
        table.index = list(self.spec.fixef_names)
        return table

    def varcorr(self, level: float = 0.95) -> pd.DataFrame:
        """Standard deviations, correlations and σ, with lme4's ``grp, var1, var2`` columns."""
        rows, draws = [], {}
        posterior = self.posterior
        for term, label in zip(self.spec.terms, self.setup.labels):
            pairs = term_pairs(term)
            for key, (r, c) in varcorr_rows(term, label):
                rows.append(key)
                draws[f"r{len(rows)}"] = (posterior[sd_variable(label)].isel({effect_dim(label): r}) if r == c else
                                          posterior[corr_variable(label)].isel({pair_dim(label): pairs.index((r, c))}))
        rows.append(("Residual", None, None))
        draws[f"r{len(rows)}"] = posterior["sigma"]
        return _labelled(_summary(draws, level), rows, ["grp", "var1", "var2"])

    def emmeans(self, specs, by=None, at=None, level: float = 0.95, point: str = "median",
                interval: str = "hpd") -> pd.DataFrame:
        """Estimated marginal means over the posterior, as emmeans reports them for brms.

        The reference grid and ``specs, by, at`` are :meth:`LMMResult.emmeans`'s; each mean is a
        linear function l'β, summarised over the draws of β by its ``point`` (``"median"``, as
        emmeans, or ``"mean"``) and ``interval`` (``"hpd"``: highest posterior density, columns
        ``lower.HPD, upper.HPD``; ``"eti"``: equal-tailed, ``lower.ETI, upper.ETI``).

        Examples
        --------
        >>> import bayeslmm as blm
        >>> model = blm.LMM("Reaction ~ Days + (Days | Subject)", blm.datasets.load("sleepstudy"))
        >>> post = model.fit(method="NUTS", draws=200, tune=300, chains=2, random_seed=1, progressbar=False)
        >>> list(post.emmeans("Days", at={"Days": [0, 9]}).columns)
        ['Days', 'emmean', 'lower.HPD', 'upper.HPD']
        """
        return posterior_emmeans(self, specs, by=by, at=at, level=level, point=point, interval=interval)

    def contrasts(self, specs, method: str = "pairwise", by=None, at=None, level: float = 0.95,
                  point: str = "median", interval: str = "hpd") -> pd.DataFrame:
        """Contrasts of the posterior's marginal means (``"pairwise"`` or ``"trt.vs.ctrl"``):
        ``contrast``, the by variables, ``estimate`` and the interval, as :meth:`emmeans`."""
        return posterior_contrasts(self, specs, method=method, by=by, at=at, level=level, point=point,
                                   interval=interval)

    def residual_params(self, level: float = 0.95) -> pd.DataFrame:
        """Posterior of the residual structure: ρ, sd ratios per level (the first is 1 by
        definition and left out), the unstructured correlations; empty for σ²I."""
        bound, posterior = self.setup.residual, self.posterior
        if bound is None:
            return pd.DataFrame()
        draws = bound.posterior_draws(posterior)
        table = _summary({k.replace("[", "_").replace("]", "").replace(",", "_"): v for k, v in draws.items()},
                         level)
        table.index = list(draws)
        return table

    def variance_components(self, level: float = 0.95) -> pd.DataFrame:
        """Posterior of each random effect's and the residual's variance and sd, its share of the
        variance (``var_prop``) and its intraclass correlation (``icc``).

        One row per ``group, effect, measure``: the rows and measures of the REML/ML fit's
        ``variance_components()`` (slopes have no ``var_prop`` or ``icc``, the residual no
        ``icc``), each measure computed per draw by
        :func:`~bayeslmm.model.variance_partition.variance_partition` and then summarised.
        """
        posterior = self.posterior
        sds = [posterior[sd_variable(label)].isel({effect_dim(label): s}).values
               for term, label in zip(self.spec.terms, self.setup.labels) for s in range(term.size)]
        variances = np.stack(sds + [posterior["sigma"].values], axis=-1) ** 2  # (chain, draw, row)
        measures = {"variance": variances, "sd": np.sqrt(variances), **variance_partition(self.spec, variances)}
        keys, draws = [], {}
        for k, row in enumerate(variance_rows(self.spec)):
            for name, values in measures.items():
                if not np.isnan(values[..., k]).all():  # NaN: the measure does not apply to this row
                    keys.append((row.group, row.effect, name))
                    draws[f"r{len(keys)}"] = values[..., k]
        return _labelled(_summary(draws, level), keys, ["group", "effect", "measure"])

    def ranef(self, level: float = 0.95) -> pd.DataFrame:
        """Posterior of the random effects: ``grpvar, term, grp`` then the summary columns."""
        frames = []
        for factor in self.spec.factors:
            table = _summary({"b": self.posterior[f"b_{factor.name}"]}, level)
            keys = [(factor.name, term, group) for group in factor.levels for term in factor.column_names]
            table = _labelled(table, keys, ["grpvar", "term", "grp"])
            order = np.arange(len(table)).reshape(factor.n_levels, factor.n_columns).T.reshape(-1)
            frames.append(table.iloc[order])
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    # --- diagnostics and reports -------------------------------------------------------------

    def _diagnose(self) -> dict:
        stats = self.idata["sample_stats"].to_dataset()
        table = pd.concat([self.fixef(), self.varcorr(), self.residual_params()])  # every reported parameter
        chains = stats.sizes["chain"]
        found = {
            "divergences": int(stats["diverging"].values.sum()),
            "max_r_hat": float(table["r_hat"].max()),
            "min_ess_bulk": float(table["ess_bulk"].min()),
            "min_ess_tail": float(table["ess_tail"].min()),
            "draws": int(stats.sizes["draw"] * chains),
        }
        problems = []
        if found["divergences"]:
            problems.append(f"{found['divergences']} divergent transitions after tuning")
        if found["max_r_hat"] > RHAT_LIMIT:
            problems.append(f"R-hat up to {found['max_r_hat']:.3f} (> {RHAT_LIMIT}): chains disagree")
        low = ESS_PER_CHAIN * chains
        if min(found["min_ess_bulk"], found["min_ess_tail"]) < low:
            problems.append(f"effective sample size down to {min(found['min_ess_bulk'], found['min_ess_tail']):.0f}"
                            f" (< {low}): run more draws")
        for problem in problems:
            warnings.warn(problem, PosteriorWarning, stacklevel=5)
        found["problems"] = tuple(problems)
        return found

    def summary(self, level: float = 0.95) -> BayesSummary:
        """The posterior's report: fixed effects, sds and correlations, σ and the residual
        structure (mean, sd, the ``level`` equal-tailed interval, ESS and R-hat), and the
        sampler's diagnostics; text with ``print``, HTML in Jupyter."""
        return BayesSummary(self, level=level)

    def prior_summary(self) -> pd.DataFrame:
        """The priors this posterior was sampled with, their data-scaled values filled in, one
        row per parameter, as brms's ``prior_summary(fit)`` lists them (columns ``prior, class,
        coef, group, lb, ub, source``; see :func:`~bayeslmm.results.posterior_printing.prior_table`).
        :meth:`bayeslmm.LMM.prior_summary` shows them before sampling.

        Examples
        --------
        >>> import bayeslmm as blm
        >>> from bayeslmm.priors import HalfNormal
        >>> model = blm.LMM("Reaction ~ Days + (1 | Subject)", blm.datasets.load("sleepstudy"))
        >>> post = model.fit(method="NUTS", priors={"sigma": HalfNormal(50)}, draws=100, tune=100, chains=1,
        ...                  random_seed=1, progressbar=False)
        >>> post.prior_summary()
                           prior     class        coef   group lb ub  source
           Normal(mu=298.5, sigma=140.4) Intercept                            default
              Normal(mu=0, sigma=48.89)         b        Days                default
        HalfStudentT(nu=3, sigma=56.17)        sd (Intercept) Subject  0    default
                HalfNormal(sigma=50)     sigma                      0       user
        """
        return prior_table(self.spec, self.setup.priors, residual=self.setup.residual is not None)

    def __repr__(self) -> str:
        return str(self.summary())

    def _repr_html_(self) -> str:
        return self.summary()._repr_html_()

    # --- prediction and model comparison -------------------------------------------------

    def predict(self, newdata=None, kind: str = "mean", include_re: bool = True,
                allow_new_levels: bool = False, random_seed=None, summary: bool = True, level: float = 0.95):
        """Posterior predictions for ``newdata`` (the fitted rows when None).

        ``kind="mean"``: the expected response Xβ + Zb; ``"pps"``: draws of y itself.  A
        level not seen in the fit is an error unless ``allow_new_levels``, when its b is drawn
        from N(0, D) for every posterior draw (brms's ``sample_new_levels = "gaussian"``).
        Returns a summary table per row, or with ``summary=False`` the draws (chain, draw, obs).
        """
        if kind not in ("mean", "pps"):
            raise LMMError(f"kind must be 'mean' or 'pps'; got {kind!r}")
        rng = np.random.default_rng(random_seed)
        newdata = None if newdata is None else read_newdata(self.spec, newdata)
        draws = self._predictive_draws(newdata, include_re, allow_new_levels, rng)
        if kind == "pps":
            draws = draws + self._residual_draws(draws.shape, newdata, rng)
        chains, per_chain = self.posterior.sizes["chain"], self.posterior.sizes["draw"]
        array = xr.DataArray(draws.reshape(chains, per_chain, -1), dims=("chain", "draw", "obs"))
        if not summary:
            return array
        table = _summary({"y": array}, level)
        table.index = self.spec.row_labels if newdata is None else newdata.index
        return table

    def _residual_draws(self, shape, newdata, rng) -> np.ndarray:
        """ε per draw: σz, or with a residual structure σ·R^{1/2}z per group at the draw's φ."""
        if self.setup.residual is not None and newdata is not None:
            raise LMMError("predictive draws of y for new rows are not built for residual structures "
                           "(their errors correlate with the fitted rows'); use kind='mean' or newdata=None")
        if self.spec.weights is not None and newdata is not None:
            raise LMMError("predictive draws of y for new rows of a model with prior weights need those rows' "
                           "weights, which are not taken yet; use kind='mean', or newdata=None for the fitted rows")
        return bayes.residual_noise(self.setup, self.posterior, rng.standard_normal(shape))

    def _predictive_draws(self, newdata, include_re, allow_new_levels, rng) -> np.ndarray:
        spec = self.spec
        if newdata is None:
            X, offset, factors = spec.X, spec.offset, [(f.codes, f.raw) for f in spec.factors]
        else:
            X, offset, factors = new_data_matrices(spec, newdata, allow_new_levels, include_re)
        mu = bayes.linear_predictor(self.setup, self.posterior, X, factors if include_re else [])
        if offset is not None:
            mu += offset
        if include_re and factors:
            mu += self._new_level_effects(factors, rng)
        return mu

    def _new_level_effects(self, factors, rng) -> np.ndarray:
        """Rows of unseen levels (codes ≥ G): b ~ N(0, D) per draw and new level, times the row's columns."""
        sigma, chols = bayes.posterior_parameters(self.posterior, self.setup)
        total = np.zeros((sigma.size, factors[0][0].size if factors else 0))
        for f, (codes, raw) in enumerate(factors):
            factor = self.spec.factors[f]
            new = codes >= factor.n_levels
            if not new.any():
                continue
            new_ids = codes[new] - factor.n_levels
            b_new = np.zeros((sigma.size, new_ids.max() + 1, factor.n_columns))
            for term, chol in zip(self.spec.terms, chols):
                if term.factor == f:
                    z = rng.standard_normal((sigma.size, new_ids.max() + 1, term.size))
                    b_new[:, :, term.columns] = np.einsum("dst,dlt->dls", chol, z)
            total[:, new] += (b_new[:, new_ids, :] * raw[new][None]).sum(axis=2)
        return total

    def sample_posterior_predictive(self, random_seed=None):
        """Add a ``posterior_predictive`` group (draws of y for the fitted rows) to ``idata``."""
        draws = self.predict(kind="pps", random_seed=random_seed, summary=False)
        self.idata["posterior_predictive"] = xr.DataTree(xr.Dataset({"y": draws.assign_coords(
            chain=self.posterior["chain"].values, draw=self.posterior["draw"].values,
            obs=np.arange(self.spec.n))}))
        return self.idata

    def loo(self, by: str = "obs"):
        """PSIS-LOO: per observation (``by="obs"``) or leaving one group out (``by="group"``)."""
        import arviz as az

        return az.loo(self._loo_data(by))

    def _loo_data(self, by: str):
        if by == "obs":
            if "log_likelihood" not in self.idata.children:
                bayes.add_pointwise_log_likelihood(self.idata, self.setup)
            return self.idata
        if by == "group":
            data = self.idata.copy()
            data["log_likelihood"] = xr.DataTree(bayes.group_log_likelihood(self.idata, self.setup))
            return data
        raise LMMError(f"by must be 'obs' or 'group'; got {by!r}")


def compare(results: dict, by: str = "obs") -> pd.DataFrame:
    """ArviZ's LOO comparison table of several Bayesian fits (``by="group"``: leave one group out)."""
    import arviz as az

    if not isinstance(results, dict) or len(results) < 2:
        raise LMMError("compare needs a dict of at least two named Bayesian results, e.g. {'slope': a, 'int': b}")
    for name, result in results.items():
        if not isinstance(result, BayesResult):
            raise LMMError(f"{name!r} is not a Bayesian result (fit with method='NUTS')")
    first = next(iter(results.values()))
    for name, result in results.items():
        if result.spec.n != first.spec.n or not same_response(first.spec, result.spec):
            raise LMMError(f"{name!r} was fitted to other data than the first model; LOO compares models of the same y")
        check_same_weights(first.spec, result.spec, f"the first model and {name!r}")
    return az.compare({name: result._loo_data(by) for name, result in results.items()})


def _summary(draws: dict, level: float) -> pd.DataFrame:
    """ArviZ's summary with equal-tailed ``level`` intervals, labelled as brms labels them."""
    import arviz as az

    level = check_level(level)
    dataset = xr.Dataset({k: _bare(v) for k, v in draws.items()})
    table = az.summary(dataset, ci_kind="eti", ci_prob=level, round_to="none")
    lower, upper = interval_columns(level)
    return table.rename(columns=lambda c: lower if c.endswith("_lb") else upper if c.endswith("_ub") else c)


def interval_columns(level: float) -> tuple[str, str]:
    """The columns of a ``level`` interval: ``l-95% CI``, ``u-95% CI`` (brms's)."""
    percent = f"{100 * level:g}"
    return f"l-{percent}% CI", f"u-{percent}% CI"


def _bare(values) -> xr.DataArray:
    """A DataArray without the scalar coordinates that selections leave behind."""
    if not isinstance(values, xr.DataArray):
        return xr.DataArray(values, dims=("chain", "draw"))
    return values.drop_vars([c for c in values.coords if c not in values.dims])


def _labelled(table: pd.DataFrame, keys: list[tuple], names: list[str]) -> pd.DataFrame:
    labels = pd.DataFrame(keys, columns=names)
    return pd.concat([labels, table.reset_index(drop=True)], axis=1)
