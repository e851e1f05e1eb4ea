"""FitState: a REML/ML fit as data, self-contained like lme4's merMod.

It holds what the fit was made from (the model specification, θ's layout, the residual
structure bound to the rows, REML or ML), what it found (θ̂, φ̂, the optimiser's summary)
and what follows from those (the cross-products at φ̂, their factorization at θ̂, the
profiled β̂ and σ̂).  Results are built from a state and inference reads it: intervals,
degrees of freedom, tests, simulation and refits need nothing else — in particular not the
LMM that made it, so a result refits and bootstraps after a pickle round trip.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from bayeslmm import checks
from bayeslmm.fit import optimize
from bayeslmm.fit.optsum import OptSummary
from bayeslmm.fit.residual import fit_with_residual, whitened_stats
from bayeslmm.linalg import logdensity as ld
from bayeslmm.linalg.crossprod import CrossProducts, cross_products
from bayeslmm.model.covariance import ThetaLayout
from bayeslmm.model.spec import ModelSpec
from bayeslmm.threads import one_blas_thread


class FitState:
    """One REML or ML fit of a linear mixed model.

    Parameters
    ----------
    spec : ModelSpec
        The model as fitted (its y, X, grouping factors, weights, offset).
    layout : ThetaLayout
        θ's layout: which entry of which factor's relative covariance factor T_f each θ_j is.
    reml : bool
        REML (True) or ML (False).
    stats : CrossProducts
        The sufficient statistics of the fit: of the data whitened at φ̂ when there is a
        residual structure, else of the data themselves.
    optsum : OptSummary
        The optimiser's record, with θ̂ (``optsum.theta``) and the deviance at the optimum.
    residual : bound residual structure, optional
        The within-group error covariance, bound to the rows (None: independent errors).
    phi : array, optional
        The structure's fitted parameters φ̂, in the optimiser's coordinates (empty without one).

    Attributes
    ----------
    theta, deviance : θ̂ and the REML or ML deviance (−2ℓ) at the optimum.
    factorization : :class:`bayeslmm.linalg.logdensity.Factorization` of ``stats`` at θ̂.
    profile : :class:`bayeslmm.linalg.logdensity.Profile`, with β̂ (``profile.beta``).
    sigma : σ̂, the residual sd (REML or ML estimate).
    """

    def __init__(self, spec: ModelSpec, layout: ThetaLayout, reml: bool, stats: CrossProducts, optsum: OptSummary,
                 residual=None, phi=None):
        self.spec, self.layout, self.reml, self.stats, self.optsum = spec, layout, bool(reml), stats, optsum
        self.residual = residual
        self.phi = np.zeros(0) if phi is None else np.asarray(phi, dtype=float)
        self.theta = optsum.theta
        self.deviance = float(optsum.deviance)
        self.factorization = ld.factorize(self.theta, stats, layout)
        self.profile = ld.profile(self.factorization, spec.p)
        checks.check_residual_precision(self.profile.r2, float(stats.XYtXY[-1, -1]), spec)
        self.sigma = float(np.sqrt(ld.sigma2_hat(self.profile, spec.n, self.reml)))

    @property
    def method(self) -> str:
        return "REML" if self.reml else "ML"

    @property
    def beta(self) -> np.ndarray:
        """β̂, the fixed effects at θ̂ (and φ̂)."""
        return self.profile.beta

    @property
    def loglik(self) -> float:
        """The log-likelihood at the optimum (REML's for a REML fit)."""
        return -0.5 * self.deviance

    @property
    def npar(self) -> int:
        """Fixed effects, θ, φ and σ: lme4/nlme's ``df`` of the log-likelihood."""
        return self.spec.p + self.layout.size + self.phi.size + 1

    def stats_at(self, phi) -> tuple[CrossProducts, float]:
        """Cross-products of the data whitened at ``phi`` and Σ log|R_i(φ)|; without a residual
        structure, the fit's own cross-products and 0 (``phi`` is then empty)."""
        if self.residual is None:
            return self.stats, 0.0
        return whitened_stats(self.spec, self.residual, phi)

    def refit(self, reml: bool | None = None, y=None, stats: CrossProducts | None = None, start=None,
              tolerances=None) -> "FitState":
        """The same model fitted again: by REML or ML (``reml``; the same by default), and to
        another response ``y`` (with its cross-products ``stats`` when the caller has them).
        ``start`` and ``tolerances`` go to the fit over θ (without a residual structure)."""
        reml = self.reml if reml is None else reml
        if y is None:
            spec, stats = self.spec, self.stats if self.residual is None else None
        else:
            spec = dataclasses.replace(self.spec, y=np.asarray(y, dtype=float))
        return fit_state(spec, self.layout, reml, residual=self.residual, stats=stats, start=start,
                         tolerances=tolerances)


@one_blas_thread()
def fit_state(spec: ModelSpec, layout: ThetaLayout, reml: bool, residual=None, stats: CrossProducts | None = None,
              start=None, tolerances=None) -> FitState:
    """Fit ``spec`` by REML or ML: over θ (from ``start``, stopping at ``tolerances``; ``stats``
    are the spec's cross-products, computed when None), or, with a ``residual`` structure, over
    φ with θ profiled out (``stats``, ``start`` and ``tolerances`` then unused)."""
    if residual is not None:
        optsum, phi = fit_with_residual(spec, layout, residual, reml)
        white, _ = whitened_stats(spec, residual, phi)
        return FitState(spec, layout, reml, white, optsum, residual, phi)
    stats = cross_products(spec) if stats is None else stats
    optsum = optimize.fit_theta(stats, layout, reml, start=start, tolerances=tolerances)
    return FitState(spec, layout, reml, stats, optsum)
