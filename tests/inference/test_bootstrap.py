"""Parametric bootstrap (simulate, bootstrap, confint(method="bootstrap"), anova(method="bootstrap"))
and the simulated exact RLRT.

Reference values: tests/reference/bootstrap_reference.json, written by
tests/reference/make_bootstrap_reference.R (RLRsim 3.1-8 exactRLRT, lme4 1.1-31 bootMer,
pbkrtest 0.5.2 PBmodcomp; run here with R 4.2.2).  Simulated quantities use other random
numbers than R's, so they are compared within Monte-Carlo error, stated at each test.
"""
from __future__ import annotations

import dataclasses
import json
import warnings

import numpy as np
import pandas as pd
import pytest

import bayeslmm as blm
from bayeslmm.inference import bootstrap as bs
from bayeslmm.inference.rlrt import eigenvalues
from bayeslmm.model import residual as cov
from conftest import PUBLIC, TESTS

REF = json.loads((TESTS / "reference" / "bootstrap_reference.json").read_text())


@pytest.fixture(scope="module")
def slope_fit():
    return blm.LMM("Reaction ~ Days + (Days | Subject)", blm.datasets.load("sleepstudy")).fit()


@pytest.fixture(scope="module")
def sitka():
    return blm.datasets.load("Sitka")


# --- simulate ---------------------------------------------------------------------------------


def _group_moments_z(Y: np.ndarray, mean: np.ndarray, V: np.ndarray) -> tuple[float, float]:
    """Largest standardised deviations of the sample mean and covariance of one group's rows
    (columns of Y are draws) from ``mean`` and ``V``: (ȳ − μ)/√(V_ii/N) and
    (S_ij − V_ij)/√((V_ii V_jj + V_ij²)/N), the Monte-Carlo sd of a Gaussian sample covariance."""
    N = Y.shape[1]
    z_mean = np.abs(Y.mean(axis=1) - mean) / np.sqrt(np.diag(V) / N)
    S = np.cov(Y)
    d = np.diag(V)
    z_cov = np.abs(S - V) / np.sqrt((np.outer(d, d) + V**2) / N)
    return float(z_mean.max()), float(z_cov.max())


def _check_group_moments(fit, Y, covariance_of_group):
    """Per group: mean Xβ̂, covariance Z_g D Z_g' + σ²R_g; a max over all groups' entries of
    |z| < 5 (about 1,000 entries: a false alarm has probability < 1e-3)."""
    mean = fit.spec.X @ fit.fixef().to_numpy()
    codes = fit.spec.factors[0].codes
    worst = []
    for g in range(fit.spec.factors[0].n_levels):
        rows = np.flatnonzero(codes == g)
        worst.append(_group_moments_z(Y[rows], mean[rows], covariance_of_group(rows)))
    worst = np.max(worst, axis=0)
    assert worst[0] < 5 and worst[1] < 5, worst
    return worst


def test_simulated_responses_have_the_fitted_mean_and_covariance(slope_fit):
    fit = slope_fit
    Y = fit.simulate(4000, seed=11).to_numpy()
    D = fit.term_covariances()[0]
    raw = fit.spec.factors[0].raw
    _check_group_moments(fit, Y, lambda rows: raw[rows] @ D @ raw[rows].T + fit.sigma**2 * np.eye(rows.size))
    # The check has power: a random-effect covariance 10% too large fails it.
    with pytest.raises(AssertionError):
        _check_group_moments(fit, Y, lambda rows: 1.1 * raw[rows] @ D @ raw[rows].T + fit.sigma**2 * np.eye(rows.size))


def test_simulate_with_ar1_errors_and_unequal_groups(sitka):
    data = sitka.drop(index=[0, 7, 8, 20, 33, 34, 35]).reset_index(drop=True)  # groups of 2 to 5 visits
    fit = blm.LMM("size ~ time + (1 | tree)", data, residual=cov.AR1(time="visit", group="tree")).fit()
    rho = fit.residual_params()["rho"]
    Y = fit.simulate(4000, seed=3).to_numpy()
    visit, tau2 = data["visit"].to_numpy(), fit.term_covariances()[0][0, 0]

    def covariance(rows):
        lags = np.abs(visit[rows][:, None] - visit[rows][None, :])
        return tau2 + fit.sigma**2 * rho**lags

    _check_group_moments(fit, Y, covariance)


