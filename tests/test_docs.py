"""The docstring examples and the notebooks run as written."""
from __future__ import annotations

import ast
import contextlib
import doctest
import importlib
import importlib.util
import io
import json
import pkgutil
import re
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest

import bayeslmm
from conftest import PUBLIC, REPO, TESTS

HET = json.loads((TESTS / "reference" / "het_reference.json").read_text())  # make_het_reference.R

matplotlib.use("Agg")


MODULES = sorted(info.name for info in pkgutil.walk_packages(bayeslmm.__path__, "bayeslmm."))
WITH_EXAMPLES = [name for name in MODULES if ">>>" in Path(importlib.util.find_spec(name).origin).read_text()]


@pytest.mark.filterwarnings("ignore:.*BLAS.*", "ignore::bayeslmm.PosteriorWarning")
@pytest.mark.parametrize("name", WITH_EXAMPLES)
def test_docstring_examples(name):
    """Every module with examples runs them all, and they all pass."""
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def _run_notebook(path: Path) -> tuple[dict, list[tuple[str, str, str]]]:
    """Executes the code cells in order, as Jupyter would (Agg figures, pandas' notebook display
    width). Returns the namespace and, for each cell before the first sampler run (MCMC output
    differs between machines), (source, stored text output, re-executed text output)."""
    namespace: dict = {}
    shown = []
    deterministic = True
    with pd.option_context("display.width", 80, "display.max_columns", 20):
        for cell in json.loads(path.read_text())["cells"]:
            if cell["cell_type"] != "code":
                continue
            source = "".join(cell["source"])
            deterministic = deterministic and "NUTS" not in source
            text = _execute(source, path.name, namespace)
            stored = _stored_text(cell)
            if deterministic and text and stored:
                shown.append((source, stored, text))
    return namespace, shown


def _execute(source: str, name: str, namespace: dict) -> str:
    """Runs a cell; returns what it prints plus the repr of its last expression (if not None)."""
    tree = ast.parse(source)
    last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(tree, name, "exec"), namespace)
        value = None if last is None else eval(compile(ast.Expression(last.value), name, "eval"), namespace)
    return printed.getvalue() + ("" if value is None else repr(value))


def _stored_text(cell: dict) -> str:
    parts = []
    for output in cell.get("outputs", []):
        if output.get("name") == "stdout":
            parts.append("".join(output["text"]))
        elif "data" in output and "image/png" not in output["data"]:
            parts.append("".join(output["data"].get("text/plain", "")))
    return "".join(parts)


def _numbers(text: str) -> list[str]:
    return NUMBER.findall(text.replace("np.float64", ""))


def _assert_same_numbers(stored: str, rerun: str, source: str):
    """Every number of the stored output is re-computed, to a unit of its last printed digit
    (rounding may flip it) or 1e-7 relative (optima differ that much between BLAS builds)."""
    ours, theirs = _numbers(rerun), _numbers(stored)
    assert len(ours) == len(theirs), f"cell {source!r} prints other numbers now:\n{stored}\n---\n{rerun}"
    for a, b in zip(ours, theirs):
        decimals = len(b.split("e")[0].split(".")[1]) if "." in b.split("e")[0] else 0
        last_digit = 10.0 ** -decimals * (10.0 ** int(b.split("e")[1]) if "e" in b.lower() else 1)
        assert np.isclose(float(a), float(b), rtol=1e-7, atol=1.01 * last_digit), (source, a, b)


def _check_sleepstudy(ns):
    """The REML and ML fits of the notebook are lme4's."""
    for fit, case in ((ns["fit"], PUBLIC["sleepstudy_slope_reml"]), (ns["ml_slope"], PUBLIC["sleepstudy_slope_ml"])):
        np.testing.assert_allclose(fit.fixef(), list(case["fixef"].values()), rtol=1e-5)
        np.testing.assert_allclose(fit.sigma, case["sigma"], rtol=1e-4)
        assert fit.loglik == pytest.approx(case["logLik"], abs=1e-5)


def _check_sitka(ns):
    """The GLS fits are nlme's; the lme with AR(1) and a variance per treatment too."""
    for name, key in (("AR(1)", "sitka_gls_ar1_reml"), ("ARH(1)", "sitka_gls_arh1_reml"),
                      ("unstructured", "sitka_gls_un_reml")):
        fit, case = ns["fits"][name], PUBLIC[key]
        assert fit.loglik == pytest.approx(case["logLik"], abs=1e-4), name
        np.testing.assert_allclose(fit.fixef(), list(case["fixef"].values()), rtol=1e-4)
    lme, case = ns["lme"], HET["sitka_lme_ar1_het_reml"]
    assert lme.loglik == pytest.approx(case["logLik"], abs=1e-4)
    assert lme.residual_params()["rho"] == pytest.approx(case["rho"], rel=1e-3)
    post, ar1 = ns["post"], ns["ar1"]
    _assert_posterior_near(post.fixef(), ar1.fixef(), ar1.se())


def _check_sleepstudy_bayesian(ns):
    """The REML fit is lme4's; 4000 draws put the posterior means of β within half a posterior
    sd of REML's estimates, and the posterior sds within 25 % of REML's standard errors."""
    reml, case = ns["reml"], PUBLIC["sleepstudy_slope_reml"]
    np.testing.assert_allclose(reml.fixef(), list(case["fixef"].values()), rtol=1e-5)
    _assert_posterior_near(ns["post"].fixef(), reml.fixef(), reml.se(), within=0.5)
    assert ns["post"].idata["posterior"]["beta"].shape[:2] == (4, 1000)


def _assert_posterior_near(table, estimate, se, within=2.0):
    assert np.all(np.abs(table["mean"] - estimate) < within * table["sd"])
    assert np.all(np.abs(table["sd"] / se - 1) < 0.25)


def _check_dask_scaleout(ns):
    """The fit from the Parquet files on a LocalCluster is lme4's, and the in-memory fit's."""
    fit, case = ns["fit"], PUBLIC["sleepstudy_slope_reml"]
    assert fit.loglik == pytest.approx(case["logLik"], abs=1e-5)
    np.testing.assert_allclose(fit.fixef(), list(case["fixef"].values()), rtol=1e-5)
    assert fit.loglik == pytest.approx(ns["memory"].loglik, abs=1e-8)


CHECKS = {"sleepstudy.ipynb": _check_sleepstudy, "sitka_repeated_measures.ipynb": _check_sitka,
          "sleepstudy_bayesian.ipynb": _check_sleepstudy_bayesian, "dask_scaleout.ipynb": _check_dask_scaleout}


def test_every_notebook_has_checks():
    assert sorted(CHECKS) == [path.name for path in NOTEBOOKS]


@pytest.mark.filterwarnings("ignore:.*BLAS.*", "ignore::bayeslmm.PosteriorWarning")
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebooks_reproduce_their_outputs_and_the_references(path):
    """The notebooks run as written; the outputs stored in them are what the code computes now
    (cells before the first sampler run), and their fits agree with R's (CHECKS)."""
    namespace, shown = _run_notebook(path)
    for source, stored, rerun in shown:
        _assert_same_numbers(stored, rerun, source)
    CHECKS[path.name](namespace)
