"""The Toeplitz structure: its S is the Toeplitz matrix whose partial autocorrelations are
tanh(φ), its likelihood is the dense one over the visits each group has, AR(1) is its special
case π_k = 0 beyond lag 1, and it fits, reports and samples like the other structures."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.linalg import toeplitz

import bayeslmm as blm
from bayeslmm import cov
from bayeslmm.fit import residual as fit_residual

pytestmark = pytest.mark.filterwarnings("ignore:.*BLAS.*", "ignore::bayeslmm.PosteriorWarning")


@pytest.fixture(scope="module")
def sitka():
    data = blm.datasets.load("Sitka")
    return data.drop(index=data.index[::6]).reset_index(drop=True)  # trees lose different visits


def _partial_autocorrelations(S: np.ndarray) -> np.ndarray:
    """π_m: the last Yule–Walker coefficient of order m, from the correlations in S's first row."""
    r = S[0]
    return np.array([np.linalg.solve(toeplitz(r[:m]), r[1:m + 1])[-1] for m in range(1, len(r))])


def test_covariance_is_toeplitz_with_the_partial_autocorrelations_of_phi(sitka):
    bound = cov.Toeplitz(time="visit", group="tree").bind(sitka)
    phi = np.random.default_rng(1).normal(0, 0.6, bound.start.size)
    S = bound.relative_covariance(phi)
    np.testing.assert_allclose(S, toeplitz(S[0]), atol=1e-15)
    assert S[0, 0] == 1.0
    np.testing.assert_allclose(_partial_autocorrelations(S), np.tanh(phi), rtol=1e-10)
    assert np.linalg.eigvalsh(S).min() > 0


def test_likelihood_equals_the_dense_one_over_each_trees_visits(sitka):
    model = blm.LMM("size ~ time * treat", sitka, residual=cov.Toeplitz(time="visit", group="tree"))
    phi = np.random.default_rng(2).normal(0, 0.5, model.residual.start.size)
    S = model.residual.relative_covariance(phi)
    X, y = model.spec.X, model.spec.y
    Rinv, logdet = np.zeros((len(y), len(y))), 0.0
    for idx in sitka.groupby("tree").groups.values():
        visits = sitka.loc[idx, "visit"].to_numpy() - 1
        R = S[np.ix_(visits, visits)]
        Rinv[np.ix_(idx, idx)] = np.linalg.inv(R)
        logdet += np.linalg.slogdet(R)[1]
    for reml in (False, True):
        beta = np.linalg.solve(X.T @ Rinv @ X, X.T @ Rinv @ y)
        r, n, p = y - X @ beta, len(y), X.shape[1]
        dof = n - p if reml else n
        dense = dof * np.log(2 * np.pi * (r @ Rinv @ r) / dof) + dof + logdet
        if reml:
            dense += np.linalg.slogdet(X.T @ Rinv @ X)[1]
        ours = fit_residual.objective(phi, model.spec, model.layout, model.residual, reml)
        assert ours == pytest.approx(dense, rel=1e-10)


def test_ar1_is_the_case_without_partial_autocorrelation_beyond_lag_one(sitka):
    """With π = (ρ, 0, 0, …) the Toeplitz correlations are ρ^k: AR(1)'s likelihood, also with a
    random intercept; the fitted Toeplitz model can only do better."""
    formula = "size ~ time * treat + (1 | tree)"
    toep = blm.LMM(formula, sitka, residual="toep(visit | tree)")
    ar1 = blm.LMM(formula, sitka, residual="ar1(visit | tree)")
    phi = np.r_[0.7, np.zeros(toep.residual.start.size - 1)]
    x = np.r_[0.5, phi]
    assert fit_residual.objective(x, toep.spec, toep.layout, toep.residual, True) == pytest.approx(
        fit_residual.objective(x[:2], ar1.spec, ar1.layout, ar1.residual, True), rel=1e-10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit, ar1_fit = toep.fit(), ar1.fit()
    assert fit.loglik >= ar1_fit.loglik - 1e-6
    assert fit.npar == ar1_fit.npar + toep.residual.start.size - 1
    lags = fit.residual_params()["correlation by lag"]
    assert list(lags) == [1, 2, 3, 4] and all(-1 < v < 1 for v in lags.values())
    assert "Residual correlation by lag: 1:" in str(fit.summary())


def test_shorthand_and_combining():
    assert cov.parse("toep(visit | tree)") == cov.Toeplitz(time="visit", group="tree")
    assert cov.parse("toep(visit | tree) + het(treat)") == (cov.Toeplitz(time="visit", group="tree")
                                                             & cov.Heteroscedastic(by="treat"))


def test_posterior_sits_where_the_reml_fit_does(sitka):
    """A short NUTS run of the GLS: the posterior mean of each lag's correlation is within 3
    posterior sds of the REML estimate (uniform priors on the partial autocorrelations)."""
    model = blm.LMM("size ~ time * treat", sitka, residual="toep(visit | tree)")
    reml = model.fit().residual_params()["correlation by lag"]
    post = model.fit(method="NUTS", draws=200, tune=200, chains=2, random_seed=3, progressbar=False)
    table = post.residual_params()
    assert list(table.index) == [f"rho_lag[{lag}]" for lag in reml]
    assert np.all(np.abs(table["mean"] - list(reml.values())) < 3 * table["sd"])