def test_simulate_with_compound_symmetry(sitka):
    fit = blm.LMM("size ~ time + (1 | tree)", sitka.iloc[:200],
                  residual=cov.CompoundSymmetry(group="tree")).fit()
    rho = fit.residual_params()["rho"]
    tau2 = fit.term_covariances()[0][0, 0]
    Y = fit.simulate(4000, seed=4).to_numpy()
    _check_group_moments(fit, Y, lambda rows: tau2 + fit.sigma**2 * ((1 - rho) * np.eye(rows.size) + rho))


def test_simulate_frame_and_seed(slope_fit):
    first, again = slope_fit.simulate(3, seed=5), slope_fit.simulate(3, seed=5)
    pd.testing.assert_frame_equal(first, again)
    assert list(first.columns) == ["sim_1", "sim_2", "sim_3"]
    assert first.index.equals(slope_fit.spec.row_labels)
    assert not np.allclose(first.to_numpy(), slope_fit.simulate(3, seed=6).to_numpy())


# --- bootstrap ----------------------------------------------------------------------------------


@pytest.mark.parametrize("formula, dataset, response", [
    ("Reaction ~ Days + (Days | Subject)", "sleepstudy", "Reaction"),
    ("diameter ~ 1 + (1 | plate) + (1 | sample)", "Penicillin", "diameter"),  # two factors: Z2'y too
])
def test_fast_refit_equals_a_full_fit_of_the_simulated_data(formula, dataset, response):
    """Refits reuse the y-free cross-products; they must equal fitting the new data from scratch."""
    data = blm.datasets.load(dataset)
    fit = blm.LMM(formula, data).fit()
    Y = fit.simulate(2, seed=8).to_numpy()
    for k, refit in enumerate(bs.refits(fit, Y)):
        fresh = blm.LMM(formula, data.assign(**{response: Y[:, k]})).fit()
        np.testing.assert_allclose(refit.fit.fixef(), fresh.fixef(), rtol=1e-6)
        np.testing.assert_allclose(refit.fit.loglik, fresh.loglik, rtol=1e-9)
        np.testing.assert_allclose(refit.fit.sigma, fresh.sigma, rtol=1e-5)
        # anything computed from a refit sees the simulated data, not the original
        np.testing.assert_allclose(refit.fit.fitted(), fresh.fitted(), rtol=1e-5)
        assert refit.fit.state.stats is not fit.state.stats


def test_bootstrap_default_columns_and_reproducibility(slope_fit):
    draws = slope_fit.bootstrap(4, seed=2)
    assert list(draws.columns) == list(slope_fit.confint("wald").index)
    assert draws.shape == (4, 6) and draws.attrs["not_converged"] == [] and draws.attrs["failed"] == []
    pd.testing.assert_frame_equal(draws, slope_fit.bootstrap(4, seed=2))
    # the default statistic on the original fit is its sds, correlation, σ and fixed effects
    t0 = bs.default_statistic(slope_fit)
    vc = slope_fit.varcorr()
    np.testing.assert_allclose(t0, np.r_[vc["sdcor"].to_numpy()[[0, 2, 1, 3]], slope_fit.fixef()])


def test_bootstrap_percentile_interval_of_fixed_effects_near_profile(slope_fit):
    """200 refits.  The 2.5% and 97.5% percentiles of B draws have Monte-Carlo sd about
    √(0.025·0.975/B)/φ(1.96)·se = 2.67·se/√B = 0.19·se for B = 200 (a normal bootstrap
    distribution with sd se); profile and bootstrap intervals differ by ~0.05·se here (ML
    profile against REML bootstrap).  Tolerance 0.8·se ≈ 4 Monte-Carlo sds."""
    boot = slope_fit.confint("bootstrap", n=200, seed=1)
    profile = pd.DataFrame(REF_PROFILE_CI())
    for name in ("(Intercept)", "Days"):
        se = slope_fit.se()[name]
        assert abs(boot.loc[name, "lower"] - profile.loc[name, "lower"]) < 0.8 * se
        assert abs(boot.loc[name, "upper"] - profile.loc[name, "upper"]) < 0.8 * se
    assert list(boot.columns) == ["lower", "upper"]
    assert list(boot.index) == list(slope_fit.confint("wald").index)


