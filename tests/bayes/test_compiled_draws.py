"""The compiled post-processing (bayeslmm.bayes.compiled_draws) equals the NumPy computations it
replaces: the exact conditional draws of β and b, and the pointwise log-likelihood."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

import bayeslmm as blm
from bayeslmm.bayes import draws, predictive

pytestmark = pytest.mark.filterwarnings("ignore:.*BLAS.*", "ignore::bayeslmm.PosteriorWarning")


@pytest.fixture(scope="module")
def sleepstudy():
    data = blm.datasets.load("sleepstudy")
    return data.assign(late=(data["Days"] > 4).astype(float))


def _posterior_like_draws(setup, D: int, rng):
    """σ and each term's covariance Cholesky factor for D draws spread around the REML start."""
    from bayeslmm.bayes.sampling import initial_values

    points = initial_values(setup, D, rng)
    sigma = np.array([float(p["sigma"]) for p in points])
    chols = []
    for term, label in zip(setup.spec.terms, setup.labels):
        sd = np.stack([np.atleast_1d(p[f"sd_{label}"]) for p in points])
        L = np.stack([p[f"corr_chol_{label}"] for p in points]) if term.size > 1 else np.ones((D, 1, 1))
        chols.append(sd[:, :, None] * L)
    return sigma, chols


@pytest.mark.parametrize("formula, weighted", [
    ("Reaction ~ Days + (1 | Subject)", False),                       # one column per level
    ("Reaction ~ Days + (Days | Subject)", True),                     # two, with prior weights
    ("Reaction ~ Days + (1 | Subject) + (0 + Days | Subject)", False),  # two uncorrelated terms
    ("Reaction ~ Days + (1 + Days + late | Subject)", False),         # three: the general loop
])
def test_compiled_conditional_draws_equal_the_numpy_draws(sleepstudy, formula, weighted):
    """Same generator state, same standard normals: β and b equal _draws_together's to rounding,
    over chunks of 7 draws, 3 chunks per compiled call (the last call short)."""
    weights = np.random.default_rng(3).uniform(0.5, 2.0, len(sleepstudy)) if weighted else None
    setup = blm.LMM(formula, sleepstudy, weights=weights)._bayes_setup(None)
    sigma, chols = _posterior_like_draws(setup, 50, np.random.default_rng(1))
    step = 7
    beta, b = draws._draws_compiled(setup, sigma, chols, np.random.default_rng(2), step, block=3)
    rng = np.random.default_rng(2)
    parts = [draws._draws_together(setup, sigma[i:i + step], [c[i:i + step] for c in chols], rng)
             for i in range(0, sigma.size, step)]
    np.testing.assert_allclose(beta, np.concatenate([p[0] for p in parts]), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(b[0], np.concatenate([p[1][0] for p in parts]), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("formula", ["Reaction ~ Days + (1 | Subject)", "Reaction ~ Days + (Days | Subject)"])
def test_pointwise_log_likelihood_equals_the_dense_computation(sleepstudy, formula):
    """log N(y_i | x_iβ + z_i'b, σ²/w_i) at every draw, with prior weights; and the linear
    predictor gives unseen levels nothing."""
    weights = np.random.default_rng(4).uniform(0.5, 2.0, len(sleepstudy))
    model = blm.LMM(formula, sleepstudy, weights=weights)
    post = model.fit(method="NUTS", draws=30, tune=50, chains=2, random_seed=2, progressbar=False)
    spec, posterior = model.spec, post.posterior
    factor = spec.factors[0]
    Z = np.zeros((spec.n, factor.n_levels * factor.n_columns))  # dense Z, level-major columns
    for s in range(factor.n_columns):
        Z[np.arange(spec.n), factor.codes * factor.n_columns + s] = factor.raw[:, s]
    loglik = post.idata["log_likelihood"]["y"].values
    for chain in range(2):
        for draw in range(30):
            beta, b, sigma = (posterior[name].values[chain, draw] for name in ("beta", "b_Subject", "sigma"))
            mu = spec.X @ beta + Z @ b.reshape(-1)
            np.testing.assert_allclose(loglik[chain, draw], norm.logpdf(spec.y, mu, sigma / np.sqrt(weights)),
                                       rtol=1e-12, atol=1e-12)
    codes = factor.codes.copy()
    codes[:5] = factor.n_levels  # an unseen level
    mu = predictive.linear_predictor(post.setup, posterior, spec.X, [(codes, factor.raw)])
    beta = posterior["beta"].values.reshape(-1, spec.p)
    np.testing.assert_allclose(mu[:, :5], beta @ spec.X[:5].T, rtol=1e-13)


def test_pointwise_log_likelihood_with_two_factors_equals_the_dense_computation():
    """Crossed factors: each row adds both factors' effects (their blocks side by side)."""
    data = blm.datasets.load("Penicillin")
    model = blm.LMM("diameter ~ 1 + (1 | plate) + (1 | sample)", data)
    post = model.fit(method="NUTS", draws=20, tune=50, chains=2, random_seed=3, progressbar=False)
    spec, posterior = model.spec, post.posterior
    loglik = post.idata["log_likelihood"]["y"].values
    for chain, draw in [(0, 0), (1, 19)]:
        mu = spec.X @ posterior["beta"].values[chain, draw]
        for factor in spec.factors:
            mu = mu + posterior[f"b_{factor.name}"].values[chain, draw][factor.codes, 0] * factor.raw[:, 0]
        np.testing.assert_allclose(loglik[chain, draw], norm.logpdf(spec.y, mu, posterior["sigma"].values[chain, draw]),
                                   rtol=1e-12, atol=1e-12)
