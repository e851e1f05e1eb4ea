"""Kenward–Roger t tests and type-3 / type-1 F tests by term.

References: the shared lmerTest / pbkrtest values (public_reference.json) and
tests/reference/kr_reference.json, made by tests/reference/make_kr_reference.R
(lmerTest 3.1-3's summary/anova and pbkrtest 0.5.2's vcovAdj on REML fits whose
optimum R found with bobyqa at rhoend = 1e-10).  The tests never call R.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

import bayeslmm as blm
from bayeslmm.inference import kenward_roger as ddf
from conftest import DDF_CASES, PUBLIC, TESTS, case_data

KR = json.loads((TESTS / "reference" / "kr_reference.json").read_text())
ANOVA_COLUMNS = ["Sum Sq", "Mean Sq", "NumDF", "DenDF", "F value", "Pr(>F)"]


@pytest.fixture(scope="module")
def fits():
    cache = {}

    def get(key):
        if key not in cache:
            case = KR[key]
            cache[key] = blm.LMM(case["formula"], case_data(case)).fit()
        return cache[key]

    return get


@pytest.mark.parametrize("key", list(KR))
def test_kenward_roger_coefficients_match_pbkrtest(key, fits):
    """KR se and df within 1e-3 relative; the adjustment Φ_A − Φ itself within 1e-2."""
    case, fit = KR[key], fits(key)
    table = fit.coef_table(ddf="kenward-roger")
    np.testing.assert_allclose(table["estimate"], case["estimate"], rtol=1e-5)
    np.testing.assert_allclose(table["std_error"], case["se_kenward_roger"], rtol=1e-3)
    np.testing.assert_allclose(table["df"], case["df_kenward_roger"], rtol=1e-3)
    np.testing.assert_allclose(table["statistic"], case["t_kenward_roger"], rtol=1e-3)
    # the adjustment is only ~1e-3 of Var(β̂) here, so test it on its own (a test of se alone at
    # 1e-3 would pass with the unadjusted se), where it is large enough to be resolved
    ours = np.diag(ddf.kenward_roger(fit).phi_adjusted) / fit.se().to_numpy() ** 2 - 1
    theirs = np.square(case["se_kenward_roger"]) / np.square(case["se"]) - 1
    resolved = theirs > 1e-4
    np.testing.assert_allclose(ours[resolved], theirs[resolved], rtol=1e-2)


def test_kr_adjustment_is_resolved_where_pbkrtest_resolves_it(fits):
    """The code's KR se differ from its unadjusted se by pbkrtest's relative gap (within 1e-5):
    more than 1e-4 in at least four cases, so the comparison above is not vacuous."""
    resolved = 0
    for key, case in KR.items():
        fit = fits(key)
        ours = fit.coef_table(ddf="kenward-roger")["std_error"].to_numpy() / fit.se().to_numpy() - 1
        theirs = np.array(case["se_kenward_roger"]) / np.array(case["se"]) - 1
        np.testing.assert_allclose(ours, theirs, atol=1e-5, err_msg=key)
        resolved += ours.max() > 1e-4
    assert resolved >= 4


@pytest.mark.parametrize("key, formula, dataset", DDF_CASES)
def test_kenward_roger_matches_the_shared_reference(key, formula, dataset):
    ref = PUBLIC[key]
    table = blm.LMM(formula, blm.datasets.load(dataset)).fit().coef_table(ddf="kenward-roger")
    np.testing.assert_allclose(table["std_error"], ref["se_kenward_roger"], rtol=1e-3)
    np.testing.assert_allclose(table["df"], ref["df_kenward_roger"], rtol=1e-3)


def test_balanced_sleepstudy_kr_df_is_exactly_17():
    """One balanced grouping factor, a within-subject contrast: KR's df is G − 1 = 17 exactly."""
    fit = blm.LMM("Reaction ~ Days + (Days | Subject)", blm.datasets.load("sleepstudy")).fit()
    np.testing.assert_allclose(fit.coef_table(ddf="kenward-roger")["df"], 17.0, rtol=1e-7)


