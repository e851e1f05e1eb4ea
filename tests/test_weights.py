"""Prior weights (lme4's ``weights=``, Var(ε_i) = σ²/w_i): against lme4, against a dense
computation of the marginal density N(Xβ, σ²(ZΛΛ'Z' + W⁻¹)), invariants, every consumer
(profile, bootstrap, simulation, NUTS) and the errors for what is not defined with weights."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy.linalg import block_diag

import bayeslmm as blm
from bayeslmm import bayes
from bayeslmm.errors import LMMError
from bayeslmm.inference.bootstrap import refits
from bayeslmm.linalg import logdensity as ld
from bayeslmm.linalg.crossprod import factor_matrix
from bayeslmm.model.priors import Flat
from conftest import TESTS, pymc_values

pytestmark = pytest.mark.filterwarnings("ignore:.*BLAS.*")

REFERENCE = json.loads((TESTS / "reference" / "weights_reference.json").read_text())
SLOPES = "Reaction ~ Days + (Days | Subject)"
CROSSED = "diameter ~ 1 + (1 | plate) + (1 | sample)"


# --- data with the reference script's weights -----------------------------------------------


def sleep_weighted() -> pd.DataFrame:
    """sleepstudy with w = 1 + (Days mod 3) / 2, as make_weights_reference.R."""
    data = blm.datasets.load("sleepstudy")
    data["w"] = 1 + (data["Days"] % 3) / 2
    return data


def penicillin_weighted() -> pd.DataFrame:
    """Penicillin with w = 1 + (i mod 4) / 4 over the rows i = 0, 1, …, as make_weights_reference.R."""
    data = blm.datasets.load("Penicillin")
    data["w"] = 1 + (np.arange(len(data)) % 4) / 4
    return data


DATA = {"sleep": sleep_weighted, "penicillin": penicillin_weighted}


@pytest.fixture(scope="module")
def sleep():
    return sleep_weighted()


@pytest.fixture(scope="module")
def slopes_reml(sleep):
    return blm.LMM(SLOPES, sleep, weights="w").fit()


# --- lme4 -----------------------------------------------------------------------------------


CASES = ["sleep_slopes_reml", "sleep_slopes_ml", "sleep_intercept_ml", "penicillin_reml", "penicillin_ml"]


@pytest.mark.parametrize("case", CASES)
def test_matches_lme4(case):
    ref = REFERENCE[case]
    data = DATA[case.split("_")[0]]()
    fit = blm.LMM(ref["formula"], data, weights="w").fit("REML" if ref["REML"] else "ML")
    assert fit.loglik == pytest.approx(ref["logLik"], abs=1e-5)
    assert fit.deviance == pytest.approx(ref["criterion"], abs=1e-5)
    assert fit.aic == pytest.approx(ref["AIC"], abs=1e-5)
    assert fit.bic == pytest.approx(ref["BIC"], abs=1e-5)
    np.testing.assert_allclose(fit.fixef()[list(ref["fixef"])], list(ref["fixef"].values()), rtol=1e-5)
    np.testing.assert_allclose(fit.se()[list(ref["se"])], list(ref["se"].values()), rtol=1e-5)
    assert fit.sigma == pytest.approx(ref["sigma"], rel=1e-5)
    np.testing.assert_allclose(fit.varcorr()["sdcor"], ref["varcorr"]["sdcor"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(fit.coef_table()["df"], list(ref["df"].values()), rtol=1e-4)
    ranef = fit.ranef()
    assert list(ranef["grp"]) == ref["ranef"]["grp"]
    np.testing.assert_allclose(ranef["condval"], ref["ranef"]["condval"], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(ranef["condsd"], ref["ranef"]["condsd"], rtol=1e-4)
    np.testing.assert_allclose(fit.fitted(), ref["fitted"], rtol=1e-6, atol=1e-4)
    # lme4's residuals() are the raw y − fitted (type "response"), not scaled by √w
    np.testing.assert_allclose(fit.residuals(), ref["residuals"], rtol=1e-5, atol=1e-4)


def test_summary_scaled_residuals_are_lme4s_pearson_residuals(slopes_reml):
    """lme4's summary prints quantiles of residuals(type = "pearson") / σ: (y − fitted)√w / σ."""
    ref = REFERENCE["sleep_slopes_reml"]
    expected = np.quantile(np.array(ref["residuals_pearson"]) / ref["sigma"], [0, 0.25, 0.5, 0.75, 1])
    np.testing.assert_allclose(slopes_reml.summary().scaled_residuals, expected, rtol=1e-5, atol=1e-6)


