"""anova: likelihood-ratio tables against nlme's anova (shared reference) and the seed's boundary p-value."""
from __future__ import annotations

import numpy as np
import pytest

import bayeslmm as blm
from conftest import DDF_CASES, PUBLIC


@pytest.fixture(scope="module")
def sitka():
    return blm.datasets.load("Sitka")


def test_treatment_lrt_by_ml(sitka):
    ref = PUBLIC["sitka_lrt_treat_ml"]
    small = blm.LMM("size ~ time + (1 | tree)", sitka).fit("ML")
    large = blm.LMM("size ~ time * treat + (1 | tree)", sitka).fit("ML")
    table = blm.anova(small, large)
    assert list(table.columns) == ["npar", "AIC", "BIC", "logLik", "deviance", "Chisq", "Df", "Pr(>Chisq)"]
    np.testing.assert_allclose(table["logLik"], ref["logLik"], atol=1e-5)
    np.testing.assert_allclose(table["AIC"], ref["AIC"], atol=1e-4)
    np.testing.assert_allclose(table["BIC"], ref["BIC"], atol=1e-4)  # ML: nlme's BIC counts n, as we do
    assert table["npar"].tolist() == ref["df"]
    assert table["Chisq"].iloc[1] == pytest.approx(ref["chisq"][1], abs=1e-4)
    assert table["Pr(>Chisq)"].iloc[1] == pytest.approx(0.000267, abs=1e-6)
    assert "Pr(>Chisq) boundary" not in table


def test_random_slope_lrt_by_reml_with_boundary_p_value(sitka):
    ref = PUBLIC["sitka_lrt_slope_reml"]
    small = blm.LMM("size ~ time + (1 | tree)", sitka).fit()
    large = blm.LMM("size ~ time + (time | tree)", sitka).fit()
    table = blm.anova(small, large, names=["intercept", "slope"])
    np.testing.assert_allclose(table["logLik"], ref["logLik"], atol=1e-5)
    assert table["Chisq"].iloc[1] == pytest.approx(ref["chisq"][1], abs=1e-4)
    # the seed: 0.5 * P(χ²₁ > x) + 0.5 * P(χ²₂ > x) = 1.273288e-09
    assert table["Pr(>Chisq) boundary"].iloc[1] == pytest.approx(1.273288e-09, rel=1e-5)
    assert "0.5·χ²(1) + 0.5·χ²(2)" in table.attrs["note"] and list(table.index) == ["intercept", "slope"]


def test_one_variance_uses_the_half_chi2_1_mixture(sitka):
    small = blm.LMM("size ~ time", sitka).fit()
    large = blm.LMM("size ~ time + (1 | tree)", sitka).fit()
    table = blm.anova(small, large)
    x = table["Chisq"].iloc[1]
    from scipy import stats
    assert table["Pr(>Chisq) boundary"].iloc[1] == pytest.approx(0.5 * stats.chi2.sf(x, 1))


def test_reml_fits_with_different_fixed_effects_are_refitted_by_ml(sitka):
    small = blm.LMM("size ~ time + (1 | tree)", sitka).fit()
    large = blm.LMM("size ~ time * treat + (1 | tree)", sitka).fit()
    with pytest.warns(UserWarning, match="refitting"):
        table = blm.anova(small, large)
    np.testing.assert_allclose(table["logLik"], PUBLIC["sitka_lrt_treat_ml"]["logLik"], atol=1e-5)


def test_models_of_different_data_or_responses(sitka):
    a = blm.LMM("size ~ time + (1 | tree)", sitka).fit()
    b = blm.LMM("size ~ time + (1 | tree)", sitka.iloc[:300]).fit()
    with pytest.raises(blm.LMMError, match="different rows"):
        blm.anova(a, b)
    c = blm.LMM("time ~ size + (1 | tree)", sitka).fit()
    with pytest.raises(blm.LMMError, match="different responses"):
        blm.anova(a, c)
    with pytest.raises(blm.LMMError, match="at least two"):
        blm.anova(a)


