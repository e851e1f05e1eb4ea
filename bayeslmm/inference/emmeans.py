"""Estimated marginal means and their contrasts, as R's emmeans reports them, for a REML/ML fit
(t or z inference with Satterthwaite, Kenward–Roger or asymptotic df) and for a posterior
(point estimate and interval of the linear functions over the draws of β).

The means and contrasts are linear functions l'β built on emmeans' reference grid
(:mod:`bayeslmm.inference.reference_grid`); p values of contrasts are adjusted within each
``by`` group (:mod:`bayeslmm.inference.multiplicity`).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as st

from bayeslmm.checks import check_level
from bayeslmm.errors import LMMError
from bayeslmm.inference.fixed_effects import check_ddf
from bayeslmm.inference.kenward_roger import kenward_roger, kr_df_and_scale
from bayeslmm.inference.multiplicity import adjusted_p, check_adjust
from bayeslmm.inference.reference_grid import CONTRAST_METHODS, Contrasts, MarginalMeans, contrasts, marginal_means
from bayeslmm.inference.satterthwaite import contrast_df, satterthwaite_pieces
from bayeslmm.threads import one_blas_thread

POINT_ESTIMATES = ("median", "mean")
INTERVALS = ("hpd", "eti")


# --- REML / ML fits --------------------------------------------------------------------------


@one_blas_thread()
def linear_inference(fit, L: np.ndarray, ddf: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Estimate, standard error and denominator df of each row l'β̂ of ``L``.

    ``"satterthwaite"``: Var(β̂) and lmerTest's df of l; ``"kenward-roger"``: pbkrtest's adjusted
    covariance Φ_A and the Kenward–Roger df of l (as emmeans' ``lmer.df = "kenward-roger"``);
    ``"asymptotic"``: Var(β̂) and df = ∞.
    """
    estimate = L @ fit.fixef().to_numpy()
    if ddf == "kenward-roger":
        kr = kenward_roger(fit)
        vcov = kr.phi_adjusted
        df = np.array([kr_df_and_scale(kr, row)[0] for row in L])
    else:
        vcov = fit.vcov().to_numpy()
        df = np.full(len(L), np.inf)
        if ddf == "satterthwaite" and len(L):
            gradients, A = satterthwaite_pieces(fit)
            df = contrast_df(L, vcov, gradients, A)
    se = np.sqrt(np.einsum("ip,pq,iq->i", L, vcov, L))
    return estimate, se, df


def emmeans_table(fit, specs, by=None, at=None, ddf: str = "satterthwaite", level: float = 0.95) -> pd.DataFrame:
    """emmeans' table of a REML/ML fit: the specs and by columns, ``emmean, SE, df`` and the
    confidence limits ``lower.CL, upper.CL`` (``asymp.LCL, asymp.UCL`` when ``ddf="asymptotic"``)."""
    level, ddf = check_level(level), check_ddf(ddf)
    means = marginal_means(fit.spec, specs, by=by, at=at)
    estimate, se, df = linear_inference(fit, means.L, ddf)
    quantile = st.t.ppf(0.5 + level / 2, df)
    lower, upper = ("asymp.LCL", "asymp.UCL") if ddf == "asymptotic" else ("lower.CL", "upper.CL")
    table = means.labels.assign(emmean=estimate, SE=se, df=df)
    table[lower], table[upper] = estimate - quantile * se, estimate + quantile * se
    table.attrs["notes"] = _notes(means, ddf) + [f"Confidence level used: {level:g}"]
    return table


def contrast_table(fit, specs, method: str = "pairwise", by=None, at=None, ddf: str = "satterthwaite",
                   adjust: str | None = None) -> pd.DataFrame:
    """emmeans' contrast table of a REML/ML fit: ``contrast``, the by columns, ``estimate, SE,
    df, t.ratio, p.value`` (``z.ratio`` when ``ddf="asymptotic"``); p values adjusted per by group."""
    ddf = check_ddf(ddf)
    means, found = _contrasts(fit.spec, specs, method, by, at)
    adjust = check_adjust(adjust, method)
    estimate, se, df = linear_inference(fit, found.L, ddf)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = estimate / se
    p_value = np.empty(len(ratio))
    for family in np.unique(found.family):
        rows = found.family == family
        p_value[rows] = adjusted_p(ratio[rows], df[rows], adjust, int(found.n_means[rows][0]))
    table = found.labels.assign(estimate=estimate, SE=se, df=df)
    table["z.ratio" if ddf == "asymptotic" else "t.ratio"] = ratio
    table["p.value"] = p_value
    table.attrs["notes"] = _notes(means, ddf) + [_adjust_note(adjust, found)]
    return table


