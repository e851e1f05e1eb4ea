"""Parametric bootstrap: simulate responses from a fit and refit (lme4's simulate and bootMer,
pbkrtest's PBmodcomp).

A simulated response is y* = Xβ̂ + Zb* + ε*, with b* ~ N(0, σ̂²ΛΛ') drawn level by level and
ε* ~ N(0, σ̂²R_i(φ̂)) drawn group by group.  A refit changes only y, so only the y-dependent
cross-products change (:class:`bayeslmm.linalg.crossprod.ResponseProducts`); the optimiser starts
from θ̂.  Fits with a residual structure re-whiten the data for every φ (slower, but the same
code path as the original fit).  Refits are fit states (:class:`bayeslmm.fit.state.FitState`);
a statistic sees each as the kind of result it was given (``fit.from_state``).
"""
from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pandas as pd

from bayeslmm.checks import check_count, check_level
from bayeslmm.errors import LMMError
from bayeslmm.fit.state import FitState
from bayeslmm.linalg.crossprod import ResponseProducts
from bayeslmm.model.covariance import SIGMA, sdcor_names, sdcor_of_theta
from bayeslmm.threads import one_blas_thread

BATCH = 100  # responses simulated and turned into cross-products at a time (bounds memory)
# L-BFGS-B stopping rule for refits: a third of the evaluations of the default (1e-15, 1e-10)
# on sleepstudy, with θ within 5e-7 of the fully converged refit.
REFIT_TOLERANCES = {"ftol": 1e-13, "gtol": 1e-9}


# --- simulation ----------------------------------------------------------------------------


def simulate(fit, n: int = 1, seed=None) -> pd.DataFrame:
    """``n`` responses simulated from the fitted model: columns ``sim_1 … sim_n``, the model's rows."""
    n = check_count(n)
    Y = draw_responses(fit.state, n, np.random.default_rng(seed))
    return pd.DataFrame(Y, index=fit.spec.row_labels, columns=[f"sim_{k + 1}" for k in range(n)])


def draw_responses(state: FitState, n: int, rng: np.random.Generator) -> np.ndarray:
    """(nobs, n) responses: Xβ̂ + Σ_f Z_f b_f* + ε*, each part drawn in that order (ε*_i with
    sd σ̂/√w_i under prior weights)."""
    spec = state.spec
    Y = np.repeat((spec.X @ state.beta)[:, None], n, axis=1)
    for factor, T in zip(spec.factors, state.factorization.T):
        G, S = factor.n_levels, factor.n_columns
        b = state.sigma * np.einsum("st,gtk->gsk", T, rng.standard_normal((G, S, n)))  # b_g = σ T z_g
        for s in range(S):
            Y += factor.raw[:, s, None] * b[factor.codes, s, :]
    noise = state.sigma * rng.standard_normal((spec.n, n))
    if spec.weights is not None:  # Var(ε_i) = σ²/w_i
        noise *= spec.noise_scale[:, None]
    if state.residual is not None:
        noise = state.residual.colour(state.residual.natural(state.phi), noise)  # N(0, σ̂²R_i) per group
    return Y + noise


# --- refitting -----------------------------------------------------------------------------


@dataclasses.dataclass
class Refit:
    fit: object  # a FitState, or the caller's result for it (refits)
    converged: bool


