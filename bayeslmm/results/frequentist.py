"""LMMResult: a REML/ML fit, its estimates and the tables lme4 users know."""
from __future__ import annotations

import warnings
from functools import cached_property

import numpy as np
import pandas as pd

from bayeslmm.errors import LMMError, SingularFitWarning
from bayeslmm.fit.optsum import OptSummary
from bayeslmm.fit.state import FitState
from bayeslmm.inference import bootstrap as bootstrap_inference
from bayeslmm.inference import profile as profile_inference
from bayeslmm.inference import variance
from bayeslmm.inference.emmeans import contrast_table, emmeans_table
from bayeslmm.inference.fixed_effects import check_ddf, coef_table, f_tests
from bayeslmm.linalg import logdensity as ld
from bayeslmm.model.covariance import covariance, sd_cor, term_factors, term_labels, varcorr_rows
from bayeslmm.model.residual import ResidualParameters
from bayeslmm.persist import save_pickle
from bayeslmm.results import printing
from bayeslmm.results.counts import SpecCounts
from bayeslmm.results.newdata import new_data_matrices, read_newdata, with_offset

SINGULAR_TOLERANCE = 1e-4  # lme4's isSingular(tol = 1e-4)
QUANTILE_NAMES = ["Min", "1Q", "Median", "3Q", "Max"]  # the summary's scaled residuals