def _contrasts(spec, specs, method, by, at) -> tuple[MarginalMeans, Contrasts]:
    if method not in CONTRAST_METHODS:
        raise LMMError(f"method must be one of {', '.join(map(repr, CONTRAST_METHODS))}; got {method!r}")
    means = marginal_means(spec, specs, by=by, at=at)
    return means, contrasts(means, method)


def _notes(means: MarginalMeans, ddf: str | None) -> list[str]:
    notes = [f"Results are averaged over the levels of: {', '.join(means.averaged)}"] if means.averaged else []
    return notes + ([f"Degrees-of-freedom method: {ddf}"] if ddf else [])


def _adjust_note(adjust: str, found: Contrasts) -> str:
    if adjust == "tukey":
        return f"P value adjustment: tukey method for comparing a family of {found.n_means.max(initial=0)} estimates"
    tests = np.bincount(found.family).max(initial=0) if found.family.size else 0
    return f"P value adjustment: {adjust} method for {tests} tests"


# --- posteriors ------------------------------------------------------------------------------


def beta_draws(post) -> np.ndarray:
    """The posterior draws of β as a (draws, p) array, chains stacked."""
    beta = post.posterior["beta"]
    return beta.to_numpy().reshape(-1, beta.shape[-1])


def posterior_emmeans(post, specs, by=None, at=None, level: float = 0.95, point: str = "median",
                      interval: str = "hpd") -> pd.DataFrame:
    """Marginal means of a posterior: the specs and by columns, ``emmean`` and the interval's
    limits (``lower.HPD, upper.HPD`` or ``lower.ETI, upper.ETI``) over the draws of l'β."""
    means = marginal_means(post.spec, specs, by=by, at=at)
    summary = summarize_draws(beta_draws(post) @ means.L.T, level, point, interval)
    table = pd.concat([means.labels, summary.rename(columns={"estimate": "emmean"})], axis=1)
    table.attrs["notes"] = _notes(means, None) + [_interval_note(point, interval, level)]
    return table


def posterior_contrasts(post, specs, method: str = "pairwise", by=None, at=None, level: float = 0.95,
                        point: str = "median", interval: str = "hpd") -> pd.DataFrame:
    """Contrasts of a posterior's marginal means: ``contrast``, the by columns, ``estimate`` and
    the interval's limits over the draws (no multiplicity adjustment: there are no p values)."""
    means, found = _contrasts(post.spec, specs, method, by, at)
    summary = summarize_draws(beta_draws(post) @ found.L.T, level, point, interval)
    table = pd.concat([found.labels, summary], axis=1)
    table.attrs["notes"] = _notes(means, None) + [_interval_note(point, interval, level)]
    return table


def summarize_draws(draws: np.ndarray, level: float, point: str, interval: str) -> pd.DataFrame:
    """Per column of ``draws`` (draws × functions): the point estimate and the interval."""
    level = check_level(level)
    if point not in POINT_ESTIMATES:
        raise LMMError(f"point must be one of {', '.join(map(repr, POINT_ESTIMATES))}; got {point!r}")
    if interval not in INTERVALS:
        raise LMMError(f"interval must be 'hpd' (highest posterior density, emmeans' default for posteriors) "
                       f"or 'eti' (equal-tailed); got {interval!r}")
    estimate = np.median(draws, axis=0) if point == "median" else draws.mean(axis=0)
    if interval == "hpd":
        lower, upper = shortest_interval(draws, level)
    else:
        lower, upper = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2], axis=0)
    suffix = interval.upper()
    return pd.DataFrame({"estimate": estimate, f"lower.{suffix}": lower, f"upper.{suffix}": upper})


def shortest_interval(draws: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """The highest-posterior-density interval of each column: the shortest interval between two
    sorted draws that spans round(level · n) gaps (coda's ``HPDinterval``, which emmeans uses).

    Examples
    --------
    >>> import numpy as np
    >>> draws = np.array([[0.0], [1.0], [1.1], [1.2], [5.0]])
    >>> [float(bound[0]) for bound in shortest_interval(draws, 0.5)]
    [1.0, 1.2]
    """
    ordered = np.sort(draws, axis=0)
    n = ordered.shape[0]
    gap = max(1, min(n - 1, int(round(n * level))))
    widths = ordered[gap:] - ordered[:n - gap]
    start = np.argmin(widths, axis=0)
    columns = np.arange(ordered.shape[1])
    return ordered[start, columns], ordered[start + gap, columns]


def _interval_note(point: str, interval: str, level: float) -> str:
    kind = "HPD interval" if interval == "hpd" else "equal-tailed interval"
    return f"Point estimate displayed: {point}; {kind} probability: {level:g}"