def _check_anova(table, ref):
    assert list(table.columns) == ANOVA_COLUMNS
    assert list(table.index) == list(np.atleast_1d(ref["terms"]))
    assert table["NumDF"].tolist() == list(np.atleast_1d(ref["NumDF"]))
    np.testing.assert_allclose(table["F value"], ref["F"], rtol=1e-4)
    np.testing.assert_allclose(table["Sum Sq"], ref["SumSq"], rtol=1e-4)
    np.testing.assert_allclose(table["Mean Sq"], ref["MeanSq"], rtol=1e-4)
    np.testing.assert_allclose(table["DenDF"], ref["DenDF"], rtol=1e-3)
    np.testing.assert_allclose(table["Pr(>F)"], ref["p"], rtol=1e-3)


ANOVA_CASES = [k for k in KR if KR[k]["anova_satterthwaite"]["terms"]]


@pytest.mark.parametrize("key", ANOVA_CASES)
@pytest.mark.parametrize("method, field", [("kenward-roger", "anova_kenward_roger"),
                                           ("satterthwaite", "anova_satterthwaite")])
def test_type3_anova_matches_lmertest(key, method, field, fits):
    table = fits(key).anova(type=3, ddf=method)
    _check_anova(table, KR[key][field])
    assert table.attrs["heading"].startswith("Type III Analysis of Variance Table")


@pytest.mark.parametrize("key", ["sleep_period_group", "sitka_time_treat"])
def test_type1_anova_matches_lmertest(key, fits):
    _check_anova(fits(key).anova(type=1), KR[key]["anova_type1_satterthwaite"])


@pytest.mark.parametrize("key, formula, dataset", DDF_CASES)
def test_type3_anova_matches_the_shared_reference(key, formula, dataset):
    ref = PUBLIC[key]["anova_type3"]
    table = blm.LMM(formula, blm.datasets.load(dataset)).fit().anova()
    np.testing.assert_allclose(table["F value"], ref["F"], rtol=1e-4)
    np.testing.assert_allclose(table["DenDF"], ref["DenDF"], rtol=1e-3)
    np.testing.assert_allclose(table["Pr(>F)"], ref["p"], rtol=1e-3)


def test_intercept_only_model_has_an_empty_table(fits):
    table = fits("pastes_nested").anova(ddf="kenward-roger")
    assert table.empty and list(table.columns) == ANOVA_COLUMNS


def test_type3_time_is_the_averaged_slope_not_the_coefficient(fits):
    """Sitka: time's type-3 hypothesis is β_time + ½β_time:treat (F 2191.9), while t² = 938.1;
    treat and time:treat are unit contrasts, so there F = t² with the coefficient's df."""
    fit = fits("sitka_time_treat")
    for method in ("satterthwaite", "kenward-roger"):
        table, coefs = fit.anova(ddf=method), fit.coef_table(ddf=method)
        assert table.loc["time", "F value"] > 2 * coefs.loc["time", "statistic"] ** 2
        for term, coef in [("treat", "treat[ozone]"), ("time:treat", "time:treat[ozone]")]:
            assert table.loc[term, "F value"] == pytest.approx(coefs.loc[coef, "statistic"] ** 2, rel=1e-8)
            assert table.loc[term, "DenDF"] == pytest.approx(coefs.loc[coef, "df"], rel=1e-6)
    np.testing.assert_allclose(table.attrs["hypotheses"]["time"], [[0, 1, 0, 0.5]], atol=1e-12)


def test_tests_do_not_depend_on_row_order_or_factor_coding(fits):
    case = KR["sleep_period_group"]
    data = case_data(case)
    base = fits("sleep_period_group")
    shuffled = data.sample(frac=1.0, random_state=3)
    recoded = data.assign(group=data["group"].map({"A": "Z", "B": "B"}),  # reference level becomes B
                          period=data["period"].map({"early": "p3", "mid": "p2", "late": "p1"}))
    for other in (shuffled, recoded):
        fit = blm.LMM(case["formula"], other).fit()
        kr, kr_base = fit.anova(ddf="kenward-roger"), base.anova(ddf="kenward-roger")
        np.testing.assert_allclose(kr.to_numpy(), kr_base.to_numpy(), rtol=1e-5)
    kr_shuffled = blm.LMM(case["formula"], shuffled).fit().coef_table(ddf="kenward-roger")
    np.testing.assert_allclose(kr_shuffled.to_numpy(), base.coef_table(ddf="kenward-roger").to_numpy(), rtol=1e-6)


