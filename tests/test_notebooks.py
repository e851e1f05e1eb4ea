"""The notebooks run as written, in a Jupyter kernel (nbclient), with this checkout's bayeslmm.

Each notebook asserts its key numbers itself (against the course notes' printed values and R's
references); this test executes every notebook, checks that the outputs stored in it are what the
code computes now (cells before the first sampler run: MCMC output differs between machines), and
for some compares the fits with the shared reference files (``CHECKS``, through a probe cell run
in the same kernel after the notebook).

Store a notebook executed (the documentation site shows the stored outputs)::

    .venv/bin/python tests/test_notebooks.py notebooks/sleepstudy.ipynb
"""
from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient

from conftest import PUBLIC, REPO, TESTS

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
# What a probe cell prints for CHECKS: JSON of the named results' numbers
PROBE = """
import json as _json
def _numbers(fit):
    out = {"fixef": [float(v) for v in fit.fixef()], "loglik": float(fit.loglik), "sigma": float(fit.sigma)}
    try:
        out["rho"] = float(fit.residual_params()["rho"])
    except Exception:
        pass
    return out
def _posterior(post):
    table = post.fixef()
    return {"mean": [float(v) for v in table["mean"]], "sd": [float(v) for v in table["sd"]],
            "shape": list(post.idata["posterior"]["beta"].shape[:2])}
print(_json.dumps({"bayeslmm": __import__("bayeslmm").__file__, %s}))
"""


def _kernel_env() -> dict:
    """The kernel imports this checkout's bayeslmm (not another install's) and draws with Agg."""
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "MPLBACKEND": "module://matplotlib_inline.backend_inline"}


def execute(path: Path, probe: str | None = None, timeout: int = 900) -> tuple[nbformat.NotebookNode, str]:
    """Executes the notebook in a python3 kernel started from this interpreter, in the notebook's
    folder. Returns the executed notebook and what the probe cell (if any) printed."""
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    client.kernel_manager_class = "jupyter_client.manager.KernelManager"
    printed = ""
    with client.setup_kernel(env=_kernel_env()):
        for index, cell in enumerate(notebook.cells):
            client.execute_cell(cell, index)
        if probe is not None:
            notebook.cells.append(nbformat.v4.new_code_cell(probe))
            client.execute_cell(notebook.cells[-1], len(notebook.cells) - 1)
            cell = notebook.cells.pop()
            printed = "".join(o.get("text", "") for o in cell.outputs if o.get("name") == "stdout")
    return notebook, printed


def _text(cell) -> str:
    parts = []
    for output in cell.get("outputs", []):
        if output.get("name") == "stdout":
            parts.append(output["text"])
        elif "data" in output and "image/png" not in output["data"]:
            parts.append(output["data"].get("text/plain", ""))
    return "".join(parts)


def _deterministic_cells(notebook) -> list:
    """The code cells before the first sampler run."""
    cells = []
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        if "NUTS" in cell.source:
            break
        cells.append(cell)
    return cells


def _numbers(text: str) -> list[str]:
    return NUMBER.findall(text.replace("np.float64", ""))


def _assert_same_numbers(stored: str, rerun: str, source: str):
    """Every number of the stored output is re-computed, to a unit of its last printed digit
    (rounding may flip it) or 1e-7 relative (optima differ that much between BLAS builds)."""
    ours, theirs = _numbers(rerun), _numbers(stored)
    assert len(ours) == len(theirs), f"cell {source!r} prints other numbers now:\n{stored}\n---\n{rerun}"
    for a, b in zip(ours, theirs):
        mantissa = b.lower().split("e")[0]
        decimals = len(mantissa.split(".")[1]) if "." in mantissa else 0
        last_digit = 10.0 ** -decimals * (10.0 ** int(b.lower().split("e")[1]) if "e" in b.lower() else 1)
        assert np.isclose(float(a), float(b), rtol=1e-7, atol=1.01 * last_digit), (source, a, b)


HET = json.loads((TESTS / "reference" / "het_reference.json").read_text())  # make_het_reference.R


def _check_fit(numbers: dict, case: dict, loglik_tol: float, rtol: float):
    np.testing.assert_allclose(numbers["fixef"], list(case["fixef"].values()), rtol=rtol)
    assert numbers["loglik"] == pytest.approx(case["logLik"], abs=loglik_tol)


def _assert_posterior_near(posterior: dict, estimate, se, within=2.0):
    mean, sd = np.array(posterior["mean"]), np.array(posterior["sd"])
    assert np.all(np.abs(mean - np.asarray(estimate)) < within * sd)
    assert np.all(np.abs(sd / np.asarray(se) - 1) < 0.25)


def _check_sleepstudy(ns):
    """The REML and ML fits of the notebook are lme4's."""
    for key, case in (("fit", "sleepstudy_slope_reml"), ("ml_slope", "sleepstudy_slope_ml")):
        _check_fit(ns[key], PUBLIC[case], 1e-5, 1e-5)
        assert ns[key]["sigma"] == pytest.approx(PUBLIC[case]["sigma"], rel=1e-4)


