"""Confidence intervals: profile (lme4's confint), Wald and parametric bootstrap.
"""
from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pandas as pd
from scipy import stats as st
from scipy.optimize import brentq, minimize

from bayeslmm.checks import check_level
from bayeslmm.errors import LMMError
from bayeslmm.fit.optimize import fit_theta
from bayeslmm.fit.residual import fit_with_residual
from bayeslmm.inference.bootstrap import bootstrap_confint
from bayeslmm.linalg import logdensity as ld
from bayeslmm.model.covariance import SIGMA, defined, sdcor_names, sdcor_of_theta, theta_of_sdcor
from bayeslmm.threads import one_blas_thread


@one_blas_thread()
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
    level = check_level(level)
    if method == "bootstrap":
        return bootstrap_confint(fit, level=level, **(bootstrap or {}))
    if method not in ("profile", "wald"):
        raise LMMError(f"method must be 'profile', 'wald' or 'bootstrap'; got {method!r}")
    z = st.norm.ppf(0.5 + level / 2)
    names = sdcor_names(fit.spec) + [SIGMA] + list(fit.spec.fixef_names)
    if method == "wald":
        rows = [(np.nan, np.nan)] * (len(names) - fit.spec.p)
        rows += list(zip(fit.fixef() - z * fit.se(), fit.fixef() + z * fit.se()))
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


@one_blas_thread()
def profile(fit, level: float = 0.99, points: int = 8) -> pd.DataFrame:
    """ζ, the signed square root of the ML deviance's rise, along each parameter (lme4's
    ``profile(fit)``): the traces :func:`confint`'s profile intervals are read from.

    Each sd, correlation, σ and fixed effect (``confint``'s labels) is stepped from its ML
    estimate out to where ζ reaches ∓z of ``level`` (or the parameter's boundary), with
    ``points`` values on each side, every other parameter re-optimised at each value.  A
    residual structure's parameters are not profiled here.  Returns a DataFrame with columns
    ``parameter, value, zeta`` (ζ = 0 at the estimate), rows by parameter and increasing value.

    Examples
    --------
    >>> import bayeslmm as blm
    >>> from bayeslmm.inference.profile import profile
    >>> fit = blm.LMM("Yield ~ 1 + (1 | Batch)", blm.datasets.load("Dyestuff")).fit()
    >>> traces = profile(fit, points=3)
    >>> traces.groupby("parameter", sort=False).size().to_dict()
    {'sd_(Intercept)|Batch': 7, 'sigma': 7, '(Intercept)': 7}
    """
    z = st.norm.ppf(0.5 + check_level(level) / 2)
    profiler = _Profiler(fit)
    variances = [(name, j, profiler.interval, profiler.zeta)
                 for j, name in enumerate(sdcor_names(fit.spec) + [SIGMA])]
    fixed = [(name, j, profiler.fixed_interval, profiler.fixed_zeta) for j, name in enumerate(fit.spec.fixef_names)]
    rows = []
    for name, j, interval, zeta in variances + fixed:
        estimate = profiler.estimate[j] if zeta == profiler.zeta else profiler.ml.fixef().iloc[j]
        low, high = interval(j, z)
        for end in (low, high):  # outwards from the estimate: each search starts from the last
            rows += [(name, value, zeta(j, value)) for value in np.linspace(estimate, end, points + 1)[1:]]
        rows.append((name, estimate, 0.0))
    table = pd.DataFrame(rows, columns=["parameter", "value", "zeta"])
    order = {name: k for k, (name, *_) in enumerate(variances + fixed)}
    return table.sort_values(["parameter", "value"], key=lambda c: c.map(order) if c.name == "parameter" else c,
                             ignore_index=True)


PHI_LIMIT = 10.0  # |φ| in profiles: ρ = tanh(10) = 1 − 4e-9, sd ratios up to e^10


