"""The exact gradient for several grouping factors: against central differences of the deviance,
against a dense computation in V = ZΛΛ'Z' + I, and its products by either route (dense, sparse)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import bayeslmm as blm
from bayeslmm.linalg import compiled_blocked, crossprod
from bayeslmm.linalg import gradient as gr
from bayeslmm.linalg import logdensity as ld
from bayeslmm.linalg.crossprod import factor_matrix


def subjects_items(seed=0, n_subj=14, n_item=9) -> pd.DataFrame:
    """Crossed subjects × items with two ±0.5 contrasts, every subject meeting every item."""
    rng = np.random.default_rng(seed)
    data = pd.DataFrame([(f"s{s}", f"i{i}") for s in range(n_subj) for i in range(n_item)], columns=["subj", "item"])
    data["a"] = rng.choice([-0.5, 0.5], len(data))
    data["b"] = rng.choice([-0.5, 0.5], len(data))
    effect = rng.normal(size=n_subj)[data.subj.str[1:].astype(int)]
    data["y"] = rng.normal(size=len(data)) + data.a * effect
    data["w"] = rng.uniform(0.5, 2.0, len(data))
    return data


def schools(seed=1, n=500) -> pd.DataFrame:
    """Pupils in classes in schools, crossed with neighbourhoods."""
    rng = np.random.default_rng(seed)
    school = rng.integers(0, 10, n)
    data = pd.DataFrame({"school": [f"s{k}" for k in school],
                         "class": [f"s{k}c{c}" for k, c in zip(school, rng.integers(0, 4, n))],
                         "hood": [f"h{k}" for k in rng.integers(0, 7, n)], "ses": rng.normal(size=n)})
    data["y"] = data.ses + rng.normal(size=n)
    data["w"] = rng.uniform(0.5, 2.0, n)
    return data


def with_weights(data):
    return data.assign(w=np.random.default_rng(5).uniform(0.5, 2.0, len(data)))


DESIGNS = {
    "Penicillin (crossed)": ("diameter ~ 1 + (1 | plate) + (1 | sample)",
                             lambda: with_weights(blm.datasets.load("Penicillin"))),
    "Pastes (nested)": ("strength ~ 1 + (1 | batch/cask)", lambda: with_weights(blm.datasets.load("Pastes"))),
    "subjects x items, slopes on both": ("y ~ a + b + (1 + a + b | subj) + (1 + a | item)", subjects_items),
    "three factors, crossed and nested": ("y ~ ses + (1 + ses | school) + (1 | class) + (1 | hood)", schools),
}


def random_theta(layout, rng):
    theta = rng.uniform(0.2, 1.2, layout.size) * np.where(layout.diagonal, 1.0, rng.choice([-1.0, 1.0], layout.size))
    return theta


def central_differences(theta, stats, layout, reml):
    numeric = np.zeros_like(theta)
    for j in range(theta.size):
        step = np.zeros_like(theta)
        step[j] = 1e-5 * layout.scale[j]
        up = ld.objective(theta + step, stats, layout, reml)
        numeric[j] = (up - ld.objective(theta - step, stats, layout, reml)) / (2 * step[j])
    return numeric


@pytest.mark.parametrize("name", DESIGNS)
@pytest.mark.parametrize("reml", [True, False])
@pytest.mark.parametrize("weighted", [False, True])
def test_gradient_equals_central_differences(name, reml, weighted):
    formula, make = DESIGNS[name]
    model = blm.LMM(formula, make(), weights="w" if weighted else None)
    assert model.stats.n_factors == 2
    theta = random_theta(model.layout, np.random.default_rng(7))
    value, grad = gr.objective_gradient(theta, model.stats, model.layout, reml)
    assert value == pytest.approx(ld.objective(theta, model.stats, model.layout, reml), rel=1e-12)
    numeric = central_differences(theta, model.stats, model.layout, reml)
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-6 * np.abs(numeric).max())


def dense_gradient(model, theta, reml):
    """∂(−2ℓ)/∂θ in V0 = ZΛΛ'Z' + I: ∂log|V0| = tr(V0⁻¹∂V0), ∂r² = −e'V0⁻¹∂V0V0⁻¹e at β̂,
    ∂log|M| = −tr(M⁻¹X'V0⁻¹∂V0V0⁻¹X), with ∂V0 = Z(∂Λ Λ' + Λ ∂Λ')Z' (prior weights absent)."""
    spec, layout = model.spec, model.layout
    Z = np.hstack([factor_matrix(f).toarray() for f in spec.factors])
    Ts = layout.factors_T(theta)
    Lam = np.zeros((Z.shape[1], Z.shape[1]))
    blocks, start = [], 0
    for factor, T in zip(spec.factors, Ts):
        size = factor.n_levels * T.shape[0]
        Lam[start:start + size, start:start + size] = np.kron(np.eye(factor.n_levels), T)
        blocks.append((start, factor.n_levels))
        start += size
    V0inv = np.linalg.inv(Z @ Lam @ Lam.T @ Z.T + np.eye(spec.n))
    X, y, p = spec.X, spec.y, spec.p
    M = X.T @ V0inv @ X
    e = y - X @ np.linalg.solve(M, X.T @ V0inv @ y)
    r2, dof = e @ V0inv @ e, spec.n - p if reml else spec.n
    grad = np.zeros(layout.size)
    for f, (rows, cols, index) in enumerate(layout.entries):
        start, G = blocks[f]
        S = Ts[f].shape[0]
        for r, c, j in zip(rows, cols, index):
            dLam = np.zeros_like(Lam)
            dLam[start:start + G * S, start:start + G * S] = np.kron(np.eye(G), np.eye(S)[:, [r]] @ np.eye(S)[[c]])
            dV = Z @ (dLam @ Lam.T + Lam @ dLam.T) @ Z.T
            grad[j] = np.trace(V0inv @ dV) - dof / r2 * (e @ V0inv @ dV @ V0inv @ e)
            if reml:
                grad[j] -= np.trace(np.linalg.solve(M, X.T @ V0inv @ dV @ V0inv @ X))
    return grad


@pytest.mark.parametrize("reml", [True, False])
def test_gradient_equals_a_dense_computation(reml):
    model = blm.LMM("y ~ a + (1 + a | subj) + (1 + b | item)", subjects_items(seed=3, n_subj=6, n_item=5))
    theta = random_theta(model.layout, np.random.default_rng(11))
    grad = gr.objective_gradient(theta, model.stats, model.layout, reml)[1]
    np.testing.assert_allclose(grad, dense_gradient(model, theta, reml), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", ["subjects x items, slopes on both", "three factors, crossed and nested"])
def test_dense_and_sparse_products_of_the_second_block_agree(name, monkeypatch):
    formula, make = DESIGNS[name]
    stats = blm.LMM(formula, make()).stats
    G1, S1 = stats.ZtZ1.shape[:2]
    monkeypatch.setattr(crossprod, "DENSE_ADVANTAGE", np.inf)
    dense = crossprod.downdate_pairs(stats.Z2tZ1, G1, S1)
    monkeypatch.setattr(crossprod, "DENSE_ENTRIES", 0)
    sparse = crossprod.downdate_pairs(stats.Z2tZ1, G1, S1)
    assert dense.dense is not None and sparse.dense is None
    pairs = sparse
    rng = np.random.default_rng(2)
    D = rng.normal(size=(G1, S1, S1))
    D = D @ D.transpose(0, 2, 1)
    X = rng.normal(size=(pairs.size, pairs.size))
    X = X + X.T
    np.testing.assert_allclose(dense.scatter(D), sparse.scatter(D), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dense.gather(X), sparse.gather(X), rtol=1e-12, atol=1e-12)
    C = stats.Z2tZ1.toarray()
    expected = C.T @ X @ C  # the diagonal blocks of Z1'Z2 X Z2'Z1
    blocks = np.stack([expected[g * S1:(g + 1) * S1, g * S1:(g + 1) * S1] for g in range(G1)])
    np.testing.assert_allclose(sparse.gather(X), blocks, rtol=1e-12, atol=1e-12)


def test_several_factors_with_vector_terms_run_both_routes():
    # the second block stays dense for a fully crossed design and sparse for the three-factor one
    assert blm.LMM(DESIGNS["subjects x items, slopes on both"][0], subjects_items()).stats.pairs.dense is not None
    assert blm.LMM(DESIGNS["three factors, crossed and nested"][0], schools()).stats.pairs.dense is None


def scalar_of_factorization(Ts, stats, C_weights, logdet_weight):
    """A scalar function of the factorization (C, log|L|²): Σ C ∘ weights + weight · log|L|²."""
    fact = ld.factorize_T(Ts, stats)
    return (fact.C * C_weights).sum() + logdet_weight * fact.logdet


@pytest.mark.parametrize("name", DESIGNS)
def test_factorization_vjp_equals_central_differences(name):
    """The Bayesian graph's gradient of any function of (C, log|L|²), in every entry of each
    factor's T (lower and upper, as the graph's T holds), against central differences."""
    formula, make = DESIGNS[name]
    model = blm.LMM(formula, make(), weights="w")
    rng = np.random.default_rng(11)
    Ts = [np.tril(rng.uniform(0.2, 1.0, (S, S))) for S in (f.n_columns for f in model.spec.factors)]
    C_weights = rng.normal(size=(model.stats.p + 1,) * 2)  # not symmetric: the graph's C_bar need not be
    logdet_weight = rng.normal()
    fact = ld.factorize_T(Ts, model.stats)
    analytic = gr.factorization_vjp(fact, model.stats, C_weights, logdet_weight)
    for f, T in enumerate(Ts):
        for r, c in np.ndindex(T.shape):
            up, down = [T.copy() for T in Ts], [T.copy() for T in Ts]
            up[f][r, c] += 1e-6
            down[f][r, c] -= 1e-6
            numeric = (scalar_of_factorization(up, model.stats, C_weights, logdet_weight)
                       - scalar_of_factorization(down, model.stats, C_weights, logdet_weight)) / 2e-6
            assert analytic[f][r, c] == pytest.approx(numeric, rel=1e-5, abs=1e-5 * (1 + abs(numeric)))


@pytest.mark.parametrize("name", DESIGNS)
@pytest.mark.parametrize("weighted", [False, True])
def test_compiled_blocked_equals_the_numpy_factorization_and_vjp(name, weighted):
    """The compiled several-factor kernel: C and log|L|² as factorize_T's, and its VJP as
    factorization_vjp's, for a C̄ that need not be symmetric."""
    formula, make = DESIGNS[name]
    model = blm.LMM(formula, make(), weights="w" if weighted else None)
    stats, rng = model.stats, np.random.default_rng(13)
    Ts = [np.tril(rng.uniform(0.2, 1.0, (S, S))) for S in (f.n_columns for f in model.spec.factors)]
    arguments = compiled_blocked.arguments(Ts, stats)
    ok, logdet, C, *state = compiled_blocked.blocked_schur(*arguments, stats.XYtXY)
    fact = ld.factorize_T(Ts, stats)
    assert ok and compiled_blocked.covers(stats)
    assert logdet - stats.log_weights == pytest.approx(fact.logdet, rel=1e-12)
    np.testing.assert_allclose(C, fact.C, rtol=1e-12, atol=1e-12 * np.abs(fact.C).max())
    C_bar, logdet_bar = rng.normal(size=C.shape), rng.normal()
    dT1, dT2 = compiled_blocked.blocked_vjp(*arguments, *state, C_bar, logdet_bar)
    expected = gr.factorization_vjp(fact, stats, C_bar, logdet_bar)
    for got, want in zip([dT1] + compiled_blocked.later_factors(dT2, Ts), expected):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10 * np.abs(want).max())


