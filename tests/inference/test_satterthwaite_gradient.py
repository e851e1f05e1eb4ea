"""Satterthwaite's Hessian with several grouping factors: first differences of the exact gradient
of the deviance in (θ, σ), against second differences of the deviance (the one-factor route)."""
from __future__ import annotations

import numpy as np
import pytest

import bayeslmm as blm
from bayeslmm.inference import satterthwaite as st
from bayeslmm.linalg import logdensity as ld
from tests.linalg.test_gradient import schools, subjects_items

DESIGNS = {
    "Penicillin": ("diameter ~ 1 + (1 | plate) + (1 | sample)", lambda: blm.datasets.load("Penicillin")),
    "subjects x items": ("y ~ a + b + (1 + a + b | subj) + (1 + a | item)", subjects_items),
    "three factors": ("y ~ ses + (1 + ses | school) + (1 | class) + (1 | hood)", schools),
}


def _deviance(fit, reml):
    layout, beta = fit.state.layout, fit.fixef().to_numpy()

    def deviance(v):
        fact = ld.factorize(v[: layout.size], fit.state.stats, layout)
        return ld.deviance_at(fact, ld.profile(fact, fit.spec.p), fit.nobs, v[layout.size] ** 2, beta, reml=reml)
    return deviance


@pytest.fixture(scope="module", params=list(DESIGNS))
def fits(request):
    formula, make = DESIGNS[request.param]
    model = blm.LMM(formula, make())
    return model.fit(), model.fit("ML")


@pytest.mark.parametrize("reml", [True, False])
def test_deviance_gradient_equals_central_differences(fits, reml):
    fit = fits[0] if reml else fits[1]
    varpar = np.r_[fit.theta, fit.sigma] * 1.1 + 0.02
    exact = st.deviance_gradient(varpar, fit.state.stats, fit.state.layout, reml, fit.fixef().to_numpy())
    deviance = _deviance(fit, reml)
    numeric = np.array([(deviance(varpar + e) - deviance(varpar - e)) / (2 * e.sum()) for e in np.diag(1e-5 * np.ones(varpar.size))])
    np.testing.assert_allclose(exact, numeric, rtol=1e-6, atol=1e-6 * np.abs(numeric).max())


def test_satterthwaite_df_by_either_hessian_route_agree(fits):
    fit = fits[0]
    varpar = np.r_[fit.theta, fit.sigma]
    step = 1e-2 * np.maximum(np.abs(varpar), 1e-2)
    by_deviances = st._richardson(lambda h: st._hessian(_deviance(fit, True), varpar, h), step)
    beta = fit.fixef().to_numpy()
    by_gradients = st._richardson(lambda h: st._jacobian(
        lambda v: st.deviance_gradient(v, fit.state.stats, fit.state.layout, True, beta), varpar, h), step)
    np.testing.assert_allclose(0.5 * (by_gradients + by_gradients.T), by_deviances, rtol=1e-6,
                               atol=1e-6 * np.abs(by_deviances).max())