def refit_states(state: FitState, Y: np.ndarray):
    """One refit of ``state``'s model per column of ``Y``, same method, warm-started at θ̂.

    Every refit is a state of its own (the new y and cross-products), so that anything
    computed from it — a Satterthwaite table, a profile — uses the simulated data.  Warnings
    of the refits are silenced here; their convergence is returned instead.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if state.residual is not None:
            for k in range(Y.shape[1]):
                new = state.refit(y=Y[:, k])
                yield Refit(new, new.optsum.converged)
            return
        products = ResponseProducts(state.spec)
        for start in range(0, Y.shape[1], BATCH):
            block = Y[:, start:start + BATCH]
            for k, stats in enumerate(products.with_responses(state.stats, block)):
                new = state.refit(y=block[:, k], stats=stats, start=state.theta, tolerances=REFIT_TOLERANCES)
                yield Refit(new, new.optsum.converged)


def refits(fit, Y: np.ndarray):
    """:func:`refit_states` of ``fit.state``, each refit given as ``fit.from_state`` makes it
    (an LMMResult for an LMMResult), built while the refits' warnings are silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for refit in refit_states(fit.state, Y):
            yield Refit(fit.from_state(refit.fit), refit.converged)


def _refits_of_simulations(source: FitState, targets, n: int, rng: np.random.Generator, refit=refit_states):
    """Simulate from ``source`` BATCH responses at a time (memory: nobs × BATCH) and yield the
    ``refit`` of ``targets`` (one, or a tuple refitted to the same responses)."""
    for start in range(0, n, BATCH):
        Y = draw_responses(source, min(BATCH, n - start), rng)
        if isinstance(targets, tuple):
            yield from zip(*(refit(target, Y) for target in targets))
        else:
            yield from refit(targets, Y)


# --- bootMer ---------------------------------------------------------------------------------


def default_statistic_names(fit) -> list[str]:
    return sdcor_names(fit.spec) + [SIGMA] + list(fit.spec.fixef_names)


def default_statistic(fit) -> np.ndarray:
    """sds and correlations of every term (lme4's θ order; NaN next to a zero sd), σ, then the
    fixed effects."""
    return np.r_[sdcor_of_theta(fit.spec.terms, fit.theta, fit.sigma), fit.sigma, fit.fixef().to_numpy()]


def bootstrap(fit, n: int, seed=None, statistic=None) -> pd.DataFrame:
    """Parametric bootstrap (lme4's ``bootMer``): simulate ``n`` responses, refit, apply ``statistic``.

    Rows are the replicates; the columns are the statistic's names.  Refits that did not
    converge are kept and listed in ``attrs["not_converged"]``; replicates whose statistic
    raised are NaN rows listed in ``attrs["failed"]``; ``attrs["note"]`` counts both and a
    warning is issued — nothing is dropped silently.
    """
    n = check_count(n)
    names, evaluate = _statistic(fit, statistic)
    rows = np.full((n, len(names)), np.nan)
    not_converged, failed, first_error = [], [], None
    with one_blas_thread():
        simulations = _refits_of_simulations(fit.state, fit, n, np.random.default_rng(seed), refit=refits)
        for k, refit in enumerate(simulations):
            if not refit.converged:
                not_converged.append(k)
            try:
                rows[k] = evaluate(refit.fit)
            except Exception as error:  # a user statistic may fail on one replicate: record it
                failed.append(k)
                first_error = first_error or error
    table = pd.DataFrame(rows, columns=names)
    table.index.name = "replicate"
    table.attrs.update(n=n, seed=seed, not_converged=not_converged, failed=failed,
                       note=_failure_note(n, not_converged, failed, first_error))
    if not_converged or failed:
        warnings.warn(table.attrs["note"], UserWarning, stacklevel=3)
    return table


def _statistic(fit, statistic):
    """Column names and a function fit → 1-d float array, checked on the original fit (bootMer's t0)."""
    if statistic is None:
        return default_statistic_names(fit), default_statistic
    if not callable(statistic):
        raise LMMError(f"statistic must be a function fit -> numbers (or None for the default); got {statistic!r}")
    try:
        t0 = statistic(fit)
    except Exception as error:
        raise LMMError(f"statistic raised on the fitted model itself: {type(error).__name__}: {error}") from error
    names = _names_of(t0)

    def evaluate(refit):
        values = np.asarray(statistic(refit), dtype=float).reshape(-1)
        if values.size != len(names):
            raise LMMError(f"statistic returned {values.size} values here and {len(names)} on the original fit")
        return values

    try:
        evaluate(fit)
    except (TypeError, ValueError) as error:
        raise LMMError(f"statistic must return numbers (a scalar, array or Series); got {t0!r}") from error
    return names, evaluate