@pytest.mark.parametrize("name", DESIGNS)
@pytest.mark.parametrize("reml", [True, False])
def test_compiled_blocked_objective_equals_the_numpy_path(name, reml, monkeypatch):
    """gr.objective / objective_gradient through the compiled kernel equal the NumPy path (the one
    a large second block takes), weighted."""
    formula, make = DESIGNS[name]
    model = blm.LMM(formula, make(), weights="w")
    theta = random_theta(model.layout, np.random.default_rng(17))
    value, grad = gr.objective_gradient(theta, model.stats, model.layout, reml)
    assert gr.objective(theta, model.stats, model.layout, reml) == pytest.approx(value, rel=1e-12)
    monkeypatch.setattr(compiled_blocked, "MAX_SECOND_BLOCK", -1)
    numpy_value, numpy_grad = gr.objective_gradient(theta, model.stats, model.layout, reml)
    assert value == pytest.approx(numpy_value, rel=1e-12)
    assert gr.objective(theta, model.stats, model.layout, reml) == pytest.approx(value, rel=1e-12)
    np.testing.assert_allclose(grad, numpy_grad, rtol=1e-10, atol=1e-10 * np.abs(numpy_grad).max())


ONE_FACTOR = {
    "correlated slopes": "Reaction ~ Days + (Days | Subject)",
    "uncorrelated terms": "Reaction ~ Days + (1 | Subject) + (0 + Days | Subject)",
    "intercept": "Reaction ~ 1 + (1 | Subject)",
    "no fixed effects": "Reaction ~ 0 + (Days | Subject)",
}


