"""Residual covariance structures (frequentist path) against nlme 3.1-162 and a dense computation.

Reference: shared/reference/public_reference.json (copied to tests/reference). Tolerances from the
residual-structure issue: loglik 1e-4 absolute, fixed effects 1e-4 relative, σ and the structure's
parameters 1e-3 relative; df equal to nlme's.
"""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

import bayeslmm as blm
from bayeslmm.fit import residual as fit_residual
from bayeslmm.model import residual as cov
from conftest import PUBLIC, TESTS, our_name

CASES = {
    "sitka_gls_cs_reml": ("size ~ time * treat", cov.CompoundSymmetry(group="tree"), "REML"),
    "sitka_gls_ar1_reml": ("size ~ time * treat", cov.AR1(time="visit", group="tree"), "REML"),
    "sitka_gls_ar1_ml": ("size ~ time * treat", cov.AR1(time="visit", group="tree"), "ML"),
    "sitka_gls_arh1_reml": ("size ~ time * treat", cov.ARH1(time="visit", group="tree"), "REML"),
    "sitka_lme_int_ar1_reml": ("size ~ time * treat + (1 | tree)", cov.AR1(time="visit", group="tree"), "REML"),
    "sitka_gls_un_reml": ("size ~ time * treat", cov.Unstructured(time="visit", group="tree"), "REML"),
}


@pytest.fixture(scope="module")
def sitka():
    return blm.datasets.load("Sitka")


@pytest.mark.parametrize("key", sorted(CASES))
def test_matches_nlme(key, sitka):
    formula, structure, method = CASES[key]
    ref = PUBLIC[key]
    fit = blm.LMM(formula, sitka, residual=structure).fit(method)
    assert abs(fit.loglik - ref["logLik"]) <= 1e-4
    assert fit.npar == ref["df"]
    assert abs(fit.aic - ref["AIC"]) <= 2e-4
    # nlme's BIC for a REML fit counts n − p observations; ours (lme4's) counts n
    n_bic = fit.nobs - (fit.spec.p if method == "REML" else 0)
    assert abs(fit.deviance + fit.npar * np.log(n_bic) - ref["BIC"]) <= 2e-4
    names = [our_name(n, sitka) for n in ref["fixef"]]
    np.testing.assert_allclose(fit.fixef()[names], list(ref["fixef"].values()), rtol=1e-4)
    if method == "REML":  # gls reports ML standard errors with RSS/(n − p); lme4's convention is σ̂_ML
        np.testing.assert_allclose(fit.se()[names], list(ref["se"].values()), rtol=1e-3)
    np.testing.assert_allclose(fit.sigma, ref["sigma"], rtol=1e-3)
    params = fit.residual_params()
    if isinstance(ref["corStruct"], float):
        np.testing.assert_allclose(params["rho"], ref["corStruct"], rtol=1e-3)
    if isinstance(ref["corStruct"], list):  # corSymm: pairs (1,2), (1,3), …, (4,5)
        C = params["correlation"].to_numpy()
        pairs = [C[i, j] for i in range(len(C)) for j in range(i + 1, len(C))]
        np.testing.assert_allclose(pairs, ref["corStruct"], rtol=1e-3)
    if ref.get("varStruct"):  # nlme reports sds relative to the first visit, as we do
        ratios = params["sd ratios"]
        np.testing.assert_allclose([ratios[k] for k in ref["varStruct"]], list(ref["varStruct"].values()), rtol=1e-3)


def test_random_intercept_equals_compound_symmetry(sitka):
    """(1 | tree) with iid errors and a compound-symmetry GLS are the same Gaussian model."""
    lme = blm.LMM("size ~ time * treat + (1 | tree)", sitka).fit()
    gls = blm.LMM("size ~ time * treat", sitka, residual=cov.CompoundSymmetry(group="tree")).fit()
    assert lme.loglik == pytest.approx(gls.loglik, abs=1e-6)
    np.testing.assert_allclose(lme.fixef(), gls.fixef(), rtol=1e-6)