def test_anova_chisq_matches_lme4_loglik_difference(sleep):
    small = blm.LMM("Reaction ~ Days + (1 | Subject)", sleep, weights="w").fit("ML")
    large = blm.LMM(SLOPES, sleep, weights="w").fit("ML")
    table = blm.anova(small, large)
    expected = 2 * (REFERENCE["sleep_slopes_ml"]["logLik"] - REFERENCE["sleep_intercept_ml"]["logLik"])
    assert table["Chisq"].iloc[1] == pytest.approx(expected, abs=1e-5)


def test_the_log_determinant_term_is_half_the_sum_of_log_weights(slopes_reml):
    """lme4's unweighted fit of the rows scaled by √w has the log-likelihood of the weighted fit
    minus ½ Σ log w_i (computed in R, independently of our fit)."""
    ref = REFERENCE["sleep_slopes_reml_whitened"]
    assert ref["sum_log_w"] == pytest.approx(np.log(sleep_weighted()["w"]).sum(), rel=1e-12)
    assert slopes_reml.loglik == pytest.approx(ref["logLik"] + 0.5 * ref["sum_log_w"], abs=1e-5)


def test_profile_intervals(slopes_reml):
    """Variance parameters: lme4's weighted profile.  Fixed effects: lme4's profile of the same
    model written unweighted on √w-scaled rows (lme4 1.1-31 profiles a weighted fit's fixed
    effects wrongly: its intervals there are far inside the Wald ones)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = slopes_reml.confint("profile")
    weighted = REFERENCE["sleep_slopes_reml"]["confint_profile"]
    whitened = REFERENCE["sleep_slopes_reml_whitened"]["confint_profile"]
    variance = ours.index[:4]
    assert list(variance) == weighted["names"][:4]
    np.testing.assert_allclose(ours.loc[variance, "lower"], weighted["lower"][:4], rtol=1e-3)
    np.testing.assert_allclose(ours.loc[variance, "upper"], weighted["upper"][:4], rtol=1e-3)
    np.testing.assert_allclose(ours["lower"].iloc[4:], whitened["lower"][4:], rtol=1e-5)
    np.testing.assert_allclose(ours["upper"].iloc[4:], whitened["upper"][4:], rtol=1e-5)


# --- brute force: the dense marginal density ---------------------------------------------------


def dense_parts(model, theta):
    """Dense Z, Λ (σ = 1) and W for a model: brute force only."""
    spec = model.spec
    Z = np.hstack([factor_matrix(f).toarray() for f in spec.factors])
    Lam = block_diag(*[np.kron(np.eye(f.n_levels), T) for f, T in zip(spec.factors, model.layout.factors_T(theta))])
    return Z, Lam, np.diag(spec.weights)


def dense_deviance(model, theta, sigma, beta=None, reml=False):
    """−2 log N(y; Xβ, σ²(ZΛΛ'Z' + W⁻¹)) (ML at β), or the REML criterion at σ."""
    spec = model.spec
    Z, Lam, W = dense_parts(model, theta)
    V = sigma**2 * (Z @ Lam @ Lam.T @ Z.T + np.linalg.inv(W))
    Vinv = np.linalg.inv(V)
    X, y = spec.X, spec.y
    if reml:
        beta = np.linalg.solve(X.T @ Vinv @ X, X.T @ Vinv @ y)
    r = y - X @ beta
    value = spec.n * np.log(2 * np.pi) + np.linalg.slogdet(V)[1] + r @ Vinv @ r
    if reml:
        value += np.linalg.slogdet(X.T @ Vinv @ X)[1] - spec.p * np.log(2 * np.pi)
    return value


def sleep_subset() -> pd.DataFrame:
    data = sleep_weighted()
    return data[data["Subject"].isin(data["Subject"].unique()[:6])].reset_index(drop=True)


@pytest.mark.parametrize("formula, make", [(SLOPES, sleep_subset), (CROSSED, penicillin_weighted)])
@pytest.mark.parametrize("method", ["REML", "ML"])
def test_loglik_is_the_dense_marginal_density(formula, make, method):
    model = blm.LMM(formula, make(), weights="w")
    fit = model.fit(method)
    reml = method == "REML"
    dense = dense_deviance(model, fit.theta, fit.sigma, fit.fixef().to_numpy(), reml=reml)
    assert -2 * fit.loglik == pytest.approx(dense, abs=1e-8, rel=1e-11)
    # β̂ is the GLS estimate and vcov its covariance under V
    Z, Lam, W = dense_parts(model, fit.theta)
    V = fit.sigma**2 * (Z @ Lam @ Lam.T @ Z.T + np.linalg.inv(W))
    X, y = model.spec.X, model.spec.y
    XtVinv = np.linalg.solve(V, X).T
    np.testing.assert_allclose(fit.fixef(), np.linalg.solve(XtVinv @ X, XtVinv @ y), rtol=1e-9)
    np.testing.assert_allclose(fit.vcov(), np.linalg.inv(XtVinv @ X), rtol=1e-8)
    # conditional modes D Z'V⁻¹(y − Xβ̂) and lme4's condVar σ²Λ(Λ'Z'WZΛ + I)⁻¹Λ'
    D = fit.sigma**2 * Lam @ Lam.T
    modes = D @ Z.T @ np.linalg.solve(V, y - X @ fit.fixef().to_numpy())
    cond = fit.sigma**2 * Lam @ np.linalg.inv(Lam.T @ Z.T @ W @ Z @ Lam + np.eye(len(Lam))) @ Lam.T
    ours = [fit.ranef()[fit.ranef()["grpvar"] == f.name] for f in model.spec.factors]
    for f, (factor, table) in enumerate(zip(model.spec.factors, ours)):
        start = sum(g.n_levels * g.n_columns for g in model.spec.factors[:f])
        size = factor.n_levels * factor.n_columns
        # our table lists a factor's levels within each column; Z's columns, columns within levels
        order = np.arange(size).reshape(factor.n_levels, factor.n_columns).T.reshape(-1) + start
        np.testing.assert_allclose(table["condval"], modes[order], rtol=1e-7, atol=1e-8)
        np.testing.assert_allclose(table["condsd"], np.sqrt(np.diag(cond)[order]), rtol=1e-8)


def test_unprofiled_deviance_at_other_parameters_is_dense(sleep):
    """deviance_at (profile intervals, Satterthwaite) away from the optimum."""
    model = blm.LMM(SLOPES, sleep_subset(), weights="w")
    theta, sigma, beta = np.array([0.8, 0.1, 0.3]), 23.0, np.array([245.0, 12.0])
    fact = ld.factorize(theta, model.stats, model.layout)
    prof = ld.profile(fact, model.spec.p)
    ours = ld.deviance_at(fact, prof, model.spec.n, sigma**2, beta)
    assert ours == pytest.approx(dense_deviance(model, theta, sigma, beta), rel=1e-11)
    reml = ld.deviance_at(fact, prof, model.spec.n, sigma**2, reml=True)
    assert reml == pytest.approx(dense_deviance(model, theta, sigma, reml=True), rel=1e-11)


# --- invariants -------------------------------------------------------------------------------


@pytest.mark.parametrize("formula, make", [(SLOPES, sleep_weighted), (CROSSED, penicillin_weighted)])
def test_unit_weights_are_the_unweighted_fit(formula, make):
    data = make()
    plain = blm.LMM(formula, data).fit()
    ones = blm.LMM(formula, data, weights=np.ones(len(data))).fit()
    assert ones.loglik == plain.loglik
    np.testing.assert_array_equal(ones.theta, plain.theta)
    np.testing.assert_array_equal(ones.fixef(), plain.fixef())
    assert ones.sigma == plain.sigma


def test_scaling_the_weights_scales_only_sigma(sleep):
    """w → c·w: σ̂² → c·σ̂² and θ → θ/√c (σΛ unchanged); the distribution of y, hence β̂, its
    covariance, the random-effect covariance, the BLUPs and the log-likelihood, are unchanged."""
    c = 3.7
    base = blm.LMM(SLOPES, sleep, weights="w").fit()
    scaled = blm.LMM(SLOPES, sleep, weights=c * sleep["w"].to_numpy()).fit()
    assert scaled.sigma**2 == pytest.approx(c * base.sigma**2, rel=1e-6)
    np.testing.assert_allclose(scaled.theta, base.theta / np.sqrt(c), rtol=1e-5)
    np.testing.assert_allclose(scaled.fixef(), base.fixef(), rtol=1e-8)
    np.testing.assert_allclose(scaled.vcov(), base.vcov(), rtol=1e-5)
    assert scaled.loglik == pytest.approx(base.loglik, abs=1e-7)
    random = base.varcorr()["grp"] != "Residual"
    np.testing.assert_allclose(scaled.varcorr()["sdcor"][random], base.varcorr()["sdcor"][random], rtol=1e-5)
    np.testing.assert_allclose(scaled.ranef()["condval"], base.ranef()["condval"], rtol=1e-5, atol=1e-6)


def test_predict_ignores_weights(slopes_reml, sleep):
    """The mean does not depend on the weights: predictions for new rows are Xβ̂ + Zb̂."""
    new = sleep.head(5).drop(columns="w")
    np.testing.assert_allclose(slopes_reml.predict(new), slopes_reml.fitted().iloc[:5], rtol=1e-12)


# --- rows, columns and arrays ---------------------------------------------------------------


def test_missing_weight_drops_the_row_and_array_weights_align(sleep):
    data = sleep.copy()
    data.loc[5, "w"] = np.nan
    data.loc[7, "Reaction"] = np.nan
    before = data.copy()
    with pytest.warns(UserWarning, match="dropped 2 of 180 rows"):
        by_column = blm.LMM(SLOPES, data, weights="w").fit()
    assert data.equals(before)  # the caller's data is not modified
    kept = data.drop(index=[5, 7])
    direct = blm.LMM(SLOPES, kept, weights="w").fit()
    assert by_column.loglik == pytest.approx(direct.loglik, abs=1e-9)
    weights = sleep["w"].to_numpy()  # an array for all 180 rows, aligned before row 7 is dropped
    with pytest.warns(UserWarning, match="dropped 1 of 180 rows"):
        by_array = blm.LMM(SLOPES, data.drop(columns="w"), weights=weights).fit()
    reference = blm.LMM(SLOPES, sleep.drop(index=7), weights="w").fit()
    assert by_array.loglik == pytest.approx(reference.loglik, abs=1e-9)


# --- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize("value, words", [(0.0, "1 zero"), (-2.0, "1 negative"), (np.nan, "1 missing"),
                                          (np.inf, "1 infinite")])
def test_bad_array_weights(sleep, value, words):
    weights = sleep["w"].to_numpy().copy()
    weights[3] = value
    with pytest.raises(LMMError, match=f"positive and finite.*1 of 180 are not \\({words}"):
        blm.LMM(SLOPES, sleep, weights=weights)


def test_bad_weight_column(sleep):
    data = sleep.copy()
    data.loc[[1, 2], "w"] = [0.0, -1.0]
    with pytest.raises(LMMError, match=r"2 of 180 are not \(1 zero, 1 negative\)"):
        blm.LMM(SLOPES, data, weights="w")
    data.loc[[1, 2], "w"] = [np.inf, 1.0]
    with pytest.raises(LMMError, match="'w' has 1 infinite value"):
        blm.LMM(SLOPES, data, weights="w")
    with pytest.raises(LMMError, match=r"column 'weight' given as weights is not in the data \(columns: .*, w\)"):
        blm.LMM(SLOPES, sleep, weights="weight")
    with pytest.raises(LMMError, match="weight column 'label' must be numeric"):
        blm.LMM(SLOPES, sleep.assign(label="a"), weights="label")


def test_wrong_length_weights(sleep):
    with pytest.raises(LMMError, match=r"one number per row of data \(180\); got an array of shape \(179,\)"):
        blm.LMM(SLOPES, sleep, weights=np.ones(179))


def test_weights_with_a_residual_structure_are_refused(sleep):
    with pytest.raises(LMMError, match="weights cannot be combined with a residual structure"):
        blm.LMM("Reaction ~ Days + (1 | Subject)", sleep, residual="ar1(Days | Subject)", weights="w")


def test_kenward_roger_is_refused(slopes_reml):
    with pytest.raises(LMMError, match="Kenward–Roger is not built for models with prior weights; use ddf='sat"):
        slopes_reml.coef_table(ddf="kenward-roger")
    with pytest.raises(LMMError, match="Kenward–Roger is not built for models with prior weights"):
        slopes_reml.anova(ddf="kenward-roger")


def test_comparisons_need_the_same_weights(sleep, slopes_reml):
    unweighted = blm.LMM("Reaction ~ Days + (1 | Subject)", sleep).fit()
    with pytest.raises(LMMError, match=r"different prior weights \(no weights and weights\)"):
        blm.anova(unweighted, slopes_reml)
    other_reml = blm.LMM("Reaction ~ Days + (1 | Subject)", sleep, weights=2 * sleep["w"].to_numpy()).fit()
    with pytest.raises(LMMError, match="different prior weights.*unequal values"):
        blm.anova(other_reml, slopes_reml)
    with pytest.raises(LMMError, match="mA and m0 were fitted with different prior weights"):
        blm.exact_rlrt(blm.LMM("Reaction ~ Days + (0 + Days | Subject)", sleep, weights="w"),
                       mA=slopes_reml, m0=other_reml, n_sim=10)


def test_exact_rlrt_is_that_of_the_rows_scaled_by_root_w(sleep):
    """With W^½ applied, the weighted model is an unweighted one on √w-scaled rows (its random
    intercept's column is √w): the same statistic, eigenvalues and simulated null sample."""
    weighted = blm.exact_rlrt(blm.LMM("Reaction ~ Days + (1 | Subject)", sleep, weights="w"), n_sim=500, seed=2)
    root = np.sqrt(sleep["w"])
    scaled = sleep.assign(y_w=sleep["Reaction"] * root, sw=root, days_w=sleep["Days"] * root)
    plain = blm.exact_rlrt(blm.LMM("y_w ~ 0 + sw + days_w + (0 + sw | Subject)", scaled), n_sim=500, seed=2)
    assert weighted.statistic == pytest.approx(plain.statistic, rel=1e-6)
    np.testing.assert_allclose(weighted.sample, plain.sample, rtol=1e-8, atol=1e-10)


# --- simulation and the bootstrap ----------------------------------------------------------------


def test_simulated_noise_has_variance_sigma2_over_w(sleep):
    """Within a subject, y_i − y_j loses the random intercept: Var = σ̂²(1/w_i + 1/w_j)."""
    fit = blm.LMM("Reaction ~ Days + (1 | Subject)", sleep, weights="w").fit()
    Y = fit.simulate(2000, seed=3).to_numpy()
    same = (sleep["Subject"].to_numpy()[1:] == sleep["Subject"].to_numpy()[:-1])
    w = sleep["w"].to_numpy()
    expected = fit.sigma**2 * (1 / w[1:] + 1 / w[:-1])
    ratio = np.var(Y[1:] - Y[:-1], axis=1, ddof=1)[same] / expected[same]
    assert abs(ratio.mean() - 1) < 0.03
    assert np.all((ratio > 0.85) & (ratio < 1.15))


def test_bootstrap_refits_are_weighted_fits(sleep, slopes_reml):
    """A refit from the cached weighted cross-products equals a fresh weighted fit of that response."""
    Y = slopes_reml.simulate(2, seed=4).to_numpy()
    for k, refit in enumerate(refits(slopes_reml, Y)):
        data = sleep.assign(Reaction=Y[:, k])
        fresh = blm.LMM(SLOPES, data, weights="w").fit()
        assert refit.fit.loglik == pytest.approx(fresh.loglik, abs=1e-6)
        np.testing.assert_allclose(refit.fit.fixef(), fresh.fixef(), rtol=1e-6)
        assert refit.fit.sigma == pytest.approx(fresh.sigma, rel=1e-5)


# --- Bayesian ---------------------------------------------------------------------------------


def test_marginal_likelihood_with_flat_beta_is_the_dense_reml_density():
    """The marginalised sampler's likelihood term (deviance_beta_integrated on the weighted
    statistics) is the dense REML density at any (θ, σ), weights' log-determinant included."""
    model = blm.LMM(SLOPES, sleep_subset(), weights="w")
    flat = model._bayes_setup({"fixef": Flat()}).priors.beta
    for theta, sigma in [(np.array([0.8, 0.1, 0.3]), 23.0), (np.array([1.5, -0.2, 0.1]), 31.0)]:
        fact = ld.factorize(theta, model.stats, model.layout)
        ours = ld.deviance_beta_integrated(fact.C, fact.logdet, model.spec.n, sigma**2, flat.precision,
                                           flat.shift, flat.constant)
        assert ours == pytest.approx(dense_deviance(model, theta, sigma, reml=True), rel=1e-10)


@pytest.mark.parametrize("formula, make", [(SLOPES, sleep_subset), (CROSSED, penicillin_weighted),
                                           ("Reaction ~ Days", sleep_subset)])
def test_marginal_pymc_graph_is_the_weighted_log_density(formula, make):
    """The PyMC graph's likelihood (factorize_graph with one factor, the
    blocked Cholesky Op with several; the weights' log-determinant in both) equals the
    NumPy deviance_beta_integrated on the weighted statistics, which the dense test checks."""
    model = blm.LMM(formula, make(), weights="w")
    pm_model = model.pymc_model(marginalize=True)
    setup, values_at = model._bayes_setup(None), pymc_values(pm_model)
    prior, rng = setup.priors.beta, np.random.default_rng(8)
    for _ in range(2):
        point = {k: v + rng.normal(0, 0.5, np.shape(v)) for k, v in pm_model.initial_point().items()}
        values = values_at(point)
        chols = [_packed_chol(values, term, label) for term, label in zip(model.spec.terms, setup.labels)]
        sigma = np.array([values["sigma"]])
        fact = ld.factorize_T(bayes.factor_Ts(setup, chols, sigma, 0), model.stats)
        likelihood = -0.5 * ld.deviance_beta_integrated(fact.C, fact.logdet, model.spec.n, sigma[0] ** 2,
                                                        prior.precision, prior.shift, prior.constant)
        prior_part = pm_model.compile_logp(vars=pm_model.free_RVs)(point)
        assert pm_model.compile_logp()(point) == pytest.approx(prior_part + likelihood, abs=1e-8, rel=1e-12)


def _packed_chol(values: dict, term, label: str) -> np.ndarray:
    """A term's Cholesky factor (1, S, S) from the PyMC variables: sd_… times corr_chol_… (two or more columns)."""
    sd = np.atleast_1d(values[f"sd_{label}"])
    return (sd[:, None] * values[f"corr_chol_{label}"] if term.size > 1 else sd.reshape(1, 1))[None]


def test_hierarchical_likelihood_uses_sigma_over_sqrt_w():
    model = blm.LMM("Reaction ~ Days + (1 | Subject)", sleep_subset(), weights="w")
    pm_model = model.pymc_model(marginalize=False)
    loglik = pm_model.compile_logp(vars=[pm_model["y"]], sum=True)
    point = pm_model.initial_point()
    point["sigma_log__"] = np.log(17.0)
    point["beta_centred"] = np.array([290.0, 9.0])
    point["z_Subject"] = np.linspace(-1, 1, 6)[:, None]
    values = pymc_values(pm_model)(point)
    spec = model.spec
    mu = spec.X @ values["beta"] + values["b_Subject"][spec.factors[0].codes, 0]
    sd = 17.0 / np.sqrt(spec.weights)
    expected = np.sum(-0.5 * ((spec.y - mu) / sd) ** 2 - np.log(sd) - 0.5 * np.log(2 * np.pi))
    assert float(loglik(point)) == pytest.approx(expected, rel=1e-10)


@pytest.mark.filterwarnings("ignore::bayeslmm.PosteriorWarning")
def test_nuts_with_weights(sleep, slopes_reml):
    model = blm.LMM(SLOPES, sleep, weights="w")
    result = model.fit(method="NUTS", draws=200, tune=200, chains=2, random_seed=7, progressbar=False)
    posterior = result.posterior
    beta = posterior["beta"].values.reshape(-1, 2)
    assert np.all(np.abs(beta.mean(axis=0) - slopes_reml.fixef().to_numpy()) < 0.5 * slopes_reml.se().to_numpy())
    # pointwise log-likelihood at one draw: log N(y_i | x_iβ + z_i b, σ²/w_i)
    spec, d = model.spec, 17
    sigma = posterior["sigma"].values.reshape(-1)[d]
    b = posterior["b_Subject"].values.reshape(-1, 18, 2)[d]
    factor = spec.factors[0]
    mu = spec.X @ beta[d] + np.einsum("is,is->i", factor.raw, b[factor.codes])
    sd = sigma / np.sqrt(spec.weights)
    expected = -0.5 * ((spec.y - mu) / sd) ** 2 - np.log(sd) - 0.5 * np.log(2 * np.pi)
    pointwise = result.idata["log_likelihood"]["y"].values.reshape(-1, spec.n)[d]
    np.testing.assert_allclose(pointwise, expected, rtol=1e-10)
    # leave-one-group-out: each subject's marginal density N(X_gβ, Z_g D Z_g' + σ²W_g⁻¹) at the draw
    groups = bayes.group_log_likelihood(result.idata, result.setup)["y"].values.reshape(-1, 18)[d]
    _, chols = bayes.posterior_parameters(posterior, result.setup)
    D = chols[0][d] @ chols[0][d].T
    for g in (0, 11):
        rows = factor.codes == g
        Zg = factor.raw[rows]
        V = Zg @ D @ Zg.T + np.diag(sd[rows] ** 2)
        r = spec.y[rows] - spec.X[rows] @ beta[d]
        dense = -0.5 * (np.linalg.slogdet(2 * np.pi * V)[1] + r @ np.linalg.solve(V, r))
        assert groups[g] == pytest.approx(dense, rel=1e-10)
    with pytest.raises(LMMError, match="new rows of a model with prior weights"):
        result.predict(sleep.head(3), kind="pps")
