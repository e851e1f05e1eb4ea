"""The Bayesian path with residual covariance structures: the PyMC model's log-density is the
shared one on whitened data, the posterior sits where the REML fit does, and the predictive
and LOO quantities respect the within-group correlation."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.linalg import toeplitz
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

import bayeslmm as blm
from bayeslmm.fit import residual as fit_residual
from bayeslmm.linalg import logdensity as ld
from bayeslmm.linalg.crossprod import cross_products
from bayeslmm.model.residual.ar1 import BoundAR1
from bayeslmm.model.residual.combined import BoundCombined
from bayeslmm.model.residual.cs import BoundCS
from bayeslmm.model.residual.heteroscedastic import BoundHeteroscedastic
from bayeslmm.model.residual.toeplitz import BoundToeplitz
from bayeslmm.model.residual.unstructured import BoundUnstructured

pytestmark = pytest.mark.filterwarnings("ignore:.*BLAS.*", "ignore::bayeslmm.PosteriorWarning",
                                        "ignore::bayeslmm.SingularFitWarning")

CASES = [("size ~ time * treat + (1 | tree)", "ar1(visit | tree)"),
         ("size ~ time * treat", "ar1h(visit | tree)"),
         ("size ~ time * treat", "us(visit | tree)"),
         ("size ~ time * treat + (1 | tree)", "cs(tree) + het(treat)"),
         ("size ~ time * treat + (1 | tree)", "toep(visit | tree)")]


@pytest.fixture(scope="module")
def sitka():
    return blm.datasets.load("Sitka")


def _phi_of(bound, values: dict) -> np.ndarray:
    """The frequentist φ of the structure's parameters at a point of the PyMC model, inverted
    here structure by structure (independently of the structures' own maps)."""
    if isinstance(bound, BoundCombined):
        return np.r_[_phi_of(bound.structure, values), _phi_of(bound.variance, values)]
    if isinstance(bound, BoundUnstructured):
        ratios = values[f"sd_ratio_{bound.ratio_name}"]
        L = np.linalg.cholesky(ratios[:, None] * values["residual_corr"] * ratios[None, :])
        L[np.diag_indices_from(L)] = np.log(np.diag(L))
        return L[np.tril_indices_from(L)][1:]
    if isinstance(bound, BoundToeplitz):  # the partial autocorrelations, by Yule–Walker
        r = np.r_[1.0, values["residual_acf"]]
        return np.arctanh([np.linalg.solve(toeplitz(r[:m]), r[1:m + 1])[-1] for m in range(1, r.size)])
    if isinstance(bound, BoundHeteroscedastic):
        return np.log(values[f"sd_ratio_{bound.ratio_name}"][1:])
    rho = float(values["rho"])
    if isinstance(bound, BoundCS):
        low = bound.lowest_rho
        return np.array([np.log((rho - low) / (1 - rho))])
    assert isinstance(bound, BoundAR1)
    ratios = np.log(values[f"sd_ratio_{bound.ratio_name}"][1:]) if bound.heteroscedastic else []
    return np.r_[np.arctanh(rho), ratios]


@pytest.mark.parametrize("formula, structure", CASES)
def test_marginal_log_density_is_the_shared_one_on_whitened_data(sitka, formula, structure):
    """logp = −½[deviance_beta_integrated(whitened cross-products) + Σ log|R_i|] + log priors and
    Jacobians, the data whitened here by the frequentist path (sparse cross-products) at φ."""
    model = blm.LMM(formula, sitka, residual=structure)
    pm_model = model.pymc_model(marginalize=True)
    total, priors_only = pm_model.compile_logp(), pm_model.compile_logp(vars=pm_model.free_RVs)
    names = [v.name for v in pm_model.unobserved_value_vars]
    values_of = pm_model.compile_fn(pm_model.unobserved_value_vars, inputs=pm_model.value_vars,
                                    on_unused_input="ignore")
    prior = model._bayes_setup(None).priors.beta
    rng = np.random.default_rng(7)
    start = pm_model.initial_point()
    for _ in range(3):
        point = {k: v + rng.normal(0, 0.4, np.shape(v)) for k, v in start.items()}
        point["sigma_log__"] = np.log(0.5) + rng.normal(0, 0.2)
        values = dict(zip(names, values_of(point)))
        sigma = float(values["sigma"])
        white, logdet_R = fit_residual.whitened_spec(model.spec, model.residual, _phi_of(model.residual, values))
        stats = cross_products(white)
        Ts = [np.atleast_2d(values["sd_tree"]) / sigma] if model.spec.factors else []
        fact = ld.factorize_T(Ts, stats)
        shared = -0.5 * (ld.deviance_beta_integrated(fact.C, fact.logdet, model.spec.n, sigma**2, prior.precision,
                                                     prior.shift, prior.constant) + logdet_R)
        assert total(point) == pytest.approx(priors_only(point) + shared, abs=1e-7, rel=1e-11)


def test_hierarchical_log_density_is_the_gaussian_with_the_structure(sitka):
    """The hierarchical model's likelihood term equals log N(y | Xβ + Zb, σ²R) by dense algebra."""
    model = blm.LMM("size ~ time + (1 | tree)", sitka, residual="ar1(visit | tree)")
    pm_model = model.pymc_model(marginalize=False)
    total, priors_only = pm_model.compile_logp(), pm_model.compile_logp(vars=pm_model.free_RVs)
    values_of = pm_model.compile_fn(pm_model.unobserved_value_vars, inputs=pm_model.value_vars,
                                    on_unused_input="ignore")
    point = {k: v + 0.3 for k, v in pm_model.initial_point().items()}
    values = dict(zip([v.name for v in pm_model.unobserved_value_vars], values_of(point)))
    mu = model.spec.X @ values["beta"] + values["b_tree"][model.spec.factors[0].codes, 0]
    rho, sigma = float(values["rho"]), float(values["sigma"])
    expected = 0.0
    for _, rows in sitka.groupby("tree").groups.items():
        rows = np.asarray(rows)
        t = sitka.loc[rows, "visit"].to_numpy()
        V = sigma**2 * rho ** np.abs(t[:, None] - t[None, :])
        r = model.spec.y[rows] - mu[rows]
        expected += -0.5 * (r @ np.linalg.solve(V, r) + np.linalg.slogdet(2 * np.pi * V)[1])
    assert total(point) - priors_only(point) == pytest.approx(expected, rel=1e-10)


@pytest.fixture(scope="module")
def ar1_posterior(sitka):
    model = blm.LMM("size ~ time * treat", sitka, residual="ar1(visit | tree)")
    return model, model.fit("NUTS", draws=400, tune=400, chains=2, random_seed=3, progressbar=False), model.fit()


def test_posterior_sits_at_the_reml_fit(ar1_posterior):
    """With 79 trees the likelihood dominates the weak priors: posterior means of ρ, σ and β lie
    within 2 posterior sds of the REML estimates."""
    _, result, reml = ar1_posterior
    post = result.posterior
    for draws, estimate in ((post["rho"], reml.residual_params()["rho"]), (post["sigma"], reml.sigma)):
        assert abs(float(draws.mean()) - estimate) < 2 * float(draws.std())
    table = result.fixef()
    assert np.all(np.abs(table["mean"] - reml.fixef().to_numpy()) < 2 * table["sd"])


def test_log_likelihood_is_per_group_and_loo_works(ar1_posterior, sitka):
    """Each tree's log-likelihood at a draw is the dense log N(y_i | X_i β, σ² R(ρ)); LOO's elpd
    lies below the in-sample lppd = Σ_i log mean_s p(y_i | θ_s) by p_loo, which for six
    well-identified parameters lies between 1 and 12."""
    model, result, _ = ar1_posterior
    loglik = result.idata["log_likelihood"]["y"]
    assert loglik.dims[-1] == "tree" and loglik.sizes["tree"] == 79
    post = result.posterior
    rows = sitka.groupby(sitka["tree"].astype(str)).indices
    for chain, draw in [(0, 0), (1, 123), (1, 399)]:
        beta, sigma, rho = (post[name].values[chain, draw] for name in ("beta", "sigma", "rho"))
        for tree in ("1", "42", "79"):
            i = rows[tree]
            t = sitka["visit"].to_numpy()[i]
            V = sigma**2 * rho ** np.abs(np.subtract.outer(t, t))
            dense = multivariate_normal.logpdf(model.spec.y[i], model.spec.X[i] @ beta, V)
            assert float(loglik.sel(tree=tree).values[chain, draw]) == pytest.approx(dense, rel=1e-10)
    pointwise = loglik.values.reshape(-1, 79)
    lppd = np.sum(logsumexp(pointwise, axis=0) - np.log(len(pointwise)))
    loo = result.loo()
    assert float(loo.elpd) < lppd
    assert float(loo.p) == pytest.approx(lppd - float(loo.elpd), rel=1e-8)
    assert 1 < float(loo.p) < 12
    with pytest.raises(blm.LMMError, match="already one term per tree"):
        result.loo(by="group")


def test_predictive_draws_carry_the_residual_correlation(ar1_posterior, sitka):
    """Posterior predictive errors of consecutive visits correlate as ρ does (AR(1) with lag 1)."""
    model, result, _ = ar1_posterior
    draws = result.predict(kind="pps", summary=False, random_seed=1).values.reshape(-1, model.spec.n)
    means = result.predict(kind="mean", summary=False).values.reshape(-1, model.spec.n)
    errors = (draws - means).reshape(draws.shape[0], 79, 5)  # Sitka is sorted by tree, then visit
    lag_one = np.corrcoef(errors[:, :, 1:].ravel(), errors[:, :, :-1].ravel())[0, 1]
    assert lag_one == pytest.approx(float(result.posterior["rho"].mean()), abs=0.02)
    with pytest.raises(blm.LMMError, match="new rows"):
        result.predict(sitka.head(3), kind="pps")


def test_residual_posterior_table_and_summary(ar1_posterior):
    _, result, _ = ar1_posterior
    table = result.residual_params()
    assert list(table.index) == ["rho"] and {"mean", "sd", "r_hat", "ess_bulk"} <= set(table.columns)
    assert table.loc["rho", "mean"] == pytest.approx(float(result.posterior["rho"].mean()))
    assert "Residual structure:" in str(result.summary())


def test_residual_table_intervals_at_a_level(sitka):
    """Unequal variances: each sd ratio's l-/u-90% CI are the 5% and 95% quantiles of its draws."""
    model = blm.LMM("size ~ time * treat", sitka, residual="ar1h(visit | tree)")
    result = model.fit(method="NUTS", draws=60, tune=60, chains=2, random_seed=1, progressbar=False,
                       log_likelihood=False)
    table = result.residual_params(level=0.9)
    ratios = [name for name in table.index if name.startswith("sd_ratio_")]
    assert len(ratios) == 4 and "rho" in table.index  # five visits, the first is the reference
    name = ratios[0]
    variable, stratum = name[:-1].split("[")
    draws = result.posterior[variable].sel({result.posterior[variable].dims[-1]: stratum}).values
    np.testing.assert_allclose(table.loc[name, ["l-90% CI", "u-90% CI"]].to_numpy(float),
                               np.quantile(draws, [0.05, 0.95]), rtol=1e-10)


@pytest.mark.slow
def test_marginalised_and_hierarchical_samplers_agree_with_a_structure(sitka):
    """AR(1) errors and a variance per treatment: the two PyMC models give the same posterior
    (means within 4 Monte Carlo standard errors of their difference, 5 %/95 % quantiles within
    0.15 posterior sd)."""
    model = blm.LMM("size ~ time * treat", sitka, residual="ar1(visit | tree) + het(treat)")
    runs = [model.fit("NUTS", draws=1000, tune=1000, chains=4, random_seed=seed, marginalize=marginalize,
                      progressbar=False) for seed, marginalize in ((1, True), (2, False))]
    for name in ("rho", "sigma", "sd_ratio_treat", "beta"):
        a, b = (r.posterior[name].values.reshape(4000, -1) for r in runs)
        ess = np.minimum(*(np.atleast_1d(_ess(r.posterior[name])) for r in runs))
        mcse = np.sqrt(a.var(axis=0) / ess + b.var(axis=0) / ess)
        keep = a.std(axis=0) > 0  # the reference level's ratio is 1 by definition
        assert np.all(np.abs(a.mean(axis=0) - b.mean(axis=0))[keep] < 4 * mcse[keep]), name
        for q in (0.05, 0.95):
            gap = np.abs(np.quantile(a, q, axis=0) - np.quantile(b, q, axis=0))[keep]
            assert np.all(gap < 0.15 * a.std(axis=0)[keep]), (name, q)


def _ess(draws) -> np.ndarray:
    """Bulk ESS of each coordinate of a posterior variable."""
    import arviz as az

    return np.asarray(az.ess(draws.to_dataset(name="x"))["x"].values).reshape(-1)


def test_prior_predictive_with_a_structure(sitka):
    """Prior draws of y carry the prior's residual correlation: with ρ's prior concentrated near
    0.9, consecutive visits' deviations from the prior mean correlate strongly."""
    from bayeslmm.model.priors import ScaledBeta

    model = blm.LMM("size ~ time", sitka, residual="ar1(visit | tree)")
    idata = model.sample_prior_predictive(draws=400, random_seed=2,
                                          priors={"residual": {"rho": ScaledBeta(190, 10)}})  # ρ ≈ 0.9
    y = idata["prior_predictive"]["y"].values.reshape(400, 79, 5)
    mu = idata["prior"]["beta"].values.reshape(400, 2) @ model.spec.X.T
    e = y - mu.reshape(400, 79, 5)
    e /= idata["prior"]["sigma"].values.reshape(400, 1, 1)
    lag_one = np.mean(e[:, :, 1:] * e[:, :, :-1])
    assert lag_one == pytest.approx(0.9, abs=0.03)