def test_ar1_with_missing_visits_equals_the_dense_likelihood(sitka):
    """Gaps keep their distance: R_jk = ρ^|t_j − t_k| over the visits a tree has."""
    data = sitka.drop(index=sitka.index[::7])  # every 7th row: trees lose different visits
    model = blm.LMM("size ~ time * treat", data, residual=cov.AR1(time="visit", group="tree"))
    rho = 0.8
    ours = fit_residual.objective(np.array([np.arctanh(rho)]), model.spec, model.layout, model.residual, False)
    X, y = model.spec.X, model.spec.y
    logdet = 0.0
    Vinv = np.zeros((len(y), len(y)))
    rows = data.reset_index(drop=True)
    for _, idx in rows.groupby("tree").groups.items():
        t = rows.loc[idx, "visit"].to_numpy()
        R = rho ** np.abs(t[:, None] - t[None, :])
        Vinv[np.ix_(idx, idx)] = np.linalg.inv(R)
        logdet += np.linalg.slogdet(R)[1]
    beta = np.linalg.solve(X.T @ Vinv @ X, X.T @ Vinv @ y)
    r = y - X @ beta
    n = len(y)
    dense = n * np.log(2 * np.pi * (r @ Vinv @ r) / n) + n + logdet
    assert ours == pytest.approx(dense, rel=1e-10)


def _dense_ml_deviance(model, blocks) -> float:
    """Profiled ML deviance of y ~ N(Xβ, σ²R) with R block diagonal, by dense algebra."""
    X, y = model.spec.X, model.spec.y
    Rinv = np.zeros((len(y), len(y)))
    logdet = 0.0
    for idx, R in blocks:
        Rinv[np.ix_(idx, idx)] = np.linalg.inv(R)
        logdet += np.linalg.slogdet(R)[1]
    beta = np.linalg.solve(X.T @ Rinv @ X, X.T @ Rinv @ y)
    r = y - X @ beta
    n = len(y)
    return n * np.log(2 * np.pi * (r @ Rinv @ r) / n) + n + logdet


def test_unstructured_with_missing_visits_uses_sub_matrices(sitka):
    data = sitka.drop(index=sitka.index[::6]).reset_index(drop=True)
    model = blm.LMM("size ~ time * treat", data, residual=cov.Unstructured(time="visit", group="tree"))
    phi = np.random.default_rng(2).normal(0, 0.3, model.residual.start.size)
    S = model.residual.relative_covariance(phi)
    blocks = [(idx, S[np.ix_(data.loc[idx, "visit"] - 1, data.loc[idx, "visit"] - 1)])
              for idx in data.groupby("tree").groups.values()]
    ours = fit_residual.objective(phi, model.spec, model.layout, model.residual, False)
    assert ours == pytest.approx(_dense_ml_deviance(model, blocks), rel=1e-10)
    fit = model.fit()
    assert fit.converged and fit.npar == 4 + 14 + 1


def test_heteroscedastic_matches_dense(sitka):
    model = blm.LMM("size ~ time * treat", sitka, residual=cov.Heteroscedastic(by="treat"))
    phi = np.array([0.4])
    sd = np.where(sitka["treat"] == "ozone", np.exp(0.4), 1.0)
    ours = fit_residual.objective(phi, model.spec, model.layout, model.residual, False)
    dense = _dense_ml_deviance(model, [(np.arange(len(sitka)), np.diag(sd**2))])
    assert ours == pytest.approx(dense, rel=1e-10)
    fit = model.fit()
    assert set(fit.residual_params()["sd ratios"]) == {"control", "ozone"} and fit.npar == 6


def test_string_shorthand(sitka):
    assert cov.parse("ar1(visit | tree)") == cov.AR1(time="visit", group="tree")
    assert cov.parse("ar1h(visit|tree)") == cov.ARH1(time="visit", group="tree")
    assert cov.parse("us(visit | tree)") == cov.Unstructured(time="visit", group="tree")
    assert cov.parse("cs(tree)") == cov.parse("cs(visit | tree)") == cov.CompoundSymmetry(group="tree")
    a = blm.LMM("size ~ time", sitka, residual="ar1(visit | tree)").fit()
    b = blm.LMM("size ~ time", sitka, residual=cov.AR1(time="visit", group="tree")).fit()
    assert a.loglik == b.loglik
    with pytest.raises(blm.LMMError, match="not known"):
        cov.parse("toeplitz(visit | tree)")