@pytest.mark.parametrize("key, formula, dataset", DDF_CASES)
def test_satterthwaite_matches_lmertest(key, formula, dataset):
    """df and p within 1e-3 relative of lmerTest 3.1-3 (shared reference)."""
    ref = PUBLIC[key]
    table = blm.LMM(formula, blm.datasets.load(dataset)).fit().coef_table(ddf="satterthwaite")
    assert list(table.columns) == ["estimate", "std_error", "statistic", "df", "p_value", "conf_low", "conf_high"]
    np.testing.assert_allclose(table["estimate"], ref["estimate"], rtol=1e-5)
    np.testing.assert_allclose(table["std_error"], ref["se"], rtol=1e-4)
    np.testing.assert_allclose(table["statistic"], ref["t"], rtol=1e-4)
    np.testing.assert_allclose(table["df"], ref["df_satterthwaite"], rtol=1e-3)
    np.testing.assert_allclose(table["p_value"], ref["p"], rtol=1e-3)
    from scipy import stats
    half_width = stats.t.ppf(0.975, table["df"]) * table["std_error"]
    np.testing.assert_allclose(table["conf_high"] - table["estimate"], half_width)


def test_coef_table_bad_input(sitka):
    fit = blm.LMM("size ~ time + (1 | tree)", sitka).fit()
    assert np.all(np.isinf(fit.coef_table(ddf="asymptotic")["df"]))
    with pytest.raises(blm.LMMError, match="level"):
        fit.coef_table(level=1.5)
    with pytest.raises(blm.LMMError, match="ddf"):
        fit.coef_table(ddf="kenward")


def test_profile_intervals_match_lme4():
    """lme4's confint(profile(fit), oldNames = FALSE) on sleepstudy, within 1e-3 relative."""
    ref = PUBLIC["sleepstudy_profile_ci"]
    fit = blm.LMM("Reaction ~ Days + (Days | Subject)", blm.datasets.load("sleepstudy")).fit()
    table = fit.confint(method="profile")
    assert list(table.index) == ref["params"] and list(table.columns) == ["lower", "upper"]
    np.testing.assert_allclose(table["lower"], ref["lower"], rtol=1e-3)
    np.testing.assert_allclose(table["upper"], ref["upper"], rtol=1e-3)


def test_wald_intervals_and_bad_input(sitka):
    fit = blm.LMM("size ~ time + (1 | tree)", sitka).fit()
    wald = fit.confint(method="wald", level=0.9)
    np.testing.assert_allclose(wald.loc["time", "upper"] - fit.fixef()["time"], 1.6448536 * fit.se()["time"], rtol=1e-6)
    assert wald.loc["sigma"].isna().all()
    with pytest.raises(blm.LMMError, match="level"):
        fit.confint(level=0)
    with pytest.raises(blm.LMMError, match="method"):
        fit.confint(method="jackknife")  # "bootstrap" exists now: tests/inference/test_bootstrap.py


def test_profile_of_a_singular_fit_reports_the_boundary():
    """A zero variance (group means all equal) gets 0 as its lower limit, no crash."""
    import warnings

    import pandas as pd

    rng = np.random.default_rng(4)
    noise = rng.normal(size=(12, 6))
    y = (noise - noise.mean(axis=1, keepdims=True)).ravel() + 5.0
    data = pd.DataFrame({"y": y, "g": np.repeat([f"g{i}" for i in range(12)], 6)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = blm.LMM("y ~ 1 + (1 | g)", data).fit()
        table = fit.confint()
    assert fit.is_singular
    assert table.loc["sd_(Intercept)|g", "lower"] == 0.0 and table.loc["sd_(Intercept)|g", "upper"] > 0
    assert np.all(np.isfinite(table.to_numpy()))


def test_variance_components_table():
    fit = blm.LMM("Yield ~ 1 + (1 | Batch)", blm.datasets.load("Dyestuff")).fit()
    table = fit.variance_components()
    assert list(table.columns) == ["group", "effect", "variance", "sd", "sd_lower", "sd_upper", "var_prop", "icc"]
    assert table["group"].tolist() == ["Batch", "Residual"]
    assert table["var_prop"].sum() == pytest.approx(1.0)
    batch = table.iloc[0]
    assert batch["icc"] == pytest.approx(batch["variance"] / (batch["variance"] + fit.sigma**2))
    assert batch["sd_lower"] < batch["sd"] < batch["sd_upper"]
    # lme4 1.1.31 (R 4.2.2, Debian), made on 2026-11-21 with
    # Rscript -e 'library(lme4); confint(lmer(Yield ~ 1 + (1|Batch), Dyestuff), oldNames = FALSE)':
    # sd_(Intercept)|Batch 12.19853521 84.06304671 (lme4 interpolates its profile with splines)
    assert batch["sd_lower"] == pytest.approx(12.19853521, rel=1e-3)
    assert batch["sd_upper"] == pytest.approx(84.06304671, rel=1e-3)
