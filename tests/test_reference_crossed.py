"""Crossed and nested designs with random slopes against lme4 1.1-31 (issue 12), REML and ML.

References: tests/reference/crossed_reference.json, made by make_crossed_reference.R from the
CSVs of make_crossed_data.py.  Tolerances of the core issue: log-likelihood 1e-5 absolute,
fixed effects 1e-5 relative, standard errors and σ 1e-4 relative, random-effect sds 1e-3
relative at interior optima, compared with lme4's tight refit (bobyqa, rhoend 1e-10) where
θ matters, since lme4's default optimizer stops with θ good to ~1e-5.  At the singular optimum
of the maximal design the parameters are not identified: only the log-likelihood is compared,
and ours must reach lme4's (the better of its two fits) within 1e-6.
"""
from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest

import bayeslmm as blm
from conftest import TESTS, case_data

CASES = json.loads((TESTS / "reference" / "crossed_reference.json").read_text())
INTERIOR = ["crossed_slopes_reml", "crossed_slopes_ml", "schools_hoods_reml", "schools_hoods_ml"]
SINGULAR = ["crossed_maximal_reml", "crossed_maximal_ml"]


def fit_case(case: dict) -> blm.LMMResult:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a singular fit warns; convergence is asserted below
        return blm.LMM(case["formula"], case_data(case)).fit(method=case["method"])


@pytest.fixture(scope="module", params=INTERIOR)
def interior(request):
    case = CASES[request.param]
    return case, fit_case(case)


def test_the_references_are_what_the_tests_assume():
    assert all(not CASES[name]["singular"] and CASES[name]["lme4_converged"] for name in INTERIOR)
    assert all(CASES[name]["singular"] for name in SINGULAR)


def test_loglik_and_groups(interior):
    case, fit = interior
    assert fit.converged
    assert abs(fit.loglik - case["logLik"]) <= 1e-5
    assert fit.nobs == case["nobs"]
    assert fit.ngrps == case["ngrps"]
    assert not fit.is_singular


def test_fixed_effects_and_standard_errors(interior):
    case, fit = interior
    tight = case["tight_refit"]
    assert list(fit.fixef().index) == list(tight["fixef"])
    np.testing.assert_allclose(fit.fixef().to_numpy(), list(tight["fixef"].values()), rtol=1e-5)
    np.testing.assert_allclose(fit.se().to_numpy(), list(tight["se"].values()), rtol=1e-4)
    np.testing.assert_allclose(fit.sigma, tight["sigma"], rtol=1e-4)


def test_variance_components(interior):
    case, fit = interior
    ours, ref = fit.varcorr(), pd.DataFrame(case["tight_refit"]["varcorr"])
    for column in ("grp", "var1", "var2"):
        assert list(ours[column].fillna("")) == list(ref[column].fillna(""))
    sd_rows = ref["var2"].isna().to_numpy()
    np.testing.assert_allclose(ours["sdcor"][sd_rows], ref["sdcor"][sd_rows], rtol=1e-3)
    np.testing.assert_allclose(ours["sdcor"][~sd_rows], ref["sdcor"][~sd_rows], atol=1e-3)


@pytest.mark.parametrize("name", SINGULAR)
def test_the_maximal_singular_fit_reaches_lme4s_loglik(name):
    case = CASES[name]
    fit = fit_case(case)
    best = max(case["logLik"], case["tight_refit"]["logLik"])
    assert fit.loglik >= best - 1e-6
    assert fit.is_singular