def REF_PROFILE_CI() -> dict:
    """lme4's confint(profile) of the sleepstudy slope model (shared reference)."""


    ref = PUBLIC["sleepstudy_profile_ci"]
    return {"lower": dict(zip(ref["params"], ref["lower"])), "upper": dict(zip(ref["params"], ref["upper"]))}


def test_statistic_that_fails_on_some_refits_is_recorded(slope_fit):
    calls = {"n": 0}

    def flaky(fit):
        calls["n"] += 1
        if calls["n"] in (3, 5):  # the first two calls check it on the original fit
            raise RuntimeError("boom")
        return pd.Series({"slope": fit.fixef()["Days"]})

    with pytest.warns(UserWarning, match="statistic failed on 2 of 4"):
        draws = slope_fit.bootstrap(4, seed=1, statistic=flaky)
    assert list(draws.columns) == ["slope"]
    assert draws.attrs["failed"] == [0, 2]
    assert draws["slope"].isna().tolist() == [True, False, True, False]


def test_refits_that_do_not_converge_are_counted(slope_fit, monkeypatch):
    from bayeslmm.fit import optimize

    real = optimize.fit_theta
    count = {"n": 0}

    def sometimes_fails(*args, **kwargs):
        out = real(*args, **kwargs)
        count["n"] += 1
        return dataclasses.replace(out, converged=count["n"] != 2)

    monkeypatch.setattr(optimize, "fit_theta", sometimes_fails)
    with pytest.warns(UserWarning, match="1 of 3 refits did not converge"):
        draws = slope_fit.bootstrap(3, seed=1)
    assert draws.attrs["not_converged"] == [1] and draws.notna().all().all()


def test_bootstrap_bad_input(slope_fit):
    for n in (0, -3, 2.5, True, "10", None):
        with pytest.raises(blm.LMMError, match="positive integer"):
            slope_fit.bootstrap(n)
        with pytest.raises(blm.LMMError, match="positive integer"):
            slope_fit.simulate(n)
    for level in (0, 1, 1.5, -0.2):
        with pytest.raises(blm.LMMError, match="level"):
            slope_fit.confint("bootstrap", level=level, n=2)
    with pytest.raises(blm.LMMError, match="statistic raised on the fitted model"):
        slope_fit.bootstrap(2, statistic=lambda fit: fit.no_such_thing)
    with pytest.raises(blm.LMMError, match="must be a function"):
        slope_fit.bootstrap(2, statistic="fixef")
    with pytest.raises(blm.LMMError, match="must return numbers"):
        slope_fit.bootstrap(2, statistic=lambda fit: "text")
    with pytest.raises(blm.LMMError, match="'profile', 'wald' or 'bootstrap'"):
        slope_fit.confint("boot")


# --- anova(method="bootstrap") -------------------------------------------------------------------


def test_bootstrap_lrt_agrees_with_chi2_and_pbmodcomp(sitka):
    """A fixed-effect test (χ² p = 0.153).  With B = 200 our p has Monte-Carlo sd
    √(p(1−p)/B) ≈ 0.025 and PBmodcomp's (B = 1000) 0.011; tolerance 4 combined sds = 0.11.
    For a fixed effect the LRT is close to χ²(1), so the χ² p is within the same tolerance."""
    ref = REF["pbmodcomp"]
    small = blm.LMM("size ~ time + (1 | tree)", sitka).fit("ML")
    large = blm.LMM("size ~ time + treat + (1 | tree)", sitka).fit("ML")
    table = blm.anova(small, large, method="bootstrap", n=200, seed=1)
    np.testing.assert_allclose(table["Chisq"].iloc[1], ref["lrt"], rtol=1e-5)
    p = table["Pr(>Chisq) bootstrap"].iloc[1]
    tolerance = 4 * np.hypot(np.sqrt(p * (1 - p) / 200), np.sqrt(p * (1 - p) / 1000))
    assert abs(p - ref["p_bootstrap"]) < tolerance
    assert abs(p - ref["p_chisq"]) < tolerance
    assert np.isnan(table["Pr(>Chisq) bootstrap"].iloc[0]) and "parametric bootstrap" in table.attrs["note"]
    # the default table is unchanged
    assert "Pr(>Chisq) bootstrap" not in blm.anova(small, large).columns
    with pytest.raises(blm.LMMError, match="'lrt' or 'bootstrap'"):
        blm.anova(small, large, method="boot")
    with pytest.raises(blm.LMMError, match="positive integer"):
        blm.anova(small, large, method="bootstrap", n=0)


