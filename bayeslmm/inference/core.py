"""Comparing nested fits: likelihood-ratio tests as lme4's ``anova`` prints them, with
boundary-corrected p-values when the smaller model drops a random-effect variance."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy import stats

from bayeslmm.checks import check_level, check_same_weights
from bayeslmm.errors import LMMError


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
        from bayeslmm.inference.bootstrap import bootstrap_lrt_column

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
        if fit.spec.n != first.n or not np.array_equal(fit.spec.y, first.y):
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


# --- t tests for fixed effects with Satterthwaite degrees of freedom ------------------------


DDF_METHODS = ("satterthwaite", "kenward-roger", "asymptotic")


def check_ddf(ddf) -> str:
    """The ddf method in lower case (R spells them 'Satterthwaite', 'Kenward-Roger')."""
    if not isinstance(ddf, str) or ddf.lower() not in DDF_METHODS:
        raise LMMError(f"ddf must be one of {', '.join(map(repr, DDF_METHODS))}; got {ddf!r}")
    return ddf.lower()


def coef_table(fit, ddf: str = "satterthwaite", level: float = 0.95) -> pd.DataFrame:
    """Fixed-effect estimates with t tests (broom's columns, snake case).

    ``ddf="satterthwaite"``: df = 2 (Var ĉ)² / (g'Ag) per coefficient, with g the gradient of
    Var ĉ in the variance parameters (θ, σ) and A = 2 H⁻¹ their asymptotic covariance, H the
    Hessian of the deviance — lmerTest's construction, by central differences here.
    ``"kenward-roger"``: pbkrtest's adjusted covariance Φ_A gives the standard errors and the
    Kenward–Roger df of each unit contrast (REML fits; see :mod:`bayeslmm.ddf`, and
    :mod:`bayeslmm.kr_blocks` for residual structures, at most one grouping factor there).  ``"asymptotic"``: normal reference (df = ∞).
    """
    from scipy import stats as st

    level = check_level(level)
    ddf = check_ddf(ddf)
    estimate, se = fit.fixef.to_numpy(), fit.se.to_numpy()
    if ddf == "kenward-roger":
        se, df = _kenward_roger_t(fit)
    elif ddf == "satterthwaite":
        df = satterthwaite_df(fit)
    else:
        df = np.full(estimate.size, np.inf)
    statistic = estimate / se
    quantile = st.t.ppf(0.5 + level / 2, df)
    return pd.DataFrame({"estimate": estimate, "std_error": se, "statistic": statistic, "df": df,
                         "p_value": 2 * st.t.sf(np.abs(statistic), df),
                         "conf_low": estimate - quantile * se, "conf_high": estimate + quantile * se},
                        index=fit.fixef.index)


def _kenward_roger_t(fit) -> tuple[np.ndarray, np.ndarray]:
    """KR standard errors (√diag Φ_A) and the KR df of each coefficient's unit contrast."""
    from bayeslmm.inference.ddf import kenward_roger, kr_df_and_scale

    kr = kenward_roger(fit)
    unit = np.eye(fit.spec.p)
    return np.sqrt(np.diag(kr.phi_adjusted)), np.array([kr_df_and_scale(kr, row)[0] for row in unit])


def f_tests(fit, type: int = 3, ddf: str = "satterthwaite") -> pd.DataFrame:
    """F tests of each fixed-effect term, as lmerTest's ``anova(fit, type, ddf)`` prints them.

    Columns ``Sum Sq, Mean Sq, NumDF, DenDF, F value, Pr(>F)``; one row per model term.
    Hypotheses: lmerTest's type 3 (or sequential type 1), see :mod:`bayeslmm.contrasts`.
    ``"satterthwaite"``: Wald F on Var(β̂), df combined over the eigen-directions of
    L Var(β̂) L'.  ``"kenward-roger"``: Wald F on the adjusted Φ_A, scaled, with KR's df.
    Mean Sq is the unscaled Wald F times σ̂² (as lmerTest's).
    """
    from scipy import stats as st

    from bayeslmm.inference.ddf import kenward_roger, kenward_roger_ftest, satterthwaite_ftest

    kind, hypotheses = _hypotheses(fit, type)
    ddf = check_ddf(ddf)
    if ddf == "asymptotic":
        raise LMMError("F tests by term need ddf='satterthwaite' or 'kenward-roger'")
    beta = fit.fixef.to_numpy()
    if ddf == "kenward-roger":
        kr = kenward_roger(fit)
        tests = [kenward_roger_ftest(kr, L, beta) for L in hypotheses.values()]
    else:
        gradients, A = _satterthwaite_pieces(fit)
        vcov = fit.vcov.to_numpy()
        tests = [satterthwaite_ftest(vcov, gradients, A, L, beta) for L in hypotheses.values()]
    mean_sq = np.array([t.wald_f for t in tests]) * fit.sigma**2
    num_df = np.array([t.num_df for t in tests], dtype=int)
    den_df = np.array([t.den_df for t in tests], dtype=float)
    f_value = np.array([t.f_value for t in tests], dtype=float)
    table = pd.DataFrame({"Sum Sq": mean_sq * num_df, "Mean Sq": mean_sq, "NumDF": num_df, "DenDF": den_df,
                          "F value": f_value, "Pr(>F)": st.f.sf(f_value, num_df, den_df)},
                         index=pd.Index(list(hypotheses), name="term"))
    method = "Satterthwaite's" if ddf == "satterthwaite" else "Kenward-Roger's"
    table.attrs["heading"] = f"Type {'III' if kind == 3 else 'I'} Analysis of Variance Table with {method} method"
    table.attrs["hypotheses"] = hypotheses
    return table


def _hypotheses(fit, type) -> tuple[int, dict]:
    from bayeslmm.inference import contrasts

    kind = {3: 3, "3": 3, "III": 3, 1: 1, "1": 1, "I": 1}.get(type) if isinstance(type, (int, str)) else None
    if kind is None:
        raise LMMError(f"type must be 3 (lmerTest's type III) or 1 (sequential); got {type!r}")
    return kind, contrasts.type3_contrasts(fit.spec) if kind == 3 else contrasts.type1_contrasts(fit.spec)


def _gradient_quadratic(c, gradients, A) -> float:
    g = np.array([c @ G @ c for G in gradients])
    return float(g @ A @ g)


def satterthwaite_df(fit) -> np.ndarray:
    """Satterthwaite denominator df of each fixed effect (lmerTest's varpar = (θ, σ))."""
    gradients, A = _satterthwaite_pieces(fit)
    V = fit.vcov.to_numpy()
    return np.array([2 * V[j, j] ** 2 / _gradient_quadratic(np.eye(len(V))[j], gradients, A) for j in range(len(V))])


def _satterthwaite_pieces(fit):
    """∂Var(β̂)/∂varpar_k (one p × p matrix per variance parameter) and A = 2H⁻¹ (lmerTest's)."""
    from bayeslmm.linalg import logdensity as ld

    model = fit._model
    if model is None:
        raise LMMError("Satterthwaite df need a model fitted through LMM(...).fit()")
    layout, n, reml, p = model.layout, fit.nobs, fit.reml, fit.spec.p
    theta_size = fit.theta.size
    # varpar = (θ, σ, φ): a residual structure's parameters vary with the others, as in mmrm
    varpar = np.r_[fit.theta, fit.sigma, fit._phi]

    def stats_at(v):
        return _stats_at_phi(model, v[theta_size + 1:])

    def deviance(v):
        stats, logdet = stats_at(v)
        fact = ld.factorize(v[:theta_size], stats, layout)
        prof = ld.profile(fact, p)
        return ld.deviance_at(fact, prof, n, v[theta_size] ** 2, fit.fixef.to_numpy(), reml=reml) + logdet

    def vcov_matrix(v):
        fact = ld.factorize(v[:theta_size], stats_at(v)[0], layout)
        LXinv = ld.solve_lower(ld.profile(fact, p).LX, np.eye(p))
        return v[theta_size] ** 2 * LXinv.T @ LXinv

    step = 1e-2 * np.maximum(np.abs(varpar), 1e-2)
    hessian = _richardson(lambda h: _hessian(deviance, varpar, h), step)
    A = 2.0 * np.linalg.pinv(hessian)
    gradients = _richardson(lambda h: np.stack(
        [(vcov_matrix(varpar + e) - vcov_matrix(varpar - e)) / (2 * e.sum()) for e in np.diag(h)]), step)
    return gradients, A


def _stats_at_phi(model, phi):
    """Cross-products and Σ log|R_i| of the data whitened at φ (the model's own without a structure)."""
    if model.residual is None:
        return model.stats, 0.0
    from bayeslmm.fit.residual import whitened_stats

    return whitened_stats(model.spec, model.residual, phi)


def _richardson(derivative, step, levels: int = 3):
    """Richardson extrapolation of a central-difference derivative over halved steps (error O(h^2k))."""
    table = [derivative(step / 2**k) for k in range(levels)]
    for order in range(1, levels):
        factor = 4.0**order
        table = [(factor * table[k + 1] - table[k]) / (factor - 1) for k in range(len(table) - 1)]
    return table[0]


def _hessian(f, x, step) -> np.ndarray:
    k = x.size
    H = np.empty((k, k))
    E = np.diag(step)
    for i in range(k):
        for j in range(i, k):
            H[i, j] = H[j, i] = (f(x + E[i] + E[j]) - f(x + E[i] - E[j]) - f(x - E[i] + E[j])
                                 + f(x - E[i] - E[j])) / (4 * step[i] * step[j])
    return H


# --- confidence intervals --------------------------------------------------------------------


def confint(fit, method: str = "profile", level: float = 0.95, bootstrap: dict | None = None) -> pd.DataFrame:
    """Intervals for the sds, correlations, σ and fixed effects, labelled as lme4's
    ``confint(..., oldNames = FALSE)`` (``sd_(Intercept)|Subject``, ``cor_Days.(Intercept)|Subject``,
    ``sigma``, ``Days``), with columns ``lower, upper``.

    ``"profile"``: where the signed square root of the ML deviance's rise, with every other
    parameter re-optimised, reaches ±z (lme4's ``profile``, which uses the ML deviance for REML
    fits too).  ``"wald"``: estimate ± z·se for the fixed effects; the variance parameters get
    no Wald interval (NaN), as in lme4.  ``"bootstrap"``: percentiles of a parametric bootstrap,
    ``bootstrap`` holding its ``n`` and ``seed`` (lme4's ``method = "boot"``).
    """
    from scipy import stats as st

    level = check_level(level)
    if method == "bootstrap":
        from bayeslmm.inference.bootstrap import bootstrap_confint

        return bootstrap_confint(fit, level=level, **(bootstrap or {}))
    if method not in ("profile", "wald"):
        raise LMMError(f"method must be 'profile', 'wald' or 'bootstrap'; got {method!r}")
    z = st.norm.ppf(0.5 + level / 2)
    names = _variance_names(fit) + ["sigma"] + list(fit.spec.fixef_names)
    if method == "wald":
        rows = [(np.nan, np.nan)] * (len(names) - fit.spec.p)
        rows += list(zip(fit.fixef - z * fit.se, fit.fixef + z * fit.se))
        return pd.DataFrame(rows, index=names, columns=["lower", "upper"])
    profiler = _Profiler(fit)
    rows = [profiler.interval(j, z) for j in range(profiler.sigma_index + 1)]
    for k, coordinate in enumerate(profiler.coordinates):  # a residual structure's parameters
        if coordinate is not None:
            low, high = profiler.phi_interval(profiler.sigma_index + 1 + k, z)
            names.insert(len(rows), coordinate[0])
            rows.append((coordinate[1](low), coordinate[1](high)))
    rows += [profiler.fixed_interval(j, z) for j in range(fit.spec.p)]
    return pd.DataFrame(rows, index=names, columns=["lower", "upper"])


def _variance_names(fit) -> list[str]:
    from bayeslmm.results.frequentist import term_labels

    names = []
    for term, label in zip(fit.spec.terms, term_labels(fit.spec.terms)):
        group = fit.spec.factors[term.factor].name
        for c in range(term.size):
            for r in range(c, term.size):
                cols = term.column_names
                names.append(f"sd_{cols[r]}|{group}" if r == c else f"cor_{cols[r]}.{cols[c]}|{group}")
    return names


PHI_LIMIT = 10.0  # |φ| in profiles: ρ = tanh(10) = 1 − 4e-9, sd ratios up to e^10


class _Profiler:
    """The ML deviance in (sds, correlations, σ, φ), profiled over the rest (β analytically).

    φ, a residual structure's unconstrained parameters, is profiled like the others; its
    intervals map to ρ and the sd ratios through the structure's monotone transforms."""

    def __init__(self, fit):
        from bayeslmm.linalg import logdensity as ld

        if fit._model is None:
            raise LMMError("profile intervals need a model fitted through LMM(...).fit()")
        self.ld, self.model, self.fit = ld, fit._model, fit
        ml = fit if not fit.reml else fit.refit("ML")
        natural = self._to_natural(ml.theta, ml.sigma)
        self.sigma_index = natural.size
        self.coordinates = [] if self.model.residual is None else self.model.residual.coordinates()
        self.estimate = np.r_[natural, ml.sigma, ml._phi]
        self.best = self.deviance(self.estimate)
        self.ml = ml
        self._last = {}  # (parameter, upper side) → the other parameters' last optimum

    def _to_natural(self, theta, sigma) -> np.ndarray:
        out = []
        for T in self._term_factors(theta):
            D = sigma**2 * T @ T.T
            sd = np.sqrt(np.diag(D))
            for c in range(len(D)):
                for r in range(c, len(D)):
                    out.append(sd[r] if r == c else D[r, c] / (sd[r] * sd[c]) if sd[r] * sd[c] > 0 else 0.0)
        return np.array(out)

    def _term_factors(self, theta):
        Ts = self.model.layout.factors_T(theta)
        return [Ts[t.factor][t.columns, t.columns] for t in self.fit.spec.terms]

    def _theta(self, natural, sigma):
        theta, k = [], 0
        for term in self.fit.spec.terms:
            S = term.size
            D = np.zeros((S, S))
            for c in range(S):
                for r in range(c, S):
                    D[r, c] = natural[k]
                    k += 1
            sd = np.diag(D).copy()
            if np.any(sd < 0) or np.any(np.abs(D[np.tril_indices(S, -1)]) >= 1):
                return None
            R = np.where(np.eye(S) > 0, 1.0, D + D.T)
            cov = R * np.outer(sd, sd)
            try:
                L = np.linalg.cholesky(cov + 1e-14 * np.eye(S) * max(cov.max(), 1e-300)) / sigma
            except np.linalg.LinAlgError:
                return None
            theta += [L[r, c] for c in range(S) for r in range(c, S)]
        return np.array(theta)

    def deviance(self, v) -> float:
        ld, sigma = self.ld, v[self.sigma_index]
        theta = self._theta(v[: self.sigma_index], sigma) if sigma > 0 else None
        if theta is None:
            return np.inf
        try:
            stats, logdet = _stats_at_phi(self.model, v[self.sigma_index + 1:])
        except np.linalg.LinAlgError:
            return np.inf
        fact = ld.factorize(theta, stats, self.model.layout)
        prof = None if fact is None else ld.profile(fact, stats.p)
        value = np.inf if prof is None else ld.deviance_at(fact, prof, stats.n, sigma**2, prof.beta) + logdet
        return value if np.isfinite(value) else np.inf

    def zeta(self, j: int, value: float) -> float:
        from scipy.optimize import minimize

        others = [k for k in range(self.estimate.size) if k != j]
        # the root search moves value in small steps: start from the last optimum on this side
        side = (j, value > self.estimate[j])
        start = self._last.get(side, self.estimate[others])

        def f(x):
            v = self.estimate.copy()
            v[others], v[j] = x, value
            return self.deviance(v)

        bounds = [self._bounds(k) for k in others]
        if not others:
            best = f(start)
        else:
            result = minimize(f, start, method="L-BFGS-B", bounds=bounds, options={"ftol": 1e-10, "gtol": 1e-5})
            best = result.fun
            if np.isfinite(best):
                self._last[side] = result.x
        rise = min(max(best - self.best, 0.0), 1e6)  # an infinite deviance is just far outside
        return float(np.sign(value - self.estimate[j]) * np.sqrt(rise))

    def interval(self, j: int, z: float) -> tuple[float, float]:
        """Where ζ crosses ∓z; a parameter whose ζ never gets there is reported at its boundary."""
        estimate = self.estimate[j]
        if self._is_correlation(j):
            ends = (-1 + 1e-9, 1 - 1e-9)
        elif j == self.sigma_index:  # σ > 0: search down to a thousandth of the estimate
            ends = (estimate * 1e-3, None)
        else:  # an sd may reach its boundary 0
            ends = (0.0, None)
        return self._root(j, -z, estimate, ends[0]), self._root(j, z, estimate, ends[1])

    def phi_interval(self, j: int, z: float, limit: float = None) -> tuple[float, float]:
        """Where ζ of an unconstrained φ_j crosses ∓z, stepping out by doubling; ±limit (e.g.
        ρ = ±tanh 12) where it never does."""
        from scipy.optimize import brentq

        estimate, limit = self.estimate[j], limit or PHI_LIMIT
        ends = []
        for target in (-z, z):
            step = np.sign(target) * 0.5
            while abs(step) < 2 * limit and np.sign(self.zeta(j, estimate + step) - target) != np.sign(target):
                step *= 2
            if abs(step) >= 2 * limit:
                ends.append(estimate + np.sign(target) * limit)
                continue
            ends.append(brentq(lambda x: self.zeta(j, x) - target, *sorted((estimate, estimate + step)), xtol=1e-8))
        return ends[0], ends[1]

    def _bounds(self, k: int) -> tuple:
        if self._is_correlation(k):
            return (-1 + 1e-6, 1 - 1e-6)
        if k > self.sigma_index:  # φ: unconstrained, kept where R stays numerically positive definite
            return (-PHI_LIMIT, PHI_LIMIT)
        return (1e-6 * self.estimate[self.sigma_index], None)  # sds and σ stay positive

    def _is_correlation(self, j: int) -> bool:
        k = 0
        for term in self.fit.spec.terms:
            for c in range(term.size):
                for r in range(c, term.size):
                    if k == j:
                        return r != c
                    k += 1
        return False

    def _root(self, j, target, estimate, end):
        """ζ_j = target between the estimate and ``end`` (None: unbounded above).  Secant steps
        from the estimate (ζ is nearly linear in a well-behaved parameter) find a short bracket,
        Brent's method closes it; reaching ``end`` first means the interval reaches the
        boundary there."""
        from scipy.optimize import brentq

        def passed(z):
            return (z - target) * np.sign(target) >= 0

        scale = abs(estimate) if estimate != 0 else 0.1
        x_prev, z_prev = estimate, 0.0
        x = estimate + np.sign(target) * 0.25 * scale
        if end is not None and (x - end) * np.sign(target) > 0:
            x = 0.5 * (estimate + end)
        for _ in range(60):
            z = self.zeta(j, x)
            if passed(z):
                return brentq(lambda v: self.zeta(j, v) - target, *sorted((x_prev, x)),
                              xtol=1e-5 * max(abs(estimate), 1e-8))  # the references hold 1e-3
            if end is not None and x == end:
                return float(end)  # the interval reaches the parameter's boundary
            slope = (z - z_prev) / (x - x_prev)
            guess = x + 1.2 * (target - z) / slope if slope * np.sign(target) > 0 else x + 2 * (x - x_prev)
            guess = x + np.clip(guess - x, -4 * abs(x - x_prev), 4 * abs(x - x_prev))  # no wild jumps
            x_prev, z_prev = x, z
            x = end if end is not None and (guess - end) * np.sign(target) >= 0 else guess
        raise LMMError(f"the profile of parameter {j} did not reach ζ = {target:.3g}")

    def fixed_interval(self, j: int, z: float) -> tuple[float, float]:
        """Profile of β_j: the ML fit of y − x_j b on the other columns, for each b."""
        from scipy.optimize import brentq

        from bayeslmm.fit.optimize import fit_theta

        beta, se = self.ml.fixef.to_numpy()[j], self.ml.se.to_numpy()[j]

        def zeta(b):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if self.model.residual is None:
                    deviance = fit_theta(_offset_stats(self.model.stats, j, b), self.model.layout, reml=False).deviance
                else:
                    deviance = self._offset_fit_with_residual(j, b)
            rise = deviance - self.best
            return float(np.sign(b - beta) * np.sqrt(max(rise, 0.0)))

        def root(target):
            end = beta + target / abs(target) * 2 * z * se
            while np.sign(zeta(end) - target) != np.sign(target):
                end = beta + 2 * (end - beta)
            return brentq(lambda b: zeta(b) - target, *sorted((beta, end)), xtol=1e-10 * max(1.0, abs(beta)))

        return root(-z), root(z)

    def _offset_fit_with_residual(self, j: int, b: float) -> float:
        """The ML deviance with β_j fixed at b, θ and φ re-optimised (the structure's own search)."""
        from bayeslmm.fit.residual import fit_with_residual

        return fit_with_residual(_offset_spec(self.model.spec, j, b), self.model.layout, self.model.residual,
                                 reml=False)[0].deviance


def _offset_spec(spec, j: int, b: float):
    """The spec of y − b x_j on the other columns of X."""
    import dataclasses

    keep = [k for k in range(spec.p) if k != j]
    return dataclasses.replace(spec, y=spec.y - b * spec.X[:, j], X=spec.X[:, keep],
                               fixef_names=tuple(spec.fixef_names[k] for k in keep))


def _offset_stats(stats, j: int, b: float):
    """Cross-products of [X_(−j), y − b x_j] from those of [X, y]: a linear map of the columns."""
    import dataclasses

    p = stats.p
    keep = [k for k in range(p) if k != j]
    M = np.zeros((p + 1, p))
    M[keep, np.arange(p - 1)] = 1.0
    M[p, p - 1] = 1.0
    M[j, p - 1] = -b

    def right(A):
        return None if A is None else A @ M

    return dataclasses.replace(stats, p=p - 1, XYtXY=M.T @ stats.XYtXY @ M, ZtXY1=right(stats.ZtXY1),
                               ZtXY2=right(stats.ZtXY2))


def variance_components(fit, level: float = 0.95) -> pd.DataFrame:
    """The course notes' table: per random effect and the residual, its variance and sd with a
    profile interval for the sd, its share of the summed variances (var_prop), and for a random
    intercept the intra-class correlation var / (var + σ²)."""
    intervals = confint(fit, method="profile", level=level)
    rows = []
    for _, row in fit.varcorr[fit.varcorr["var2"].isna()].iterrows():
        group, effect = row["grp"], row["var1"]
        label = "sigma" if group == "Residual" else f"sd_{effect}|{_factor_of(fit, group)}"
        rows.append({"group": group, "effect": effect if group != "Residual" else "", "variance": row["vcov"],
                     "sd": row["sdcor"], "sd_lower": intervals.loc[label, "lower"],
                     "sd_upper": intervals.loc[label, "upper"]})
    table = pd.DataFrame(rows)
    table["var_prop"] = table["variance"] / table["variance"].sum()
    residual = fit.sigma**2
    table["icc"] = [v / (v + residual) if e == "(Intercept)" else np.nan
                    for v, e in zip(table["variance"], table["effect"])]
    return table


def _factor_of(fit, label: str) -> str:
    """'Subject.1' (a second term on Subject) → 'Subject'."""
    from bayeslmm.results.frequentist import term_labels

    for term, name in zip(fit.spec.terms, term_labels(fit.spec.terms)):
        if name == label:
            return fit.spec.factors[term.factor].name
    return label
