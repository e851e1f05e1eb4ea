"""The log-density against a dense brute-force computation, its gradient, and invariants."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.linalg import block_diag

import bayeslmm as blm
from bayeslmm.linalg import gradient as gr
from bayeslmm.linalg import logdensity as ld
from bayeslmm.linalg.crossprod import factor_matrix
from conftest import REPO

MODELS = {
    "one factor, 2x2": ("Reaction ~ Days + (Days | Subject)", "sleepstudy"),
    "one factor, 3x3": ("y ~ x1 + x2 + (1 + x1 + x2 | g)", "slopes2"),
    "crossed, three": ("y ~ x + (1 | f1) + (1 | f2) + (1 | f3)", "crossed3"),
    "nested, three levels": ("y ~ x + (1 | a/b/c)", "nested3"),
    "crossed with a slope": ("y ~ x + (1 + x | g) + (1 | h)", "mixed"),
}


def load(name: str) -> pd.DataFrame:
    if name == "sleepstudy":
        return blm.datasets.load(name)
    if name == "mixed":  # slope on g crossed with an intercept on h
        data = pd.read_csv(REPO / "tests/data/unbalanced.csv")
        return data.assign(h=np.random.default_rng(0).choice(list("abcde"), len(data)))
    return pd.read_csv(REPO / f"tests/data/{name}.csv")


def dense_terms(model: blm.LMM, theta: np.ndarray):
    """Z Λ as a dense matrix, block by block (the brute-force reference)."""
    Ts = model.layout.factors_T(theta)
    blocks = []
    for factor, T in zip(model.spec.factors, Ts):
        Lam = np.kron(np.eye(factor.n_levels), T)
        blocks.append(factor_matrix(factor).toarray() @ Lam)
    return np.hstack(blocks)


def dense_deviance(model: blm.LMM, theta, sigma2, beta, reml):
    spec = model.spec
    ZL = dense_terms(model, theta)
    V0 = ZL @ ZL.T + np.eye(spec.n)
    _, logdet_V0 = np.linalg.slogdet(V0)
    V0inv = np.linalg.inv(V0)
    if reml:
        M = spec.X.T @ V0inv @ spec.X
        beta_hat = np.linalg.solve(M, spec.X.T @ V0inv @ spec.y)
        r = spec.y - spec.X @ beta_hat
        p = spec.p
        return ((spec.n - p) * np.log(2 * np.pi * sigma2) + logdet_V0 + np.linalg.slogdet(M)[1]
                + r @ V0inv @ r / sigma2)
    r = spec.y - spec.X @ beta
    return spec.n * np.log(2 * np.pi * sigma2) + logdet_V0 + r @ V0inv @ r / sigma2


def random_theta(model, rng):
    theta = rng.uniform(0.2, 1.5, model.layout.size)
    off = ~model.layout.diagonal
    theta[off] = rng.uniform(-0.5, 0.5, off.sum())
    return theta * model.layout.scale


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("reml", [True, False])
def test_log_density_equals_dense_computation(name, reml):
    formula, data = MODELS[name]
    model = blm.LMM(formula, load(data))
    rng = np.random.default_rng(42)
    for _ in range(3):
        theta = random_theta(model, rng)
        sigma2 = rng.uniform(0.5, 2.0) * np.var(model.spec.y)
        beta = rng.normal(size=model.spec.p)
        fact = ld.factorize(theta, model.stats, model.layout)
        prof = ld.profile(fact, model.spec.p)
        ours = ld.deviance_at(fact, prof, model.spec.n, sigma2, beta, reml=reml)
        assert ours == pytest.approx(dense_deviance(model, theta, sigma2, beta, reml), rel=1e-10, abs=1e-8)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_conditional_modes_and_variances_equal_dense(name):
    formula, data = MODELS[name]
    model = blm.LMM(formula, load(data))
    theta = random_theta(model, np.random.default_rng(7))
    fact = ld.factorize(theta, model.stats, model.layout)
    prof = ld.profile(fact, model.spec.p)
    sigma2 = 1.7
    ZL = dense_terms(model, theta)
    Lam = block_diag(*[np.kron(np.eye(f.n_levels), T) for f, T in zip(model.spec.factors, fact.T)])
    A = ZL.T @ ZL + np.eye(ZL.shape[1])
    u = np.linalg.solve(A, ZL.T @ (model.spec.y - model.spec.X @ prof.beta))
    b_dense, var_dense = Lam @ u, sigma2 * Lam @ np.linalg.inv(A) @ Lam.T
    b_ours = np.concatenate([b.reshape(-1) for b in ld.conditional_modes(fact, prof.beta)])
    np.testing.assert_allclose(b_ours, b_dense, rtol=1e-8, atol=1e-10)
    covs = ld.conditional_covariances(fact, sigma2)
    start = 0
    for cov in covs:
        G, S, _ = cov.shape
        for g in range(G):
            block = var_dense[start + g * S: start + (g + 1) * S, start + g * S: start + (g + 1) * S]
            np.testing.assert_allclose(cov[g], block, rtol=1e-8, atol=1e-12)
        start += G * S


@pytest.mark.parametrize("name", ["one factor, 2x2", "one factor, 3x3"])
@pytest.mark.parametrize("reml", [True, False])
def test_exact_gradient_equals_finite_differences(name, reml):
    formula, data = MODELS[name]
    model = blm.LMM(formula, load(data))
    theta = random_theta(model, np.random.default_rng(3))
    value, grad = gr.objective_gradient(theta, model.stats, model.layout, reml)
    assert value == pytest.approx(ld.objective(theta, model.stats, model.layout, reml), rel=1e-12)
    numeric = np.zeros_like(theta)
    for j in range(theta.size):
        step = np.zeros_like(theta)
        step[j] = 1e-5 * model.layout.scale[j]
        up = ld.objective(theta + step, model.stats, model.layout, reml)
        down = ld.objective(theta - step, model.stats, model.layout, reml)
        numeric[j] = (up - down) / (2 * step[j])
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-6 * np.abs(grad).max())


def test_unprofiled_form_at_the_estimates_equals_the_profiled_deviance(sleepstudy):
    model = blm.LMM("Reaction ~ Days + (Days | Subject)", sleepstudy)
    for method in ("REML", "ML"):
        fit = model.fit(method)
        fact = ld.factorize(fit.theta, model.stats, model.layout)
        prof = ld.profile(fact, model.spec.p)
        at = ld.deviance_at(fact, prof, fit.nobs, fit.sigma**2, fit.fixef().to_numpy(), reml=method == "REML")
        assert at == pytest.approx(fit.deviance, rel=1e-12)


# --- invariants -------------------------------------------------------------------------


def test_permuting_rows_changes_nothing(sleepstudy):
    shuffled = sleepstudy.sample(frac=1.0, random_state=1)
    a = blm.LMM("Reaction ~ Days + (Days | Subject)", sleepstudy).fit()
    b = blm.LMM("Reaction ~ Days + (Days | Subject)", shuffled).fit()
    assert a.loglik == pytest.approx(b.loglik, abs=1e-8)
    np.testing.assert_allclose(a.fixef(), b.fixef(), rtol=1e-7)
    np.testing.assert_allclose(a.ranef()["condval"], b.ranef()["condval"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(a.fitted().sort_index(), b.fitted().sort_index(), rtol=1e-7)


def test_order_of_crossed_terms_changes_nothing():
    data = blm.datasets.load("Penicillin")
    a = blm.LMM("diameter ~ 1 + (1 | plate) + (1 | sample)", data).fit()
    b = blm.LMM("diameter ~ 1 + (1 | sample) + (1 | plate)", data).fit()
    assert a.loglik == pytest.approx(b.loglik, abs=1e-7)
    assert a.sigma == pytest.approx(b.sigma, rel=1e-5)


def test_rescaling_the_response_rescales_the_fit(sleepstudy):
    a = blm.LMM("Reaction ~ Days + (Days | Subject)", sleepstudy).fit("ML")
    scaled = sleepstudy.assign(Reaction=sleepstudy["Reaction"] / 1000.0)
    b = blm.LMM("Reaction ~ Days + (Days | Subject)", scaled).fit("ML")
    assert b.loglik == pytest.approx(a.loglik + a.nobs * np.log(1000.0), abs=1e-6)
    np.testing.assert_allclose(b.fixef() * 1000.0, a.fixef(), rtol=1e-6)
    np.testing.assert_allclose(b.theta, a.theta, rtol=1e-4, atol=1e-6)


def test_random_intercept_equals_two_term_and_double_bar_forms():
    data = pd.read_csv(REPO / "tests/data/twoterms.csv")
    a = blm.LMM("y ~ x + (x || g)", data).fit()
    b = blm.LMM("y ~ x + (1 | g) + (0 + x | g)", data).fit()
    assert a.loglik == pytest.approx(b.loglik, abs=1e-9)
    assert list(a.varcorr()["grp"]) == ["g", "g.1", "Residual"]
    # a correlated fit can only do better
    c = blm.LMM("y ~ x + (1 + x | g)", data).fit()
    assert c.loglik >= a.loglik - 1e-8 and c.npar == a.npar + 1


def test_ml_never_below_a_nested_model(sleepstudy):
    """Adding the random slope can only raise the maximised likelihood."""
    small = blm.LMM("Reaction ~ Days + (1 | Subject)", sleepstudy).fit("ML")
    large = blm.LMM("Reaction ~ Days + (Days | Subject)", sleepstudy).fit("ML")
    assert large.loglik >= small.loglik and large.npar == small.npar + 2
