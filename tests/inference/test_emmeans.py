"""Estimated marginal means and contrasts against R's emmeans (tests/reference/emmeans_reference.json,
made by make_emmeans_reference.R), bad input, and the posterior's means as linear functions of β."""
from __future__ import annotations

import functools
import json
import warnings

import numpy as np
import pandas as pd
import pytest

import bayeslmm as blm
from bayeslmm.inference.emmeans import shortest_interval
from bayeslmm.inference.multiplicity import holm
from bayeslmm.inference.reference_grid import contrasts, marginal_means
from conftest import REPO, TESTS

REFERENCE = json.loads((TESTS / "reference" / "emmeans_reference.json").read_text())
CALLS = [(case_id, index) for case_id, case in REFERENCE.items() for index in range(len(case["calls"]))]
LABEL_COLUMNS = ("contrast",)
RELATIVE = {"emmean": 1e-6, "SE": 1e-6, "lower.CL": 1e-6, "upper.CL": 1e-6, "asymp.LCL": 1e-6, "asymp.UCL": 1e-6,
            "df": 1e-4}
# nlme's gls and bayeslmm reach the unstructured fit's optimum to 1e-8 in the log-likelihood (ours
# higher, −544.954423529 against −544.954423538) on a flat surface, so β differs by up to 1e-5
# relative: its numbers are compared to 3e-5; its linear functions, exact, like every case's
FIT_LIMITED = {"mmrm_unstructured": 3e-5}


@functools.cache
def reference_fit(case_id: str):
    case = REFERENCE[case_id]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", blm.SingularFitWarning)
        return blm.LMM(case["python_formula"], pd.read_csv(REPO / case["data_file"]),
                       residual=case["python_residual"]).fit()


def our_table(case_id: str, call: dict) -> pd.DataFrame:
    fit = reference_fit(case_id)
    grid = dict(by=call["by"] or None, at=call["at"] or None, ddf=call["ddf"])
    if call["kind"] == "emmeans":
        return fit.emmeans(call["specs"], **grid)
    return fit.contrasts(call["specs"], method=call["method"], adjust=call["adjust"], **grid)


def numbers(values) -> np.ndarray:
    return np.array([np.inf if value == "Inf" else value for value in values], dtype=float)


@pytest.mark.parametrize("case_id, index", CALLS, ids=[f"{c}-{i}" for c, i in CALLS])
def test_linear_functions_are_emmeans(case_id, index):
    """The reference grid itself: each mean's or contrast's l (emmeans' linfct) to 1e-10,
    whatever the precision of the fit."""
    call = REFERENCE[case_id]["calls"][index]
    means = marginal_means(reference_fit(case_id).spec, call["specs"], by=call["by"], at=call["at"] or None)
    L = means.L if call["kind"] == "emmeans" else contrasts(means, call["method"]).L
    expected = np.array(call["linfct"], dtype=float)
    np.testing.assert_allclose(L, expected, rtol=1e-10, atol=1e-10 * np.abs(expected).max())


@pytest.mark.parametrize("case_id, index", CALLS, ids=[f"{c}-{i}" for c, i in CALLS])
def test_matches_emmeans(case_id, index):
    """Every column of emmeans' table: labels exactly, estimates and SE to 1e-6 relative, df to
    1e-4; a contrast's estimate relative to the larger of itself and its SE (a difference near 0
    has no relative precision), t to 1e-6 of max(|t|, 1), p values to 1e-4 relative or 1e-8."""
    call = REFERENCE[case_id]["calls"][index]
    ours = our_table(case_id, call)
    limit = FIT_LIMITED.get(case_id, 1e-6)
    assert list(ours.columns) == list(call["table"])
    for column, expected in call["table"].items():
        got = ours[column]
        if column in LABEL_COLUMNS or isinstance(expected[0], str) and expected[0] != "Inf":
            assert [str(value) for value in got] == [str(value) for value in expected], column
            continue
        expected, got = numbers(expected), got.to_numpy(dtype=float)
        if column in RELATIVE:
            rtol = RELATIVE[column] if column == "df" else max(RELATIVE[column], limit)
            np.testing.assert_allclose(got, expected, rtol=rtol, atol=0, err_msg=column)
        elif column == "estimate":
            scale = np.maximum(np.abs(expected), numbers(call["table"]["SE"]))
            assert np.all(np.abs(got - expected) <= limit * scale), column
        elif column in ("t.ratio", "z.ratio"):
            assert np.all(np.abs(got - expected) <= limit * np.maximum(np.abs(expected), 1)), column
        elif column == "p.value":
            np.testing.assert_allclose(got, expected, rtol=max(1e-4, 10 * limit), atol=1e-8, err_msg=column)
        else:  # a covariate's value in the grid
            np.testing.assert_allclose(got, expected, rtol=1e-12, err_msg=column)