def test_dense_path_equals_the_per_group_path(fits):
    """The several-factor path (all random effects in one dense block) on a one-factor model."""
    fit = fits("sleep_days_group")
    per_group = ddf.kenward_roger(fit)
    dense = ddf.assemble_blocks(ddf.dense_blocks(fit))
    np.testing.assert_allclose(dense.phi_adjusted, per_group.phi_adjusted, rtol=1e-9)
    np.testing.assert_allclose(dense.W, per_group.W, rtol=1e-7)


def test_bad_input(fits):
    fit = fits("sitka_time_treat")
    with pytest.raises(blm.LMMError, match="type must be 3"):
        fit.anova(type=2)
    with pytest.raises(blm.LMMError, match="ddf must be one of"):
        fit.anova(ddf="containment")
    with pytest.raises(blm.LMMError, match="satterthwaite' or 'kenward-roger"):
        fit.anova(ddf="asymptotic")
    ml = fit.refit("ML")
    with pytest.raises(blm.LMMError, match="REML"):
        ml.coef_table(ddf="kenward-roger")
    with pytest.raises(blm.LMMError, match="REML"):
        ml.anova(ddf="kenward-roger")
    assert np.isfinite(ml.anova(ddf="satterthwaite")["DenDF"]).all()  # Satterthwaite works for ML fits


def test_residual_structures_have_both_methods():
    """Compound symmetry as a residual structure is the random-intercept model in other
    coordinates. Satterthwaite's df are invariant under reparametrisation (gradient and inverse
    observed information transform together at the optimum), and KR's df depend on first
    derivatives of V only: both must be lmerTest's / pbkrtest's for (1 | tree)."""
    sitka, ref = blm.datasets.load("Sitka"), PUBLIC["sitka_satterthwaite"]
    fit = blm.LMM("size ~ time * treat", sitka, residual="cs(tree)").fit()
    np.testing.assert_allclose(fit.coef_table()["df"], ref["df_satterthwaite"], rtol=1e-3)
    np.testing.assert_allclose(fit.coef_table(ddf="kenward-roger")["df"], ref["df_kenward_roger"], rtol=1e-3)
    np.testing.assert_allclose(fit.anova(ddf="satterthwaite")["DenDF"], ref["anova_type3"]["DenDF"], rtol=1e-3)
    np.testing.assert_allclose(fit.anova(ddf="satterthwaite")["F value"], ref["anova_type3"]["F"], rtol=1e-4)
    # with AR(1) errors too, a one-df F test is the t test of its coefficient, in both methods
    ar1 = blm.LMM("size ~ time * treat + (1 | tree)", sitka, residual="ar1(visit | tree)").fit()
    for method in ("satterthwaite", "kenward-roger"):
        table, coefs = ar1.anova(ddf=method), ar1.coef_table(ddf=method)
        for term, coef in [("treat", "treat[ozone]"), ("time:treat", "time:treat[ozone]")]:
            assert table.loc[term, "F value"] == pytest.approx(coefs.loc[coef, "statistic"] ** 2, rel=1e-8)
            assert table.loc[term, "DenDF"] == pytest.approx(coefs.loc[coef, "df"], rel=1e-6)


def test_without_random_effects_kr_is_the_exact_ols_test():
    """V = σ²I: Φ_A = Φ and the KR df are n − p exactly, for t and for multi-df F tests."""
    sitka = blm.datasets.load("Sitka")
    fit = blm.LMM("size ~ time * treat", sitka).fit()
    table = fit.coef_table(ddf="kenward-roger")
    np.testing.assert_allclose(table["std_error"], fit.se(), rtol=1e-10)
    np.testing.assert_allclose(table["df"], fit.nobs - fit.spec.p, rtol=1e-8)
    sleep = blm.datasets.load("sleepstudy")
    one_way = blm.LMM("Reaction ~ C(Days)", sleep).fit()
    means = sleep.groupby("Days")["Reaction"].transform("mean")
    classical = (((means - sleep["Reaction"].mean()) ** 2).sum() / 9) / (((sleep["Reaction"] - means) ** 2).sum() / 170)
    for method in ("kenward-roger", "satterthwaite"):
        f = one_way.anova(ddf=method)
        assert f["NumDF"].tolist() == [9] and f["DenDF"].iloc[0] == pytest.approx(170, rel=1e-6)
        assert f["F value"].iloc[0] == pytest.approx(classical, rel=1e-8)