class _Profiler:
    """The ML deviance in (sds, correlations, σ, φ), profiled over the rest (β analytically).

    φ, a residual structure's unconstrained parameters, is profiled like the others; its
    intervals map to ρ and the sd ratios through the structure's monotone transforms."""

    def __init__(self, fit):
        self.fit = fit
        ml = fit if not fit.reml else fit.refit("ML")
        self.model = ml.state  # the ML fit: its data, θ's layout and residual structure
        natural = self._to_natural(ml.theta, ml.sigma)
        self.sigma_index = natural.size
        self.coordinates = [] if self.model.residual is None else self.model.residual.coordinates()
        self.estimate = np.r_[natural, ml.sigma, ml.state.phi]
        self.best = self.deviance(self.estimate)
        self.ml = ml
        self._last = {}  # (parameter, upper side) → the other parameters' last optimum

    def _to_natural(self, theta, sigma) -> np.ndarray:
        """The sds and correlations at (θ, σ): the profile's coordinates (finite: an undefined
        correlation starts at 0)."""
        return defined(sdcor_of_theta(self.fit.spec.terms, theta, sigma))

    def _theta(self, natural, sigma):
        return theta_of_sdcor(self.fit.spec.terms, natural, sigma)

    def deviance(self, v) -> float:
        sigma = v[self.sigma_index]
        theta = self._theta(v[: self.sigma_index], sigma) if sigma > 0 else None
        if theta is None:
            return np.inf
        try:
            stats, logdet = self.model.stats_at(v[self.sigma_index + 1:])
        except np.linalg.LinAlgError:
            return np.inf
        fact = ld.factorize(theta, stats, self.model.layout)
        prof = None if fact is None else ld.profile(fact, stats.p)
        value = np.inf if prof is None else ld.deviance_at(fact, prof, stats.n, sigma**2, prof.beta) + logdet
        return value if np.isfinite(value) else np.inf

    def zeta(self, j: int, value: float) -> float:
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
            # a correlation's end (±1) is a probe of the boundary whose optimum, with sds pushed
            # to their bounds, is a poor start for values inside (it stalls there)
            if np.isfinite(best) and not (self._is_correlation(j) and abs(value) > 1 - 1e-6):
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
        """Coordinate j is a correlation: below a term's diagonal (θ's order)."""
        return j < self.sigma_index and not self.model.layout.diagonal[j]

    def _root(self, j, target, estimate, end):
        """ζ_j = target between the estimate and ``end`` (None: unbounded above).  Secant steps
        from the estimate (ζ is nearly linear in a well-behaved parameter) find a short bracket,
        Brent's method closes it; reaching ``end`` first means the interval reaches the
        boundary there."""
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

    def fixed_zeta(self, j: int, b: float) -> float:
        """ζ of β_j at b: the ML fit of y − x_j b on the other columns."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if self.model.residual is None:
                deviance = fit_theta(_offset_stats(self.model.stats, j, b), self.model.layout, reml=False).deviance
            else:
                deviance = self._offset_fit_with_residual(j, b)
        rise = deviance - self.best
        return float(np.sign(b - self.ml.fixef().to_numpy()[j]) * np.sqrt(max(rise, 0.0)))

    def fixed_interval(self, j: int, z: float) -> tuple[float, float]:
        """Profile of β_j: where :meth:`fixed_zeta` crosses ∓z."""
        beta, se = self.ml.fixef().to_numpy()[j], self.ml.se().to_numpy()[j]

        def zeta(b):
            return self.fixed_zeta(j, b)

        def root(target):
            end = beta + target / abs(target) * 2 * z * se
            while np.sign(zeta(end) - target) != np.sign(target):
                end = beta + 2 * (end - beta)
            return brentq(lambda b: zeta(b) - target, *sorted((beta, end)), xtol=1e-10 * max(1.0, abs(beta)))

        return root(-z), root(z)

    def _offset_fit_with_residual(self, j: int, b: float) -> float:
        """The ML deviance with β_j fixed at b, θ and φ re-optimised (the structure's own search)."""
        return fit_with_residual(_offset_spec(self.model.spec, j, b), self.model.layout, self.model.residual,
                                 reml=False)[0].deviance


def _offset_spec(spec, j: int, b: float):
    """The spec of y − b x_j on the other columns of X."""
    keep = [k for k in range(spec.p) if k != j]
    return dataclasses.replace(spec, y=spec.y - b * spec.X[:, j], X=spec.X[:, keep],
                               fixef_names=tuple(spec.fixef_names[k] for k in keep))


def _offset_stats(stats, j: int, b: float):
    """Cross-products of [X_(−j), y − b x_j] from those of [X, y]: a linear map of the columns."""
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