@pytest.mark.parametrize("name", ONE_FACTOR)
@pytest.mark.parametrize("reml", [True, False])
@pytest.mark.parametrize("weighted", [False, True])
def test_compiled_one_factor_objective_equals_numpy(name, reml, weighted):
    """One factor: the compiled REML/ML objective (the Bayesian kernel's Schur complement) equals
    the NumPy blocked Cholesky's, and its gradient central differences of the NumPy deviance."""
    data = with_weights(blm.datasets.load("sleepstudy"))
    model = blm.LMM(ONE_FACTOR[name], data, weights="w" if weighted else None)
    assert model.stats.n_factors == 1
    for seed in range(3):
        theta = random_theta(model.layout, np.random.default_rng(seed))
        value, grad = gr.objective_gradient(theta, model.stats, model.layout, reml)
        assert value == pytest.approx(ld.objective(theta, model.stats, model.layout, reml), rel=1e-12)
        assert gr.objective(theta, model.stats, model.layout, reml) == value
        numeric = central_differences(theta, model.stats, model.layout, reml)
        np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-6 * np.abs(numeric).max())


def test_profiled_objective_is_the_bayesian_deviance_at_sigma_hat():
    """REML is the β-integrated marginal deviance (flat prior) at σ̂² = r²/(n − p), up to the flat
    prior's p·log 2π, and its T-derivative there is the profiled one (the envelope theorem)."""
    from bayeslmm.linalg import compiled

    model = blm.LMM("Reaction ~ Days + (Days | Subject)", with_weights(blm.datasets.load("sleepstudy")), weights="w")
    stats, layout = model.stats, model.layout
    theta = random_theta(layout, np.random.default_rng(11))
    T = layout.factors_T(theta)[0]
    prof = ld.profile(ld.factorize(theta, stats, layout), stats.p)
    sigma2 = ld.sigma2_hat(prof, stats.n, reml=True)
    arrays = (stats.ZtZ1, stats.ZtXY1, stats.XYtXY)
    profiled, dT = compiled.profiled_deviance(T, *arrays, float(stats.n), float(stats.log_weights), True, True)
    flat = np.zeros((stats.p, stats.p)), np.zeros(stats.p), 0.0
    marginal, dT_marginal, dsigma2 = compiled.marginal_deviance(T, sigma2, *arrays, float(stats.n),
                                                                float(stats.log_weights), *flat, True)
    assert marginal == pytest.approx(profiled + stats.p * np.log(2 * np.pi), rel=1e-13)
    assert abs(dsigma2) < 1e-10 * stats.n / sigma2
    np.testing.assert_allclose(dT_marginal, dT, rtol=1e-10, atol=1e-10 * np.abs(dT).max())


