"""Every lme4 fit in the reference files, at the tolerances of the core issue.

loglik within 1e-5 absolute; fixef within 1e-5 relative; standard errors, sigma and
random-effect sds within 1e-4 relative; conditional modes within 1e-4 of their
term's sd; conditional sds within 1e-3 relative; is_singular equal.
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import bayeslmm as blm
from conftest import EXTRA, PUBLIC, case_data, our_group, our_name, python_formula

LME4_CASES = {
    **{k: v for k, v in PUBLIC.items() if str(v.get("engine", "")).startswith("lme4") and k != "sitka_slope_reml"},
    **{k: v for k, v in EXTRA.items() if str(v.get("engine", "")).startswith("lme4")},
}


def fit_case(case: dict) -> tuple[blm.LMMResult, pd.DataFrame]:
    data = case_data(case)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # singular / NA / aliased warnings are tested elsewhere
        fit = blm.LMM(python_formula(case["formula"]), data).fit(method=case["method"])
    return fit, data


@pytest.fixture(scope="module", params=sorted(LME4_CASES))
def fitted_case(request):
    case = LME4_CASES[request.param]
    fit, data = fit_case(case)
    return case, fit, data


def test_loglik_and_criteria(fitted_case):
    case, fit, _ = fitted_case
    assert fit.converged
    assert abs(fit.loglik - case["logLik"]) <= 1e-5
    assert abs(fit.deviance - case["deviance_or_REMLcrit"]) <= 2e-5
    assert fit.npar == case["df"]
    assert abs(fit.aic - case["AIC"]) <= 2e-5 and abs(fit.bic - case["BIC"]) <= 2e-5
    assert fit.nobs == case["nobs"]
    assert fit.ngrps == {our_group(k): v for k, v in case["ngrps"].items()}
    assert fit.is_singular == case["singular"]


def test_fixed_effects(fitted_case):
    case, fit, data = fitted_case
    names = [our_name(n, data) for n in case["fixef"]]
    assert list(fit.fixef().index) == names
    np.testing.assert_allclose(fit.fixef()[names], list(case["fixef"].values()), rtol=1e-5)
    np.testing.assert_allclose(fit.se()[names], list(case["se"].values()), rtol=1e-4)
    np.testing.assert_allclose(fit.vcov().loc[names, names], np.array(case["vcov"], float).reshape(len(names), -1),
                               rtol=1e-4, atol=1e-4 * np.min(np.array(list(case["se"].values())) ** 2))


def optimum(case: dict) -> dict:
    """Where the reference also holds lme4's tight refit (bobyqa, rhoend 1e-10), compare
    θ-driven quantities with it: lme4's default optimizer stops with θ good to ~1e-5."""
    return case.get("tight_refit", case)


def test_variance_components(fitted_case):
    case, fit, data = fitted_case
    ours = fit.varcorr()
    ref = pd.DataFrame(optimum(case)["varcorr"])
    assert len(ours) == len(ref)
    assert list(ours["grp"]) == [our_group(g) for g in ref["grp"]]
    assert list(ours["var1"].fillna("")) == [our_name(v, data) if v else "" for v in ref["var1"].fillna("")]
    assert list(ours["var2"].fillna("")) == [our_name(v, data) if v else "" for v in ref["var2"].fillna("")]
    sd_rows = ref["var2"].isna().to_numpy()
    np.testing.assert_allclose(ours["sdcor"][sd_rows], ref["sdcor"][sd_rows], rtol=1e-4)
    np.testing.assert_allclose(fit.sigma, optimum(case)["sigma"], rtol=1e-4)
    # correlations: within 1e-4 absolute except at a boundary, where lme4 stops early
    corr = ~sd_rows
    np.testing.assert_allclose(ours["sdcor"][corr], ref["sdcor"][corr], atol=1e-3 if case["singular"] else 1e-4)


