"""Result object: tables, predictions and reports."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import bayeslmm as blm
from bayeslmm.cli import main
from conftest import REPO


@pytest.fixture(scope="module")
def fit():
    return blm.LMM("Reaction ~ Days + (Days | Subject)", blm.datasets.load("sleepstudy")).fit()


def test_table_shapes_and_labels(fit):
    assert list(fit.varcorr().columns) == ["grp", "var1", "var2", "vcov", "sdcor"]
    assert list(fit.vcov().index) == list(fit.vcov().columns) == list(fit.fixef().index)
    table = fit.ranef()
    assert list(table.columns) == ["grpvar", "term", "grp", "condval", "condsd"]
    assert len(table) == 36 and set(table["term"]) == {"(Intercept)", "Days"}
    assert "condsd" not in fit.ranef(cond_var=False).columns
    assert fit.ngrps == {"Subject": 18} and fit.nobs == 180 and fit.npar == 6


# the API rule of both result types (README, "API"): tables are methods, scalars are properties
TABLES = ("fixef", "varcorr", "ranef", "vcov", "se", "residual_params", "coef", "variance_components")
SCALARS = ("sigma", "loglik", "aic", "bic", "nobs", "ngrps", "theta", "npar", "deviance")


def test_tables_are_methods_and_scalars_are_properties(fit):
    from bayeslmm.results.bayesian import BayesResult
    from bayeslmm.results.frequentist import LMMResult

    for name in TABLES:
        assert callable(getattr(LMMResult, name)) and not isinstance(getattr(LMMResult, name), property), name
    for name in ("fixef", "varcorr", "ranef", "residual_params", "variance_components", "predict"):
        assert callable(getattr(BayesResult, name)) and not isinstance(getattr(BayesResult, name), property), name
    for name in SCALARS:
        assert not callable(getattr(fit, name)), name
    for name in ("nobs", "ngrps"):
        assert isinstance(getattr(BayesResult, name), property), name


def test_fitted_plus_residuals_is_the_response(fit):
    data = blm.datasets.load("sleepstudy")
    np.testing.assert_allclose(fit.fitted() + fit.residuals(), data["Reaction"])


def test_predict_on_the_fitted_rows_equals_fitted(fit):
    data = blm.datasets.load("sleepstudy")
    np.testing.assert_allclose(fit.predict(data), fit.fitted())
    np.testing.assert_allclose(fit.predict(data, include_re=False), fit.spec.X @ fit.fixef().to_numpy())


def test_coef_adds_random_effects_to_fixed_effects(fit):
    coef = fit.coef()["Subject"]
    b = fit.ranef().query("grp == '308'").set_index("term")["condval"]
    assert coef.loc["308", "Days"] == pytest.approx(fit.fixef()["Days"] + b["Days"])


def test_summary_reads_like_lme4(fit):
    text = str(fit.summary())
    for piece in ("Linear mixed model fit by REML", "REML criterion at convergence: 1743.6",
                  "Scaled residuals:", "Random effects:", "Residual", "Number of obs: 180, groups:  Subject, 18",
                  "Fixed effects:", "Std. Error", "t value", "Correlation of Fixed Effects:"):
        assert piece in text
    assert "<table" in fit._repr_html_() and "Random effects" in fit._repr_html_()
    assert repr(fit) == text


def test_ml_summary_shows_information_criteria(sleepstudy):
    text = str(blm.LMM("Reaction ~ Days + (1 | Subject)", sleepstudy).fit("ML").summary())
    assert "maximum likelihood" in text and "AIC" in text and "logLik" in text


def test_singular_fit_is_flagged_and_warned():
    data = pd.read_csv(REPO / "tests/data/singular.csv")
    with pytest.warns(blm.SingularFitWarning, match="boundary \\(singular\\) fit"):
        fit = blm.LMM("y ~ x + (1 + x | g)", data).fit()
    assert fit.is_singular and "singular" in str(fit.summary())


def test_linear_model_without_random_terms():
    data = pd.read_csv(REPO / "tests/data/lmdata.csv")
    fit = blm.LMM("y ~ x + f", data).fit()
    assert fit.ngrps == {} and fit.ranef().empty and "Linear model fit by REML" in str(fit.summary())
    ols = np.linalg.lstsq(fit.spec.X, fit.spec.y, rcond=None)[0]
    np.testing.assert_allclose(fit.fixef(), ols, rtol=1e-10)


def test_second_fit_reuses_the_sufficient_statistics(sleepstudy):
    model = blm.LMM("Reaction ~ Days + (Days | Subject)", sleepstudy)
    stats = model.stats
    model.fit()
    model.fit("ML")
    assert model.stats is stats


def test_cli_example_prints_the_summary(capsys):
    assert main(["example", "sleepstudy"]) == 0
    out = capsys.readouterr().out
    assert "REML criterion at convergence: 1743.6" in out and "Days" in out


def test_cli_fit_on_a_csv(capsys, tmp_path):
    path = tmp_path / "d.csv"
    blm.datasets.load("Dyestuff").to_csv(path, index=False)
    assert main(["fit", str(path), "Yield ~ 1 + (1 | Batch)", "--method", "ML"]) == 0
    assert "maximum likelihood" in capsys.readouterr().out


def test_cli_fit_with_a_residual_structure(capsys, tmp_path):
    path = tmp_path / "sitka.csv"
    blm.datasets.load("Sitka").to_csv(path, index=False)
    assert main(["fit", str(path), "size ~ time * treat", "--residual", "ar1(visit | tree)"]) == 0
    assert "Residual correlation: rho = 0.9502" in capsys.readouterr().out
    assert main(["fit", str(path), "size ~ time", "--residual", "ar2(visit | tree)"]) == 2
    assert "is not known" in capsys.readouterr().err


def test_cli_samples_the_posterior_with_nuts(capsys):
    args = ["example", "Dyestuff", "--method", "nuts", "--draws", "200", "--tune", "200", "--chains", "2",
            "--seed", "1"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "Bayesian linear mixed model" in out and "Draws: 400 (2 chains)" in out and "Batch" in out
    assert "None" not in out  # empty var1/var2 cells print blank, as in lme4
    assert main(args[:3] + ["NUTS", "--draws", "0"]) == 2
    assert "draws must be a positive integer" in capsys.readouterr().err


def test_cli_rejects_nuts_options_for_reml(capsys):
    assert main(["example", "Dyestuff", "--draws", "200", "--seed", "1"]) == 2
    assert "fit(method='REML') does not take draws=200, random_seed=1" in capsys.readouterr().err


def test_cli_reports_bad_input_without_a_traceback(capsys, tmp_path):
    path = tmp_path / "d.csv"
    blm.datasets.load("Dyestuff").to_csv(path, index=False)
    assert main(["fit", str(path), "Yield ~ 1 + (1 | Bach)"]) == 2
    assert "error: column 'Bach'" in capsys.readouterr().err
    assert main(["example", "nonesuch"]) == 2