def _names_of(t0) -> list[str]:
    if isinstance(t0, pd.Series):
        return [str(name) for name in t0.index]
    size = np.asarray(t0).size
    return [f"t{k + 1}" for k in range(size)]  # boot's t1*, t2*, … without the star


def _failure_note(n, not_converged, failed, error) -> str:
    parts = []
    if not_converged:
        parts.append(f"{len(not_converged)} of {n} refits did not converge (kept; rows in attrs['not_converged'])")
    if failed:
        parts.append(f"the statistic failed on {len(failed)} of {n} refits (NaN rows, in attrs['failed']); "
                     f"first error: {type(error).__name__}: {error}")
    return "; ".join(parts)


def bootstrap_confint(fit, level: float = 0.95, n: int = 1000, seed=None) -> pd.DataFrame:
    """Percentile intervals from :func:`bootstrap` (lme4's ``confint(method = "boot")``)."""
    level = check_level(level)
    draws = bootstrap(fit, n, seed=seed)
    alpha = (1 - level) / 2
    table = pd.DataFrame({"lower": draws.quantile(alpha), "upper": draws.quantile(1 - alpha)})
    table.attrs.update(draws.attrs)
    return table


# --- PBmodcomp -------------------------------------------------------------------------------


def bootstrap_lrt(small, large, observed: float, n: int, seed=None) -> tuple[float, dict]:
    """p-value of the likelihood-ratio statistic ``observed`` = 2(ℓ_large − ℓ_small) under the
    smaller model: simulate from ``small``, refit both, p = (1 + #{LRT* ≥ LRT}) / (1 + n′) with
    n′ the replicates whose two refits gave a finite statistic."""
    n = check_count(n)
    lrt = np.full(n, np.nan)
    not_converged = []
    rng = np.random.default_rng(seed)
    with one_blas_thread():
        for k, (a, b) in enumerate(_refits_of_simulations(small.state, (small.state, large.state), n, rng)):
            if not (a.converged and b.converged):
                not_converged.append(k)
            lrt[k] = 2 * (b.fit.loglik - a.fit.loglik)
    valid = np.isfinite(lrt)
    p = (1 + np.sum(lrt[valid] >= observed - 1e-8 * max(1.0, abs(observed)))) / (1 + valid.sum())
    return float(p), {"lrt": lrt, "not_converged": not_converged}


def bootstrap_lrt_column(table: pd.DataFrame, fits, n: int, seed=None) -> str:
    """``Pr(>Chisq) bootstrap`` for each row against the previous one; returns the table's note."""
    n = check_count(n)
    seeds = np.random.SeedSequence(seed).spawn(len(fits) - 1)
    column, trouble = [np.nan], []
    for i, (small, large) in enumerate(zip(fits[:-1], fits[1:])):
        chisq, df = table["Chisq"].iloc[i + 1], table["Df"].iloc[i + 1]
        if not df > 0:
            column.append(np.nan)
            continue
        p, details = bootstrap_lrt(small, large, chisq, n, seed=seeds[i])
        column.append(p)
        bad = len(details["not_converged"])
        if bad:
            trouble.append(f"{table.index[i + 1]}: {bad} of {n} refits did not converge (kept)")
    table["Pr(>Chisq) bootstrap"] = column
    if trouble:
        warnings.warn("; ".join(trouble), UserWarning, stacklevel=4)
    note = (f"Pr(>Chisq) bootstrap: parametric bootstrap of Chisq under the previous model, {n} simulated "
            "responses refitted by both models, p = (1 + #{Chisq* ≥ Chisq}) / (1 + n).")
    return " ".join([note] + trouble)
