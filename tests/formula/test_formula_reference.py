"""Formula features against lme4 (tests/reference/make_formula_reference.R): offset(), I(), poly()
with predictions on new data, log() of the response, level order, sum and treatment contrasts.

Tolerances of the issue: logLik 1e-5 absolute, fixed effects 1e-5 relative; standard errors
and sigma 1e-4 relative, predictions 1e-6 relative.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import bayeslmm as blm
from conftest import REPO, _load

CASES = _load("formula_reference.json")
FORMULAS = [(case_id, formula) for case_id, case in CASES.items() for formula in case["python_formulas"]]


def formula_data() -> pd.DataFrame:
    data = pd.read_csv(REPO / "tests" / "data" / "formula_sleep.csv")
    data["dose_text"] = data["dose"]
    data["dose"] = pd.Categorical(data["dose"], categories=["low", "mid", "high"])  # not alphabetical
    return data


@pytest.fixture(scope="module")
def data():
    return formula_data()


@pytest.mark.parametrize("case_id, formula", FORMULAS)
def test_fit_equals_lme4(case_id, formula, data):
    case = CASES[case_id]
    fit = blm.LMM(formula, data).fit("REML" if case["REML"] else "ML")
    assert fit.loglik == pytest.approx(case["loglik"], abs=1e-5)
    np.testing.assert_allclose(fit.fixef().to_numpy(), case["fixef"], rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(fit.se().to_numpy(), case["se"], rtol=1e-4)
    assert fit.sigma == pytest.approx(case["sigma"], rel=1e-4)


def test_the_first_category_is_the_reference(data):
    fit = blm.LMM("Reaction ~ dose + (1 | Subject)", data).fit()
    assert list(fit.fixef().index) == ["(Intercept)", "dose[mid]", "dose[high]"]


def test_poly_predictions_on_new_data_use_the_training_basis(data):
    case = CASES["poly"]
    fit = blm.LMM(case["python_formulas"][0], data).fit()
    newdata = pd.DataFrame(case["newdata"])
    np.testing.assert_allclose(fit.predict(newdata, include_re=False), case["predict_population"], rtol=1e-6)
    np.testing.assert_allclose(fit.predict(newdata), case["predict_conditional"], rtol=1e-6)
    assert list(fit.fixef().index) == case["fixef_names"]  # poly(Days, 2)1, poly(Days, 2)2 as in R


def test_offset_is_added_to_fitted_values_and_predictions(data):
    fit = blm.LMM("Reaction ~ Days + offset(off) + (Days | Subject)", data).fit()
    without = blm.LMM("Reaction ~ Days + (Days | Subject)", data).fit()
    # the offset 0.5·Days + 3 is absorbed exactly: same fitted values, shifted coefficients
    np.testing.assert_allclose(fit.fitted(), without.fitted(), rtol=1e-6)
    np.testing.assert_allclose(fit.fixef().to_numpy(), without.fixef().to_numpy() - [3, 0.5], rtol=1e-6)
    rows = data.iloc[[0, 11, 25]].copy()
    rows["off"] = [0.0, 10.0, -5.0]
    expected = without.predict(rows, include_re=False) - 0.5 * rows["Days"] - 3 + rows["off"]
    np.testing.assert_allclose(fit.predict(rows, include_re=False), expected, rtol=1e-6)
    np.testing.assert_allclose(fit.residuals(), data["Reaction"] - fit.fitted(), atol=1e-9)
    # an offset is evaluated as R evaluates a call's argument: '/' is division, not nesting
    scaled = blm.LMM("Reaction ~ Days + offset(off * 2 / 2) + (Days | Subject)", data).fit()
    np.testing.assert_allclose(scaled.fixef(), fit.fixef(), rtol=1e-8)


@pytest.mark.filterwarnings("ignore::bayeslmm.PosteriorWarning")  # a short run: diagnostics are not the point
def test_the_bayesian_fit_honours_the_offset(data):
    model = blm.LMM("Reaction ~ Days + offset(off) + (Days | Subject)", data)
    post = model.fit(method="NUTS", draws=200, tune=300, chains=2, random_seed=5, progressbar=False)
    reml = model.fit()
    np.testing.assert_allclose(post.idata["observed_data"]["y"].values, data["Reaction"])
    assert post.fixef()["mean"]["Days"] == pytest.approx(reml.fixef()["Days"], abs=1.0)  # posterior sd ≈ 1.6
    rows = data.iloc[[0, 11]].copy()
    rows["off"] = [0.0, 100.0]
    shifted = post.predict(rows, include_re=False, random_seed=1)["mean"].to_numpy()
    rows["off"] = [0.0, 0.0]
    plain = post.predict(rows, include_re=False, random_seed=1)["mean"].to_numpy()
    np.testing.assert_allclose(shifted - plain, [0.0, 100.0], atol=1e-9)
    fitted = post.predict(random_seed=1)["mean"].to_numpy()
    assert np.abs(fitted - reml.fitted().to_numpy()).max() < 5  # σ ≈ 25.6: offset included in both
