"""Bad input gets an LMMError that names the problem; cleaning is counted; data never change."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import bayeslmm as blm
from conftest import REPO


def test_lmm_error_is_a_value_error():
    assert issubclass(blm.LMMError, ValueError)


def test_unknown_column_is_named_with_near_matches(sleepstudy):
    with pytest.raises(blm.LMMError, match=r"'Day'.*'Days'"):
        blm.LMM("Reaction ~ Day + (1 | Subject)", sleepstudy)
    with pytest.raises(blm.LMMError, match="'Subjet'"):
        blm.LMM("Reaction ~ Days + (1 | Subjet)", sleepstudy)


def test_non_numeric_response(sleepstudy):
    with pytest.raises(blm.LMMError, match="must be numeric"):
        blm.LMM("Subject ~ Days + (1 | Subject)", sleepstudy)


def test_grouping_factor_with_one_level(sleepstudy):
    data = sleepstudy.assign(one="a")
    with pytest.raises(blm.LMMError, match="only 1 level"):
        blm.LMM("Reaction ~ Days + (1 | one)", data)


def test_as_many_levels_as_observations(sleepstudy):
    data = sleepstudy.assign(row=[f"r{i}" for i in range(len(sleepstudy))])
    with pytest.raises(blm.LMMError, match="180 levels for 180 observations"):
        blm.LMM("Reaction ~ Days + (1 | row)", data)


def test_infinite_values_name_the_column(sleepstudy):
    data = sleepstudy.astype({"Days": float})
    data.loc[3, "Days"] = np.inf
    with pytest.raises(blm.LMMError, match="'Days' has 1 infinite value"):
        blm.LMM("Reaction ~ Days + (1 | Subject)", data)


def test_non_finite_transform_is_named(sleepstudy):
    data = sleepstudy.assign(Reaction=sleepstudy["Reaction"] - 300)
    with pytest.raises(blm.LMMError, match="np.log"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            blm.LMM("np.log(Reaction) ~ Days + (1 | Subject)", data)


def test_empty_data(sleepstudy):
    with pytest.raises(blm.LMMError, match="no rows"):
        blm.LMM("Reaction ~ Days + (1 | Subject)", sleepstudy.iloc[:0])


def test_not_a_dataframe(sleepstudy):
    with pytest.raises(blm.LMMError, match="DataFrame"):
        blm.LMM("Reaction ~ Days + (1 | Subject)", sleepstudy.to_dict())


def test_malformed_formula(sleepstudy):
    with pytest.raises(blm.LMMError, match="malformed"):
        blm.LMM("Reaction ~ Days + (Days | )", sleepstudy)
    with pytest.raises(blm.LMMError, match="could not parse"):
        blm.LMM("Reaction ~ Days +* 2 + (1 | Subject)", sleepstudy)


def test_unknown_method(sleepstudy):
    model = blm.LMM("Reaction ~ Days + (1 | Subject)", sleepstudy)
    with pytest.raises(blm.LMMError, match="REML, ML, NUTS"):
        model.fit(method="OLS")
    assert model.fit(method="ml").method == "ML"


def test_missing_rows_are_dropped_with_a_count_and_the_fit_equals_the_clean_fit():
    data = pd.read_csv(REPO / "tests/data/missing.csv")
    with pytest.warns(UserWarning, match=r"dropped 12 of 200 rows"):
        fit = blm.LMM("y ~ x + (1 | g)", data).fit()
    clean = blm.LMM("y ~ x + (1 | g)", data.dropna(subset=["y", "x", "g"])).fit()
    assert fit.nobs == 188 and fit.loglik == pytest.approx(clean.loglik, abs=1e-10)
    np.testing.assert_allclose(fit.fixef(), clean.fixef())
    assert list(fit.fitted().index) == list(clean.fitted().index)


def test_missing_values_in_unused_columns_are_ignored(sleepstudy):
    data = sleepstudy.assign(unused=np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert blm.LMM("Reaction ~ Days + (1 | Subject)", data).spec.n == 180


def test_aliased_columns_are_dropped_with_a_warning():
    data = pd.read_csv(REPO / "tests/data/aliased.csv")
    with pytest.warns(UserWarning, match="rank deficient so dropping 1 column / coefficient: x2"):
        fit = blm.LMM("y ~ x + x2 + (1 | g)", data).fit()
    assert list(fit.fixef().index) == ["(Intercept)", "x"]


def test_callers_data_are_never_modified():
    data = pd.read_csv(REPO / "tests/data/missing.csv")
    before = data.copy(deep=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = blm.LMM("y ~ x + scale(x) + (1 | g)", data).fit()
        fit.predict(data.dropna())
    pd.testing.assert_frame_equal(data, before)


def test_new_levels_in_predict(sleepstudy):
    fit = blm.LMM("Reaction ~ Days + (Days | Subject)", sleepstudy).fit()
    new = pd.DataFrame({"Days": [0, 5], "Subject": ["308", "999"]})
    with pytest.raises(blm.LMMError, match=r"1 level\(s\) of 'Subject' not seen.*999"):
        fit.predict(new)
    predicted = fit.predict(new, allow_new_levels=True)
    population = fit.predict(new, include_re=False)
    assert predicted.iloc[1] == pytest.approx(population.iloc[1])
    assert predicted.iloc[0] != pytest.approx(population.iloc[0])


def test_predict_with_a_missing_column(sleepstudy):
    fit = blm.LMM("Reaction ~ Days + (1 | Subject)", sleepstudy).fit()
    with pytest.raises(blm.LMMError, match="could not evaluate the model's predictors on newdata: 'Days'"):
        fit.predict(pd.DataFrame({"Subject": ["308"]}))


# --- degenerate data and arguments -------------------------------------------------------


def test_constant_response(sleepstudy):
    with pytest.raises(blm.LMMError, match=r"response 'Reaction' is constant \(250 in every row\)"):
        blm.LMM("Reaction ~ Days + (1 | Subject)", sleepstudy.assign(Reaction=250.0))


def test_single_row(sleepstudy):
    with pytest.raises(blm.LMMError, match="the model has 1 observation; .*several observations"):
        blm.LMM("Reaction ~ Days + (1 | Subject)", sleepstudy.iloc[:1])


def test_as_many_random_effects_as_observations():
    """lme4: 'number of observations (=8) <= number of random effects (=12) for term (1 + x + x2 | g)'."""
    rng = np.random.default_rng(1)
    data = pd.DataFrame({"y": rng.normal(size=8), "x": rng.normal(size=8), "x2": rng.normal(size=8),
                         "g": np.repeat(list("abcd"), 2)})
    with pytest.raises(blm.LMMError, match=r"number of observations \(=8\) <= number of random effects "
                                           r"\(=12\) for term \(\(Intercept\) \+ x \+ x2 \| g\)"):
        blm.LMM("y ~ x + (1 + x + x2 | g)", data)
    with pytest.raises(blm.LMMError, match=r"\(=8\) <= number of random effects \(=8\)"):
        blm.LMM("y ~ x + (1 + x | g)", data)  # n = q is unidentifiable too (lme4: n <= q stops)


@pytest.mark.parametrize("argument, advice", [
    ({"REML": False}, r"REML=False: use fit\(method='ML'\)"),
    ({"REML": True}, r"use fit\(method='REML'\)"),
    ({"family": "binomial"}, "Gaussian linear mixed models only"),
    ({"control": {}}, "optimizer settings are not exposed"),
    ({"draw": 100}, r"did you mean 'draws'\?.*valid arguments: method, start"),
    ({"frobnicate": 1}, "valid arguments: method"),
])
def test_unknown_fit_arguments_name_the_right_one(sleepstudy, argument, advice):
    model = blm.LMM("Reaction ~ Days + (1 | Subject)", sleepstudy)
    with pytest.raises(blm.LMMError, match=r"LMM\.fit\(\) got an unknown argument .*" + advice):
        model.fit(**argument)


@pytest.mark.parametrize("method, arguments, message", [
    ("REML", {"draws": 500}, r"fit\(method='REML'\) does not take draws=500: an option of method='NUTS'"),
    ("ML", {"chains": 2, "random_seed": 1, "priors": {}},
     r"fit\(method='ML'\) does not take priors=\{\}, chains=2, random_seed=1: options of method='NUTS'"),
    ("REML", {"marginalize": False, "progressbar": False},
     r"does not take marginalize=False, progressbar=False: options of method='NUTS'.*drop them"),
    ("NUTS", {"start": [1.0]}, r"fit\(method='NUTS'\) does not take start=: it is the starting θ of a REML/ML fit"),
])
def test_arguments_of_another_method_are_errors(sleepstudy, method, arguments, message):
    model = blm.LMM("Reaction ~ Days + (1 | Subject)", sleepstudy)
    with pytest.raises(blm.LMMError, match=message):
        model.fit(method=method, **arguments)


def test_start_with_a_residual_structure_is_an_error():
    model = blm.LMM("size ~ time", blm.datasets.load("Sitka"), residual="ar1(time | tree)")
    with pytest.raises(blm.LMMError, match=r"does not take start= with a residual structure"):
        model.fit(start=[1.0])


def test_unknown_model_arguments_name_the_right_one(sleepstudy):
    with pytest.raises(blm.LMMError, match=r"LMM\(\) got an unknown argument REML=False: use fit\(method='ML'\)"):
        blm.LMM("Reaction ~ Days + (1 | Subject)", sleepstudy, REML=False)
    with pytest.raises(blm.LMMError, match=r"did you mean 'residual'\?"):
        blm.LMM("Reaction ~ Days + (1 | Subject)", sleepstudy, residuals="ar1(Days | Subject)")


@pytest.mark.parametrize("make, named", [
    (lambda p: p.HalfNormal(-1), r"HalfNormal: sigma must be a positive finite number.*got -1"),
    (lambda p: p.Normal(0, -1), r"Normal: sigma must be a positive finite number.*got -1"),
    (lambda p: p.Normal(np.nan, 1), r"Normal: mu must be a finite number.*got nan"),
    (lambda p: p.HalfStudentT(0, 1), r"HalfStudentT: nu must be a positive"),
    (lambda p: p.HalfStudentT(3, np.inf), r"HalfStudentT: sigma must be a positive finite number.*inf"),
    (lambda p: p.Exponential(0), r"Exponential: scale must be a positive"),
    (lambda p: p.ScaledBeta(1, -2), r"ScaledBeta: b must be a positive"),
    (lambda p: p.HalfNormal("1"), r"HalfNormal: sigma must be a positive finite number.*got '1'"),
])
def test_prior_parameters_are_checked_at_construction(make, named):
    with pytest.raises(blm.LMMError, match=named):
        make(blm.priors)