def test_the_reference_covers_the_brief():
    """Both df methods, both contrast methods, every adjustment, a covariate at chosen values."""
    calls = [call for case in REFERENCE.values() for call in case["calls"]]
    assert {call["ddf"] for call in calls} == {"satterthwaite", "kenward-roger", "asymptotic"}
    assert {call["method"] for call in calls} >= {"pairwise", "trt.vs.ctrl"}
    assert {call["adjust"] for call in calls} >= {None, "none", "bonferroni", "holm", "sidak"}
    assert any("time" in call["at"] and "time" in call["by"] for call in calls)


# --- the grid and its text forms ---------------------------------------------------------------


@pytest.fixture(scope="module")
def sitka_fit():
    return blm.LMM("size ~ time * treat + (1 | tree)", blm.datasets.load("Sitka")).fit()


def test_spec_text_forms_agree(sitka_fit):
    at = {"time": [152, 258]}
    listed = sitka_fit.emmeans(["treat"], by="time", at=at)
    pd.testing.assert_frame_equal(sitka_fit.emmeans("~ treat | time", at=at), listed)
    pd.testing.assert_frame_equal(sitka_fit.emmeans("treat * time", at=at),
                                  sitka_fit.emmeans(["treat", "time"], at=at))


def test_means_average_the_grid_with_equal_weights(sitka_fit):
    """A mean over several times is the average of the means at each time (equal weights)."""
    at = {"time": [152, 201.5, 258]}
    by_time = marginal_means(sitka_fit.spec, "treat", by="time", at=at)
    pooled = marginal_means(sitka_fit.spec, "treat", at=at)
    np.testing.assert_allclose(pooled.L, by_time.L.reshape(3, 2, -1).mean(axis=0))


def test_holm_is_step_down_bonferroni():
    p = np.array([0.01, 0.04, 0.03, 0.2])
    np.testing.assert_allclose(holm(p), [0.04, 0.09, 0.09, 0.2])


# --- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize("call, message", [
    (lambda fit: fit.emmeans("dose"), "'dose' is not a predictor of the fixed part; its predictors are 'time', 'treat'"),
    (lambda fit: fit.emmeans("treat", by="tree"), "'tree' is not a predictor"),
    (lambda fit: fit.emmeans("treat", at={"height": [1]}), "at= names 'height', not a predictor"),
    (lambda fit: fit.emmeans("treat", at={"treat": ["none"]}), "not among its levels control, ozone"),
    (lambda fit: fit.emmeans("treat", at={"time": ["early"]}), "numbers"),
    (lambda fit: fit.emmeans("treat", ddf="KR"), "ddf must be one of 'satterthwaite'"),
    (lambda fit: fit.emmeans(3), "specs must be a variable name"),
    (lambda fit: fit.emmeans("treat", by="treat"), "once in specs and by"),
    (lambda fit: fit.contrasts("treat", method="revpairwise"), "method must be one of 'pairwise', 'trt.vs.ctrl'"),
    (lambda fit: fit.contrasts("treat", adjust="scheffe"), "adjust must be one of 'tukey', 'dunnettx'"),
    (lambda fit: fit.contrasts("treat", method="trt.vs.ctrl", adjust="tukey"), "'tukey' is for pairwise"),
])
def test_bad_input_names_the_problem_and_what_works(sitka_fit, call, message):
    with pytest.raises(blm.LMMError, match=message.replace("(", r"\(").replace(")", r"\)")):
        call(sitka_fit)