# --- exact RLRT ------------------------------------------------------------------------------------


def _mc_tolerance(p: float, n_ours: int, n_ref: int) -> float:
    """4 sds of the difference of two independent Monte-Carlo proportions."""
    return 4 * np.sqrt(p * (1 - p) * (1 / n_ours + 1 / n_ref)) + 1e-12


def _check_null_distribution(test, ref):
    """Our sample's ECDF at RLRsim's quantiles (and its mass at 0) within Monte-Carlo error."""
    sample = test.sample
    assert abs(np.mean(sample == 0) - ref["mass_at_zero"]) < _mc_tolerance(ref["mass_at_zero"], sample.size, ref["nsim"])
    for prob, q in zip(ref["quantile_probs"], ref["quantiles"]):
        if q > 0:
            assert abs(np.mean(sample <= q) - prob) < _mc_tolerance(prob, sample.size, ref["nsim"]), (prob, q)


@pytest.mark.parametrize("key, dataset", [("sleepstudy_intercept", "sleepstudy"), ("dyestuff", "Dyestuff")])
def test_exact_rlrt_matches_rlrsim(key, dataset):
    ref = REF["rlrt"][key]
    model = blm.LMM(ref["formula"], blm.datasets.load(dataset))
    test = blm.exact_rlrt(model, n_sim=10000, seed=1)
    np.testing.assert_allclose(test.statistic, ref["statistic"], rtol=1e-5)
    np.testing.assert_allclose(eigenvalues(model.fit()), ref["mu"], atol=1e-10)
    _check_null_distribution(test, ref)
    p = ref["p_value"]
    assert abs(test.p_value - p) < _mc_tolerance(max(p, 1e-3), 10000, 10000)
    assert test.n_sim == 10000 and "RLRT =" in str(test)
    again = blm.exact_rlrt(model, n_sim=10000, seed=1)
    assert again.p_value == test.p_value and np.array_equal(again.sample, test.sample)


def test_rlrt_statistic_is_twice_the_reml_loglik_over_lm():
    """lm's REML log-likelihood computed here independently (R's logLik.lm(REML = TRUE))."""
    data = blm.datasets.load("Dyestuff")
    fit = blm.LMM("Yield ~ 1 + (1 | Batch)", data).fit()
    X, y = np.ones((len(data), 1)), data["Yield"].to_numpy(float)
    n, p = X.shape
    rss = np.sum((y - X @ np.linalg.lstsq(X, y, rcond=None)[0]) ** 2)
    N = n - p
    lm_reml = 0.5 * (-N * (np.log(2 * np.pi) + 1 - np.log(N) + np.log(rss))) - 0.5 * np.linalg.slogdet(X.T @ X)[1]
    test = blm.exact_rlrt(fit, n_sim=10, seed=1)
    np.testing.assert_allclose(test.statistic, 2 * (fit.loglik - lm_reml), rtol=1e-10)


def test_exact_rlrt_with_other_random_effects(sleepstudy):
    ref = REF["rlrt"]["sleepstudy_slope_given_intercept"]
    mA = blm.LMM(ref["mA"], sleepstudy).fit()
    m0 = blm.LMM(ref["m0"], sleepstudy).fit()
    m = blm.LMM(ref["formula"], sleepstudy).fit()
    test = blm.exact_rlrt(m, mA, m0, n_sim=10000, seed=2)
    np.testing.assert_allclose(test.statistic, ref["statistic"], rtol=1e-5)
    np.testing.assert_allclose(eigenvalues(m), ref["mu"], atol=1e-10)
    _check_null_distribution(test, ref)
    assert test.p_value == ref["p_value"] == 0