def _check_sitka(ns):
    """The GLS fits are nlme's; the lme with AR(1) and a variance per treatment too; the posterior's
    fixed effects are near the REML AR(1) fit's."""
    for key, case in (("ar1", "sitka_gls_ar1_reml"), ("arh1", "sitka_gls_arh1_reml"), ("un", "sitka_gls_un_reml")):
        _check_fit(ns[key], PUBLIC[case], 1e-4, 1e-4)
    assert ns["lme"]["loglik"] == pytest.approx(HET["sitka_lme_ar1_het_reml"]["logLik"], abs=1e-4)
    assert ns["lme"]["rho"] == pytest.approx(HET["sitka_lme_ar1_het_reml"]["rho"], rel=1e-3)
    _assert_posterior_near(ns["post"], ns["ar1"]["fixef"], ns["ar1_se"])


def _check_sleepstudy_bayesian(ns):
    """The REML fit is lme4's; 4000 draws put the posterior means of β within half a posterior sd
    of REML's estimates, and the posterior sds within 25 % of REML's standard errors."""
    _check_fit(ns["reml"], PUBLIC["sleepstudy_slope_reml"], 1e-5, 1e-5)
    _assert_posterior_near(ns["post"], ns["reml"]["fixef"], ns["reml_se"], within=0.5)
    assert ns["post"]["shape"] == [4, 1000]


def _check_dyestuff_penicillin(ns):
    """Dyestuff (REML) and Penicillin (crossed) are lme4's."""
    _check_fit(ns["dyestuff"], PUBLIC["dyestuff_reml"], 1e-5, 1e-5)
    _check_fit(ns["penicillin"], PUBLIC["penicillin_crossed_reml"], 1e-5, 1e-5)



def _check_dask_scaleout(ns):
    """The fit from the Parquet files on a LocalCluster is lme4's, and the in-memory fit's (issue 14)."""
    fit, case = ns["fit"], PUBLIC["sleepstudy_slope_reml"]
    _check_fit(fit, case, 1e-5, 1e-5)
    assert fit["loglik"] == pytest.approx(ns["memory"]["loglik"], abs=1e-8)


# notebook → (probe expressions, check): the probe prints the numbers the check compares with R's
CHECKS = {
    "sleepstudy.ipynb": ('"fit": _numbers(fit), "ml_slope": _numbers(ml_slope)', _check_sleepstudy),
    "sitka_repeated_measures.ipynb": (
        '"ar1": _numbers(fits["AR(1)"]), "arh1": _numbers(fits["ARH(1)"]), "un": _numbers(fits["unstructured"]),'
        ' "lme": _numbers(lme), "post": _posterior(post), "ar1_se": [float(v) for v in fits["AR(1)"].se()]',
        _check_sitka),
    "sleepstudy_bayesian.ipynb": ('"reml": _numbers(reml), "reml_se": [float(v) for v in reml.se()],'
                                  ' "post": _posterior(post)', _check_sleepstudy_bayesian),
    "dyestuff_penicillin.ipynb": ('"dyestuff": _numbers(dyestuff), "penicillin": _numbers(penicillin)',
                                  _check_dyestuff_penicillin),
    "dask_scaleout.ipynb": ('"fit": _numbers(fit), "memory": _numbers(memory)', _check_dask_scaleout),
}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_and_reproduces_its_outputs(path):
    """The notebook runs as written (its assert cells pass); its stored outputs are what the code
    computes now; where CHECKS has an entry, its fits agree with R's references."""
    stored = [_text(cell) for cell in _deterministic_cells(nbformat.read(path, as_version=4))]
    expressions, check = CHECKS.get(path.name, ("", None))
    executed, printed = execute(path, PROBE % expressions)
    numbers = json.loads(printed.strip().splitlines()[-1])
    assert Path(numbers["bayeslmm"]).is_relative_to(REPO), numbers["bayeslmm"]  # this checkout's
    rerun = _deterministic_cells(executed)
    assert len(rerun) == len(stored)
    for cell, text in zip(rerun, stored):
        if text:
            _assert_same_numbers(text, _text(cell), cell.source)
    if check is not None:
        check(numbers)


def test_every_notebook_is_stored_executed():
    """The site shows the stored outputs (mkdocs-jupyter, execute: false): every code cell ran."""
    for path in NOTEBOOKS:
        for cell in nbformat.read(path, as_version=4).cells:
            assert cell.cell_type != "code" or cell.execution_count is not None, (path.name, cell.source[:60])


if __name__ == "__main__":  # store the given notebooks executed
    for name in sys.argv[1:]:
        executed, _ = execute(Path(name).resolve())
        nbformat.write(executed, name)
        print("executed", name)