def test_models_without_means_are_refused():
    data = blm.datasets.load("sleepstudy")
    with pytest.raises(blm.LMMError, match="offset"):
        blm.LMM("Reaction ~ Days + offset(Days) + (1 | Subject)", data).fit().emmeans("Days")


# --- posteriors --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sitka_posterior():
    model = blm.LMM("size ~ time * treat + (1 | tree)", blm.datasets.load("Sitka"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.fit(method="NUTS", draws=200, tune=300, chains=2, random_seed=5, progressbar=False)


def beta_draws(post) -> np.ndarray:
    return post.posterior["beta"].to_numpy().reshape(-1, post.spec.p)


def test_posterior_means_are_the_linear_function_of_the_mean_beta(sitka_posterior):
    at = {"time": [152, 258]}
    table = sitka_posterior.emmeans("treat", by="time", at=at, point="mean", interval="eti")
    L = marginal_means(sitka_posterior.spec, "treat", by="time", at=at).L
    draws = beta_draws(sitka_posterior)
    np.testing.assert_allclose(table["emmean"], L @ draws.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(table[["lower.ETI", "upper.ETI"]].to_numpy(),
                               np.quantile(draws @ L.T, [0.025, 0.975], axis=0).T, rtol=1e-12)


def test_posterior_contrasts_are_differences_of_draws(sitka_posterior):
    table = sitka_posterior.contrasts("treat", level=0.9)
    assert list(table.columns) == ["contrast", "estimate", "lower.HPD", "upper.HPD"]
    L = marginal_means(sitka_posterior.spec, "treat").L
    difference = beta_draws(sitka_posterior) @ (L[0] - L[1])
    assert table["contrast"].tolist() == ["control - ozone"]
    np.testing.assert_allclose(table["estimate"], np.median(difference), rtol=1e-12)
    inside = (difference >= table["lower.HPD"][0]) & (difference <= table["upper.HPD"][0])
    assert inside.mean() == pytest.approx(0.9, abs=1.5 / difference.size)


def test_hpd_is_the_shortest_interval_with_the_level():
    draws = np.random.default_rng(1).gamma(2.0, size=(4000, 1))
    lower, upper = shortest_interval(draws, 0.8)
    assert np.mean((draws >= lower) & (draws <= upper)) == pytest.approx(0.8, abs=1e-3)
    equal_tailed = np.quantile(draws, [0.1, 0.9])
    assert upper - lower < equal_tailed[1] - equal_tailed[0]
    assert lower[0] < equal_tailed[0]  # a right-skewed posterior's HPD sits to the left


def test_means_do_not_depend_on_the_coding(sitka_fit):
    """The same model coded otherwise (a scaled covariate, sum-to-zero contrasts) has the same
    marginal means, SEs and contrasts: the grid is built from the data columns, coded by each
    model's own formula."""
    recoded = blm.LMM("size ~ scale(time) * C(treat, Sum) + (1 | tree)", blm.datasets.load("Sitka")).fit()
    at = {"time": [152, 258]}
    for ddf in ("kenward-roger", "asymptotic"):
        pd.testing.assert_frame_equal(recoded.emmeans("treat", by="time", at=at, ddf=ddf),
                                      sitka_fit.emmeans("treat", by="time", at=at, ddf=ddf), rtol=1e-6)
    pd.testing.assert_frame_equal(recoded.contrasts("treat", at=at, ddf="asymptotic"),
                                  sitka_fit.contrasts("treat", at=at, ddf="asymptotic"), rtol=1e-6)