def test_exact_rlrt_bad_input(sleepstudy):
    slope = blm.LMM("Reaction ~ Days + (Days | Subject)", sleepstudy)
    with pytest.raises(blm.LMMError, match="single variance"):
        blm.exact_rlrt(slope)
    m = blm.LMM("Reaction ~ Days + (1 | Subject)", sleepstudy).fit()
    with pytest.raises(blm.LMMError, match="give both mA"):
        blm.exact_rlrt(m, mA=slope.fit())
    with pytest.raises(blm.LMMError, match="differ by 2 parameters"):
        blm.exact_rlrt(m, slope.fit(), m)
    with pytest.raises(blm.LMMError, match="positive integer"):
        blm.exact_rlrt(m, n_sim=0)
    with pytest.raises(blm.LMMError, match="must be an LMM"):
        blm.exact_rlrt("Reaction ~ Days + (1 | Subject)")


@pytest.mark.slow
def test_rlrt_null_distribution_against_refitting():
    """Monte-Carlo check of the spectral null distribution: simulate y under H0 (lm), refit the
    REML model, compute the RLRT; compare its ECDF with the exact-simulated one at their
    quantiles (2,000 refits: tolerance 4 Monte-Carlo sds)."""
    from bayeslmm.fit.optimize import fit_theta
    from bayeslmm.linalg import logdensity as ld
    from bayeslmm.linalg.crossprod import ResponseProducts

    data = blm.datasets.load("Dyestuff")
    model = blm.LMM("Yield ~ 1 + (1 | Batch)", data)
    fit = model.fit()
    rng = np.random.default_rng(5)
    B = 2000
    Y = 1500 + 50 * rng.standard_normal((model.spec.n, B))
    products = ResponseProducts(model.spec)
    refitted = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for s in products.with_responses(model.stats, Y):
            zero = ld.objective(np.zeros(1), s, model.layout, True)
            refitted.append(max(0.0, zero - fit_theta(s, model.layout, True).deviance))
    refitted = np.array(refitted)
    exact = blm.exact_rlrt(fit, n_sim=20000, seed=6).sample
    for prob in (0.6, 0.75, 0.9, 0.95, 0.99):
        q = np.quantile(exact, prob)
        assert abs(np.mean(refitted <= q) - prob) < _mc_tolerance(prob, B, exact.size), prob


@pytest.mark.slow
def test_bootstrap_intervals_match_bootmer(slope_fit):
    """1,000 refits against bootMer's 1,000: percentile endpoints differ by Monte-Carlo error of
    about 2.67·sd/√1000 each (sd the bootstrap sd of that column), so ≈ 0.12·sd for the
    difference; tolerance 0.5·sd (4 sds).  The bootstrap sds agree to 10%."""
    ref = REF["bootmer"]
    draws = slope_fit.bootstrap(1000, seed=1)
    assert list(draws.columns) == ref["names"]
    lower, upper = draws.quantile(0.025).to_numpy(), draws.quantile(0.975).to_numpy()
    sd = np.array(ref["sd"])
    assert np.all(np.abs(lower - ref["lower"]) < 0.5 * sd), (lower, ref["lower"])
    assert np.all(np.abs(upper - ref["upper"]) < 0.5 * sd), (upper, ref["upper"])
    np.testing.assert_allclose(draws.std().to_numpy(), sd, rtol=0.1)
    np.testing.assert_allclose(bs.default_statistic(slope_fit), ref["estimate"], rtol=1e-4)


def test_refits_do_not_stop_on_a_false_boundary():
    """The deviance's derivative in a diagonal θ is 0 at θ = 0, so a gradient method that steps
    onto the bound used to stop there with the optimum inside (a third of these null refits).
    Invariant: the fitted deviance is no worse than the best of a fine grid in θ."""
    from bayeslmm.fit.optimize import fit_theta
    from bayeslmm.linalg import logdensity as ld
    from bayeslmm.linalg.crossprod import ResponseProducts

    model = blm.LMM("Yield ~ 1 + (1 | Batch)", blm.datasets.load("Dyestuff"))
    Y = 1500 + 50 * np.random.default_rng(5).standard_normal((model.spec.n, 100))
    grid = np.linspace(0, 1.5, 301)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for s in ResponseProducts(model.spec).with_responses(model.stats, Y):
            best = min(ld.objective(np.array([t]), s, model.layout, True) for t in grid)
            assert fit_theta(s, model.layout, True).deviance <= best + 1e-8