def test_bad_residual_input(sitka):
    doubled = sitka.assign(visit=1)
    with pytest.raises(blm.LMMError, match="repeats within a level of 'tree'"):
        blm.LMM("size ~ time", doubled, residual=cov.AR1(time="visit", group="tree"))
    with pytest.raises(blm.LMMError, match="lie within one level of 'tree'"):
        blm.LMM("size ~ time + (1 | tree)", sitka, residual=cov.AR1(time="tree", group="visit"))
    with pytest.raises(blm.LMMError, match="more groups than time points"):
        blm.LMM("size ~ time", sitka.head(10), residual=cov.Unstructured(time="visit", group="tree"))
    with pytest.raises(blm.LMMError, match="no parameter named 'residual'"):
        blm.LMM("size ~ time + (1 | tree)", sitka).pymc_model(priors={"residual": {"eta": 2}})
    with pytest.raises(blm.LMMError, match="'rho'.*ScaledBeta"):
        blm.LMM("size ~ time", sitka, residual="ar1(visit | tree)").pymc_model(priors={"residual": {"phi": 1}})


@pytest.mark.parametrize("reml", [True, False])
def test_unstructured_gradient_is_exact(sitka, reml):
    """The analytic ∂(−2ℓ)/∂φ of the GLS fit equals central differences of the log-density."""
    data = sitka.drop(index=sitka.index[::6]).reset_index(drop=True)  # missing visits: several patterns
    model = blm.LMM("size ~ time * treat", data, residual=cov.Unstructured(time="visit", group="tree"))
    phi = np.random.default_rng(3).normal(0, 0.3, model.residual.start.size)
    exact = fit_residual.gls_phi_gradient(model.spec, model.residual, phi, reml)
    step = 1e-6
    numeric = [(fit_residual.objective(phi + step * e, model.spec, model.layout, model.residual, reml)
                - fit_residual.objective(phi - step * e, model.spec, model.layout, model.residual, reml)) / (2 * step)
               for e in np.eye(phi.size)]
    np.testing.assert_allclose(exact, numeric, rtol=1e-5, atol=1e-5 * np.abs(exact).max())


HET_REFERENCE = json.loads((TESTS / "reference" / "het_reference.json").read_text())
HET_CASES = {  # made with nlme 3.1-162 by tests/reference/make_het_reference.R
    "sitka_gls_ar1_het_reml": ("size ~ time * treat", "ar1(visit | tree) + het(treat)", "REML"),
    "sitka_gls_cs_het_ml": ("size ~ time * treat", cov.CompoundSymmetry(group="tree") & cov.Heteroscedastic(by="treat"), "ML"),
    "sitka_lme_ar1_het_reml": ("size ~ time * treat + (1 | tree)",
                               cov.AR1(time="visit", group="tree") & cov.Heteroscedastic(by="treat"), "REML"),
}


@pytest.mark.parametrize("case", sorted(HET_CASES))
def test_structure_with_a_variance_per_level_matches_nlme(sitka, case):
    """nlme's varIdent takes the first level in data order (ozone) as reference and reports
    σ there; ours takes the first sorted level (control): σ_control = σ_nlme · ratio_nlme."""
    ref = HET_REFERENCE[case]
    formula, structure, method = HET_CASES[case]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", blm.SingularFitWarning)
        fit = blm.LMM(formula, sitka, residual=structure).fit(method)
    assert fit.loglik == pytest.approx(ref["logLik"], abs=1e-5)
    assert fit.npar == ref["df"]
    np.testing.assert_allclose(fit.fixef()[[our_name(n, sitka) for n in ref["fixef"]]], list(ref["fixef"].values()), rtol=1e-4)
    params = fit.residual_params()
    assert params["rho"] == pytest.approx(ref["rho"], rel=1e-3)
    assert params["sd ratios by treat"]["ozone"] == pytest.approx(1 / ref["ratio"], rel=1e-3)
    assert fit.sigma == pytest.approx(ref["sigma"] * ref["ratio"], rel=1e-3)


def test_combining_needs_a_heteroscedastic_part_that_is_identifiable():
    with pytest.raises(blm.LMMError, match="not be identifiable"):
        cov.ARH1(time="visit", group="tree") & cov.Heteroscedastic(by="visit")
    with pytest.raises(blm.LMMError, match="Heteroscedastic"):
        cov.Combined(cov.AR1(time="visit", group="tree"), cov.AR1(time="visit", group="tree"))
    with pytest.raises(blm.LMMError, match="one structure with one het"):
        cov.parse("ar1(visit | tree) + het(treat) + het(visit)")