class LMMResult(SpecCounts):
    """A linear mixed model fitted by REML or ML.

    The API is :class:`~bayeslmm.results.bayesian.BayesResult`'s: tables (a Series or
    DataFrame) are methods, ``fixef()``, ``vcov()``, ``se()``, ``varcorr()``, ``ranef()``,
    ``coef()``, ``residual_params()``, ``variance_components()``, because the Bayesian ones
    take ``level=`` (0.95 by default wherever an interval is given); scalars and small plain
    values are properties or attributes: ``sigma``, ``theta``, ``deviance``, ``loglik``,
    ``aic``, ``bic``, ``npar``, ``nobs``, ``ngrps``.

    Built from a :class:`bayeslmm.fit.state.FitState` (``result.state``), which holds
    everything the fit is: the result refits, simulates and bootstraps from it alone.

    Examples
    --------
    >>> import bayeslmm as blm
    >>> fit = blm.LMM("Reaction ~ Days + (Days | Subject)", blm.datasets.load("sleepstudy")).fit()
    >>> round(fit.loglik, 3)
    -871.814
    >>> fit.fixef().round(3).to_dict()
    {'(Intercept)': 251.405, 'Days': 10.467}
    """

    def __init__(self, state: FitState):
        self.state = state
        self.spec, self.layout, self.method, self.reml = state.spec, state.layout, state.method, state.reml
        self.theta = state.theta
        self.converged, self.message = state.optsum.converged, state.optsum.message
        self.deviance, self.sigma = state.deviance, state.sigma
        self.is_singular = bool(np.any(state.theta[state.layout.diagonal] < SINGULAR_TOLERANCE))
        if self.is_singular:
            warnings.warn(
                "boundary (singular) fit: a variance is estimated as 0 or a correlation as ±1; "
                "see result.varcorr() and consider simplifying the random effects",
                SingularFitWarning,
                stacklevel=3,
            )

    @classmethod
    def from_state(cls, state: FitState) -> "LMMResult":
        """The result of another fit state, e.g. a bootstrap refit's."""
        return cls(state)

    @property
    def optsum(self) -> OptSummary:
        """What the optimiser did: initial and final θ, tolerances, evaluations, final gradient."""
        return self.state.optsum

    def save(self, path):
        """Pickle this fit to ``path``; :func:`bayeslmm.load` reads it back.  Returns the path.

        Examples
        --------
        >>> import tempfile, pathlib
        >>> import bayeslmm as blm
        >>> fit = blm.LMM("Reaction ~ Days + (1 | Subject)", blm.datasets.load("sleepstudy")).fit()
        >>> blm.load(fit.save(pathlib.Path(tempfile.mkdtemp()) / "fit.pkl")).sigma == fit.sigma
        True
        """
        return save_pickle(self, path)

    def coef_table(self, ddf: str = "satterthwaite", level: float = 0.95) -> pd.DataFrame:
        """t tests of the fixed effects: ``estimate, std_error, statistic, df, p_value, conf_low, conf_high``.

        ``ddf="satterthwaite"`` (lmerTest's), ``"kenward-roger"`` (pbkrtest's adjusted standard
        errors and df; REML fits with independent errors) or ``"asymptotic"`` (normal).

        Examples
        --------
        >>> import bayeslmm as blm
        >>> fit = blm.LMM("Reaction ~ Days + (Days | Subject)", blm.datasets.load("sleepstudy")).fit()
        >>> fit.coef_table(ddf="kenward-roger")["df"].round(3).tolist()
        [17.0, 17.0]
        """
        return coef_table(self, ddf=ddf, level=level)

    def anova(self, type: int = 3, ddf: str = "satterthwaite") -> pd.DataFrame:
        """F tests of each fixed-effect term, as lmerTest's ``anova(fit, type = 3, ddf = ...)``.

        A DataFrame indexed by term with columns ``Sum Sq, Mean Sq, NumDF, DenDF, F value,
        Pr(>F)``.  ``type=3``: lmerTest's (SAS-style) type-III hypotheses, which do not depend
        on the coding; ``type=1``: sequential.  ``ddf``: ``"satterthwaite"`` or
        ``"kenward-roger"`` (REML fits with independent errors).  The hypothesis matrices are
        in ``table.attrs["hypotheses"]``.  Likelihood-ratio tests of nested models are
        :func:`bayeslmm.anova`.

        Examples
        --------
        >>> import bayeslmm as blm
        >>> fit = blm.LMM("size ~ time * treat + (1 | tree)", blm.datasets.load("Sitka")).fit()
        >>> fit.anova(ddf="kenward-roger")["F value"].round(2).tolist()
        [2191.89, 1.41, 14.65]
        """
        return f_tests(self, type=type, ddf=ddf)

    def emmeans(self, specs, by=None, at=None, ddf: str = "satterthwaite", level: float = 0.95) -> pd.DataFrame:
        """Estimated marginal means, as R's ``emmeans(fit, specs, by, at, lmer.df = ddf)``.

        ``specs``: a predictor's name, a list of names or emmeans' text ``"~ treat | time"``;
        ``by``: names to condition on; ``at``: values of predictors in the reference grid
        (``{"time": [152, 258]}``; a factor's subset of levels).  Factors are at all their levels,
        covariates at their mean, and the means average the other factors with equal weights.
        Columns: the specs and by variables, ``emmean, SE, df, lower.CL, upper.CL``
        (``asymp.LCL, asymp.UCL`` when ``ddf="asymptotic"``); ``ddf``: ``"satterthwaite"``,
        ``"kenward-roger"`` (adjusted SE, REML) or ``"asymptotic"``.  See
        :mod:`bayeslmm.inference.reference_grid`.

        Examples
        --------
        >>> import bayeslmm as blm
        >>> fit = blm.LMM("size ~ time * treat + (1 | tree)", blm.datasets.load("Sitka")).fit()
        >>> table = fit.emmeans("treat", by="time", at={"time": [152, 258]}, ddf="kenward-roger")
        >>> table[["treat", "time", "emmean"]].round(3).values.tolist()
        [['control', 152.0, 4.272], ['ozone', 152.0, 4.169], ['control', 258.0, 5.772], ['ozone', 258.0, 5.442]]
        """
        return emmeans_table(self, specs, by=by, at=at, ddf=ddf, level=level)

    def contrasts(self, specs, method: str = "pairwise", by=None, at=None, ddf: str = "satterthwaite",
                  adjust: str | None = None) -> pd.DataFrame:
        """Contrasts of estimated marginal means, as R's ``contrast(emmeans(...), method, adjust)``.

        ``method="pairwise"`` (every pair, first − second; adjusted by ``"tukey"`` by default) or
        ``"trt.vs.ctrl"`` (each mean − the first; ``"dunnettx"`` by default); ``adjust`` also
        ``"sidak"``, ``"bonferroni"``, ``"holm"`` or ``"none"``, within each ``by`` group.
        ``specs, by, at, ddf`` as in :meth:`emmeans`.  Columns: ``contrast``, the by variables,
        ``estimate, SE, df, t.ratio, p.value`` (``z.ratio`` when ``ddf="asymptotic"``).

        Examples
        --------
        >>> import bayeslmm as blm
        >>> fit = blm.LMM("diameter ~ sample + (1 | plate)", blm.datasets.load("Penicillin")).fit()
        >>> table = fit.contrasts("sample", method="trt.vs.ctrl")
        >>> table["contrast"].tolist()
        ['B - A', 'C - A', 'D - A', 'E - A', 'F - A']
        >>> table["estimate"].round(3).tolist()
        [-3.208, -0.25, -2.292, -2.208, -5.208]
        """
        return contrast_table(self, specs, method=method, by=by, at=at, ddf=ddf, adjust=adjust)

    def confint(self, method: str = "profile", level: float = 0.95, n: int = 1000, seed=None) -> pd.DataFrame:
        """Intervals for sds, correlations, σ and fixed effects (``lower, upper``), lme4's labels.

        ``method``: ``"profile"``, ``"wald"`` or ``"bootstrap"`` (percentiles of ``n`` parametric
        bootstrap refits drawn with ``seed``).
        """
        extra = {"bootstrap": {"n": n, "seed": seed}} if method == "bootstrap" else {}
        return profile_inference.confint(self, method=method, level=level, **extra)

    def simulate(self, n: int = 1, seed=None) -> pd.DataFrame:
        """``n`` responses simulated from the fitted model (lme4's ``simulate``).

        y* = Xβ̂ + Zb* + ε* with b* ~ N(0, D̂) and ε* ~ N(0, σ̂²R̂_i) per residual group.
        Columns ``sim_1 … sim_n``; the index is the model's rows.

        Examples
        --------
        >>> import bayeslmm as blm
        >>> fit = blm.LMM("Reaction ~ Days + (1 | Subject)", blm.datasets.load("sleepstudy")).fit()
        >>> fit.simulate(2, seed=1).shape
        (180, 2)
        """
        return bootstrap_inference.simulate(self, n, seed=seed)

    def bootstrap(self, n: int = 1000, seed=None, statistic=None) -> pd.DataFrame:
        """Parametric bootstrap (lme4's ``bootMer``): ``n`` simulated responses, each refitted.

        ``statistic(fit)`` returns numbers (a Series names the columns); by default the sds,
        correlations, σ and fixed effects with ``confint``'s labels.  One row per replicate;
        ``attrs`` lists refits that did not converge or where the statistic failed.

        Examples
        --------
        >>> import bayeslmm as blm
        >>> fit = blm.LMM("Reaction ~ Days + (1 | Subject)", blm.datasets.load("sleepstudy")).fit()
        >>> list(fit.bootstrap(5, seed=1).columns)
        ['sd_(Intercept)|Subject', 'sigma', '(Intercept)', 'Days']
        """
        return bootstrap_inference.bootstrap(self, n, seed=seed, statistic=statistic)

    def variance_components(self, level: float = 0.95) -> pd.DataFrame:
        """Variance, sd with profile interval, share of variance and ICC per random effect."""
        return variance.variance_components(self, level=level)

    def refit(self, method: str) -> "LMMResult":
        """The same model fitted by another method (``"REML"`` or ``"ML"``)."""
        return LMMResult(self.state.refit(reml=check_method(method, ("REML", "ML")) == "REML"))

    # --- criteria -------------------------------------------------------------------

    @property
    def npar(self) -> int:
        """Number of parameters: fixed effects, θ, the residual structure's and σ (lme4/nlme's ``df``)."""
        return self.state.npar

    def residual_params(self) -> ResidualParameters:
        """The fitted residual structure (ρ, variance ratios, …, a dict); empty for independent errors."""
        state = self.state
        return ResidualParameters() if state.residual is None else state.residual.parameters(state.phi)

    @property
    def loglik(self) -> float:
        """Log-likelihood at the optimum (the REML log-likelihood for a REML fit)."""
        return -0.5 * self.deviance

    @property
    def aic(self) -> float:
        return self.deviance + 2 * self.npar

    @property
    def bic(self) -> float:
        return self.deviance + np.log(self.nobs) * self.npar

    # --- fixed effects --------------------------------------------------------------

    def fixef(self) -> pd.Series:
        """The fixed-effect estimates β̂, indexed by their names."""
        return pd.Series(self.state.profile.beta, index=list(self.spec.fixef_names), name="Estimate")

    def vcov(self) -> pd.DataFrame:
        """σ̂² M⁻¹, the covariance of the fixed-effect estimates given θ (as lme4's vcov)."""
        p = self.spec.p
        LXinv = ld.solve_lower(self.state.profile.LX, np.eye(p))
        names = list(self.spec.fixef_names)
        return pd.DataFrame(self.sigma**2 * LXinv.T @ LXinv, index=names, columns=names)

    def se(self) -> pd.Series:
        """Standard errors of the fixed effects, √diag(vcov())."""
        vcov = self.vcov()
        return pd.Series(np.sqrt(np.diag(vcov)), index=vcov.index, name="Std. Error")

    # --- variance components --------------------------------------------------------

    def term_covariances(self) -> list[np.ndarray]:
        """Σ_k = σ² T_k T_k' for each random term, in lme4's order."""
        return [covariance(T, self.sigma) for T in term_factors(self.spec.terms, self.theta)]

    def varcorr(self) -> pd.DataFrame:
        """Variance components as lme4's ``as.data.frame(VarCorr(fit))`` (a correlation next to
        a zero sd is NaN, as there)."""
        rows = []
        for label, term, cov in zip(term_labels(self.spec.terms), self.spec.terms, self.term_covariances()):
            sd, cor = sd_cor(cov)
            rows += [(*key, cov[r, c], sd[r] if r == c else cor[r, c]) for key, (r, c) in varcorr_rows(term, label)]
        rows.append(("Residual", None, None, self.sigma**2, self.sigma))
        return pd.DataFrame(rows, columns=["grp", "var1", "var2", "vcov", "sdcor"])

    # --- random effects -------------------------------------------------------------

    @cached_property
    def _modes(self) -> list[np.ndarray]:
        return ld.conditional_modes(self.state.factorization, self.state.profile.beta)

    def ranef(self, cond_var: bool = True) -> pd.DataFrame:
        """Conditional modes (BLUPs) as lme4's ``as.data.frame(ranef(fit, condVar = TRUE))``.

        Columns ``grpvar, term, grp, condval`` and, with ``cond_var``, ``condsd``.
        """
        covs = ld.conditional_covariances(self.state.factorization, self.sigma**2) if cond_var else None
        frames = []
        for f, (factor, b) in enumerate(zip(self.spec.factors, self._modes)):
            G, S = b.shape
            frame = pd.DataFrame({
                "grpvar": factor.name,
                "term": np.repeat(factor.column_names, G),
                "grp": np.tile(factor.levels, S),
                "condval": b.T.reshape(-1),
            })
            if cond_var:
                frame["condsd"] = np.sqrt(np.diagonal(covs[f], axis1=1, axis2=2)).T.reshape(-1)
            frames.append(frame)
        if not frames:
            return pd.DataFrame(columns=["grpvar", "term", "grp", "condval"] + (["condsd"] if cond_var else []))
        return pd.concat(frames, ignore_index=True)

    def coef(self) -> dict[str, pd.DataFrame]:
        """Per-level coefficients: fixed effects plus that level's random effects (lme4's coef)."""
        out = {}
        for factor, b in zip(self.spec.factors, self._modes):
            table = pd.DataFrame(np.tile(self.state.profile.beta, (factor.n_levels, 1)),
                                 index=list(factor.levels), columns=list(self.spec.fixef_names))
            for s, name in enumerate(factor.column_names):
                table[name] = table.get(name, 0.0) + b[:, s]
            out[factor.name] = table
        return out

    # --- fitted values and prediction ----------------------------------------------

    def _random_part(self, factors_codes_raw) -> np.ndarray:
        total = 0.0
        for b, (codes, raw) in zip(self._modes, factors_codes_raw):
            known = codes < b.shape[0]  # unseen levels (codes ≥ G) contribute 0
            contribution = np.zeros(raw.shape[0])
            contribution[known] = np.einsum("is,is->i", raw[known], b[codes[known]])
            total = total + contribution
        return total

    def fitted(self) -> pd.Series:
        """Xβ̂ + Zb̂ (+ the offset) for the rows used in the fit (indexed by the caller's row labels)."""
        values = self._population() + self._random_part([(f.codes, f.raw) for f in self.spec.factors])
        return pd.Series(values, index=self.spec.row_labels, name="fitted")

    def _population(self) -> np.ndarray:
        """Xβ̂ plus the offset, for the rows used in the fit."""
        return with_offset(self.spec.X @ self.state.profile.beta, self.spec.offset)

    def residuals(self) -> pd.Series:
        return pd.Series(self.spec.observed - self.fitted().to_numpy(), index=self.spec.row_labels,
                         name="residuals")

    def predict(self, newdata=None, include_re: bool = True,
                allow_new_levels: bool = False) -> pd.Series:
        """Predictions for ``newdata`` (the fitted rows when None).

        ``include_re=False`` gives the population-level prediction Xβ̂ (plus any offset,
        evaluated on ``newdata``).  A level not seen in the fit is an error unless
        ``allow_new_levels``, when its random effects are 0 (the population prediction), as in lme4.
        """
        if newdata is None:
            return self.fitted() if include_re else pd.Series(self._population(), index=self.spec.row_labels,
                                                               name="predicted")
        newdata = read_newdata(self.spec, newdata)
        X, offset, factors_codes_raw = new_data_matrices(self.spec, newdata, allow_new_levels, include_re)
        values = with_offset(X @ self.state.profile.beta, offset)
        if include_re:
            values = values + self._random_part(factors_codes_raw)
        return pd.Series(values, index=newdata.index, name="predicted")

    # --- reports --------------------------------------------------------------------

    def scaled_residual_quantiles(self) -> pd.Series:
        """Min, quartiles and max of lme4's Pearson residuals scaled by σ̂: (y − fitted)√w_i / σ̂."""
        scaled = self.residuals().to_numpy() / (self.sigma * self.spec.noise_scale)
        return pd.Series(np.quantile(scaled, [0, 0.25, 0.5, 0.75, 1]), index=QUANTILE_NAMES)

    def summary(self, ddf: str = "satterthwaite") -> printing.Summary:
        """The report lmerTest's ``summary(lmer)`` prints; text with ``print``, HTML in Jupyter.

        The fixed effects have lmerTest's columns ``Estimate, Std. Error, df, t value,
        Pr(>|t|)``, the df by ``ddf``: ``"satterthwaite"`` (default), ``"kenward-roger"`` or
        ``"asymptotic"`` (z tests, no df).  When those df cannot be computed for this model
        (e.g. Kenward–Roger of an ML fit) the table has lme4's columns ``Estimate, Std. Error,
        t value`` and a note says why.  The ``Data:`` line prints ``spec.data_name`` (see
        :class:`bayeslmm.LMM`'s ``data_name``).  The parts are pandas tables
        (``fixed_effects``, ``random_effects``, ``correlation``, …).

        Satterthwaite's df take a Hessian in the k variance parameters: O(k²) likelihood
        evaluations with one grouping factor, O(k) exact gradients with several (under a
        second for a maximal crossed model); ``ddf="asymptotic"`` is immediate.  The last
        summary is kept for the fit's θ.

        Examples
        --------
        >>> import bayeslmm as blm
        >>> fit = blm.LMM("Reaction ~ Days + (Days | Subject)", blm.datasets.load("sleepstudy")).fit()
        >>> print(fit.summary())  # doctest: +ELLIPSIS
        Linear mixed model fit by REML. t-tests use Satterthwaite's method
        Formula: Reaction ~ Days + (Days | Subject)
           Data: sleepstudy
        ...
        Fixed effects:
                    Estimate Std. Error      df t value Pr(>|t|)
        (Intercept)  251.405      6.825  17.000  36.838  < 2e-16 ***
        Days          10.467      1.546  17.000   6.771 3.26e-06 ***
        ...
        >>> list(fit.summary(ddf="asymptotic").fixed_effects.columns)
        ['Estimate', 'Std. Error', 'z value', 'Pr(>|z|)']
        """
        # Jupyter asks for the text and the HTML in turn, and Satterthwaite's df cost O(k²)
        # likelihood evaluations for k variance parameters: the last summary is kept, for its θ
        key = (check_ddf(ddf), self.theta.tobytes(), self.sigma)
        last = getattr(self, "_last_summary", None)
        if last is None or last[0] != key:
            self._last_summary = last = (key, printing.summarize(self, ddf=ddf))
        return last[1]

    def __repr__(self) -> str:
        return str(self.summary())

    def _repr_html_(self) -> str:
        return self.summary()._repr_html_()


def check_method(method: str, valid: tuple[str, ...] = ("REML", "ML", "NUTS")) -> str:
    if not isinstance(method, str) or method.upper() not in valid:
        raise LMMError(f"method must be one of {', '.join(valid)}; got {method!r}")
    return method.upper()