def test_conditional_modes_and_sds(fitted_case):
    case, fit, data = fitted_case
    ref = pd.DataFrame(optimum(case)["ranef"])
    if ref.empty:
        assert fit.ranef().empty
        return
    ref = ref.assign(grpvar=ref["grpvar"].map(our_group), term=ref["term"].map(lambda t: our_name(t, data)),
                     grp=ref["grp"].astype(str))
    ours = fit.ranef(cond_var=True)
    merged = ref.merge(ours, on=["grpvar", "term", "grp"], suffixes=("_ref", ""), validate="one_to_one")
    assert len(merged) == len(ref) == len(ours)
    term_sd = _term_sds(fit)
    scale = merged.apply(lambda r: term_sd[(r["grpvar"], r["term"])], axis=1)
    assert np.all(np.abs(merged["condval"] - merged["condval_ref"]) <= 1e-4 * scale)
    np.testing.assert_allclose(merged["condsd"], merged["condsd_ref"], rtol=1e-3)


def test_fitted_values(fitted_case):
    case, fit, _ = fitted_case
    head = np.asarray(case["fitted_head"])
    np.testing.assert_allclose(fit.fitted().to_numpy()[: len(head)], head, rtol=0, atol=1e-4 * fit.sigma)


def _term_sds(fit) -> dict[tuple[str, str], float]:
    """sd of each (grouping factor, column) random effect, for the condval tolerance."""
    sds = {}
    for term, cov in zip(fit.spec.terms, fit.term_covariances()):
        factor = fit.spec.factors[term.factor].name
        for name, var in zip(term.column_names, np.diag(cov)):
            sds[(factor, name)] = np.sqrt(var)
    return sds


def test_sitka_slope_reaches_the_nlme_optimum():
    """lme4 stops early on unscaled time (logLik −76.68); nlme reaches −62.4838. So must we.

    We reach −62.48344, 3.6e-4 above nlme, whose own stopping rule leaves its variance
    estimates good to about 2e-3; so they are compared at that precision, and the
    optimum itself is checked directly: no step in any θ direction improves it.
    """
    nlme = PUBLIC["sitka_slope_reml_nlme"]
    fit, _ = fit_case(PUBLIC["sitka_slope_reml"])
    assert fit.converged
    assert fit.loglik >= nlme["logLik"] - 1e-5
    np.testing.assert_allclose(fit.fixef().to_numpy(), list(nlme["fixef"].values()), rtol=1e-5)
    np.testing.assert_allclose(fit.se().to_numpy(), list(nlme["se"].values()), rtol=2e-3)
    sds = fit.varcorr().query("var2.isna()")["sdcor"].to_numpy()
    np.testing.assert_allclose(sds, nlme["varcorr_sd"], rtol=2e-3)
    assert fit.npar == nlme["df"]
    model = blm.LMM(PUBLIC["sitka_slope_reml"]["formula"], case_data(PUBLIC["sitka_slope_reml"]))
    for j in range(fit.theta.size):
        for step in (-1e-4, 1e-4):
            theta = fit.theta.copy()
            theta[j] += step * model.layout.scale[j]
            assert _deviance(model, theta) >= fit.deviance - 1e-9


def _deviance(model, theta) -> float:
    from bayeslmm.linalg.logdensity import objective

    return objective(theta, model.stats, model.layout, reml=True)


def test_no_random_term_matches_gls():
    """A formula with no bar is the linear model, by REML or ML (nlme::gls reference)."""
    for key in ("lm_reml", "lm_ml"):
        case = EXTRA[key]
        fit, data = fit_case(case)
        names = [our_name(n, data) for n in case["fixef"]]
        assert abs(fit.loglik - case["logLik"]) <= 1e-5
        np.testing.assert_allclose(fit.fixef()[names], list(case["fixef"].values()), rtol=1e-5)
        np.testing.assert_allclose(fit.sigma, optimum(case)["sigma"], rtol=1e-4)
        assert fit.npar == case["df"]
        assert list(fit.varcorr()["grp"]) == ["Residual"]
    # gls reports ML standard errors with RSS/(n - p), so only the REML ones compare
    case = EXTRA["lm_reml"]
    fit, data = fit_case(case)
    np.testing.assert_allclose(fit.se()[[our_name(n, data) for n in case["se"]]], list(case["se"].values()), rtol=1e-4)