@pytest.mark.parametrize("structure", ["cs(tree)", "ar1(visit | tree)", "ar1h(visit | tree)", "us(visit | tree)",
                                       "het(treat)", "ar1(visit | tree) + het(treat)", "cs(tree) + het(treat)"])
def test_colouring_inverts_whitening_and_group_logdets_add_up(sitka, structure):
    """colour (used to simulate correlated errors) is the inverse of whiten, on unsorted rows
    with missing visits; the per-group log-determinants sum to the whitening's."""
    data = sitka.sample(frac=0.85, random_state=1)
    bound = blm.LMM("size ~ time", data, residual=structure).residual
    phi = np.random.default_rng(1).normal(0, 0.3, bound.start.size)
    params = bound.natural(phi)
    Z = np.random.default_rng(2).normal(size=(len(data), 3))
    whitened, logdet = bound.whiten(phi, bound.colour(params, Z))
    np.testing.assert_allclose(whitened, Z, atol=1e-12)
    assert bound.group_logdets(params).sum() == pytest.approx(logdet, rel=1e-12, abs=1e-12)


# --- inference with residual structures -----------------------------------------------------


def test_satterthwaite_with_compound_symmetry_equals_lmertest_random_intercept(sitka):
    """The CS GLS is the random-intercept model reparametrised (ρ ≥ 0 here), and Satterthwaite's
    df are invariant to the variance parameters' parametrisation: the GLS df with varpar
    (σ, φ) must equal lmerTest's for size ~ time * treat + (1 | tree), which uses (θ, σ)."""
    ref = PUBLIC["sitka_satterthwaite"]
    table = blm.LMM("size ~ time * treat", sitka, residual="cs(tree)").fit().coef_table()
    np.testing.assert_allclose(table["df"], ref["df_satterthwaite"], rtol=1e-3)
    np.testing.assert_allclose(table["p_value"], ref["p"], rtol=1e-3)


def test_profile_intervals_with_a_residual_structure(sitka):
    """Fixed-effect profiles of the CS GLS equal the random-intercept model's (same likelihood);
    ρ's interval brackets its estimate and maps through ρ = (low, 1)."""
    gls = blm.LMM("size ~ time * treat", sitka, residual="cs(tree)").fit()
    lme = blm.LMM("size ~ time * treat + (1 | tree)", sitka).fit()
    ours, theirs = gls.confint(), lme.confint()
    fixed = list(lme.fixef().index)
    np.testing.assert_allclose(ours.loc[fixed].to_numpy(), theirs.loc[fixed].to_numpy(), rtol=1e-5)
    rho = gls.refit("ML").residual_params()["rho"]
    assert ours.loc["rho", "lower"] < rho < ours.loc["rho", "upper"] < 1
    assert list(ours.index[:2]) == ["sigma", "rho"]


def test_likelihood_ratio_test_of_structures_matches_nlme(sitka):
    """The seed's comparison: AR(1) against unstructured errors, REML fits with the same mean."""
    ar1 = blm.LMM("size ~ time * treat", sitka, residual="ar1(visit | tree)").fit()
    un = blm.LMM("size ~ time * treat", sitka, residual="us(visit | tree)").fit()
    table = blm.anova(ar1, un, names=["AR1", "UN"])
    ref_ar1, ref_un = PUBLIC["sitka_gls_ar1_reml"], PUBLIC["sitka_gls_un_reml"]
    assert table["Df"].iloc[1] == ref_un["df"] - ref_ar1["df"]
    assert table["Chisq"].iloc[1] == pytest.approx(2 * (ref_un["logLik"] - ref_ar1["logLik"]), abs=1e-4)
    np.testing.assert_allclose(table["AIC"], [ref_ar1["AIC"], ref_un["AIC"]], atol=1e-4)


def test_converged_fit_is_reported_converged(sitka):
    """Groups of 2 to 5 visits, AR(1) with a random intercept: the fit is nlme's optimum (logLik
    −32.430765), and the Newton-step check must say so. Its second differences of −2ℓ over
    φ ± 1e-4 (~2e-7) once came from the rough inner θ fits of the search, whose error is of that
    size: a negative curvature, an infinite step and a false ConvergenceWarning."""
    data = sitka.drop(index=[0, 7, 8, 20, 33, 34, 35]).reset_index(drop=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", blm.ConvergenceWarning)
        fit = blm.LMM("size ~ time + (1 | tree)", data, residual=cov.AR1(time="visit", group="tree")).fit()
    assert fit.converged
