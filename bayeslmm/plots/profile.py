"""Profile zeta plots (lme4's ``xyplot(profile(fit))``)."""
from __future__ import annotations

from bayeslmm.errors import LMMError
from bayeslmm.inference.profile import profile
from bayeslmm.plots.figure import ESTIMATE, REFERENCE, check_fit, is_posterior, panels, z_value

ZETA_LEVELS = (0.5, 0.8, 0.9, 0.95, 0.99)  # lme4's reference lines


def profile_zeta(fit, level: float = 0.99, points: int = 8, ncols: int | None = None):
    """ζ against each parameter, a panel per sd, correlation, σ and fixed effect.

    ζ is the signed square root of the ML deviance's rise with the other parameters
    re-optimised (:func:`bayeslmm.inference.profile.profile`); it crosses ±z at the ends of the
    profile intervals of ``fit.confint()``, and a straight line means the Wald interval is as
    good.  Horizontal lines mark ±z of the 50, 80, 90, 95 and 99% intervals up to ``level``.

    Parameters
    ----------
    fit : LMMResult
        A REML or ML fit (the profile is of the ML deviance in either case, as lme4's).
    level : float
        How far out each parameter is profiled: until ζ reaches ∓z of ``level``.
    points : int
        Values on each side of the estimate.
    ncols : int, optional
        Panels per row (default: up to 4).

    Returns
    -------
    matplotlib.figure.Figure
        Per panel, titled by ``confint``'s label, the ζ curve (Line2D, gid ``"estimate"``).

    Examples
    --------
    >>> import bayeslmm as blm
    >>> from bayeslmm.plots import profile_zeta
    >>> fit = blm.LMM("Yield ~ 1 + (1 | Batch)", blm.datasets.load("Dyestuff")).fit()
    >>> [ax.get_title() for ax in profile_zeta(fit, points=3).axes]
    ['sd_(Intercept)|Batch', 'sigma', '(Intercept)']
    """
    check_fit(fit)
    if is_posterior(fit):
        raise LMMError("profile_zeta profiles the likelihood of a REML/ML fit; for a posterior, plot its "
                       "marginal densities with bayeslmm.plots.trace")
    traces = profile(fit, level=level, points=points)
    names = list(dict.fromkeys(traces["parameter"]))
    fig, axes = panels(len(names), ncols=ncols, sharey=True)
    marks = [z_value(mark) for mark in ZETA_LEVELS if mark <= level]
    for ax, name in zip(axes, names):
        trace = traces[traces["parameter"] == name]
        for z in marks:
            ax.axhline(z, color="0.8", linewidth=0.7, gid=REFERENCE)
            ax.axhline(-z, color="0.8", linewidth=0.7, gid=REFERENCE)
        ax.plot(trace["value"], trace["zeta"], "-", color="C0", gid=ESTIMATE)
        ax.set_title(name, fontsize="small")
    axes[0].set_ylabel("ζ")
    return fig