@pytest.mark.parametrize("formula", ["Reaction ~ Days + (1 | Subject)", "Reaction ~ Days + (Days | Subject)",
                                     "Reaction ~ Days + (Days + I(Days**2) | Subject)"])
def test_unrolled_one_factor_objective_equals_the_general_loop(formula):
    """The unrolled one- and two-column loops the starts run give the objective and its gradient of
    the general loop the fit runs, to rounding (three columns fall back to the general loop)."""
    from bayeslmm.linalg import compiled

    model = blm.LMM(formula, with_weights(blm.datasets.load("sleepstudy")), weights="w")
    stats, layout = model.stats, model.layout
    theta = random_theta(layout, np.random.default_rng(5))
    assert gr.objective(theta, stats, layout, True, unrolled=True) == pytest.approx(
        gr.objective(theta, stats, layout, True), rel=1e-13)
    T = layout.factors_T(theta)[0]
    arrays = (stats.ZtZ1, stats.ZtXY1, stats.XYtXY, float(stats.n), float(stats.log_weights))
    for reml in (True, False):
        general = compiled.profiled_deviance(T, *arrays, reml, True)
        unrolled = compiled.profiled_deviance(T, *arrays, reml, True, True)
        assert unrolled[0] == pytest.approx(general[0], rel=1e-13)
        np.testing.assert_allclose(unrolled[1], general[1], rtol=1e-10, atol=1e-12 * np.abs(general[1]).max())
