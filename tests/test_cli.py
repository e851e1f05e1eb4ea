"""The command line's output: the result on stdout, the sampler's progress and warnings on
stderr (``--no-progress`` turns the progress off), and ``--output csv|json`` as one
machine-readable table equal to the fit's own tables."""
from __future__ import annotations

import io
import json
import os
import sys

import numpy as np
import pandas as pd
import pytest

import bayeslmm as blm
from bayeslmm.cli import main, stdout_to_stderr
from bayeslmm.lmm import LMM

# a Toeplitz structure: sampled by PyMC's NUTS (the compiled kernel does not cover it)
RESIDUAL_NUTS = ["--residual", "toep(visit | tree)", "--method", "NUTS", "--draws", "30", "--tune", "30",
                 "--chains", "1", "--seed", "1"]


@pytest.fixture(scope="module")
def sitka_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "sitka.csv"
    blm.datasets.load("Sitka").to_csv(path, index=False)
    return str(path)


def test_what_is_written_to_stdout_while_fitting_goes_to_stderr(capfd, monkeypatch):
    """Python's sys.stdout and file descriptor 1 (compiled code) both: stdout has only the summary."""
    fit = LMM.fit

    def noisy_fit(self, *args, **kwargs):
        print("python progress")
        sys.stdout.flush()
        os.write(1, b"compiled progress\n")
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(LMM, "fit", noisy_fit)
    assert main(["example", "Dyestuff"]) == 0
    out, err = capfd.readouterr()
    assert "progress" not in out and out.startswith("Example Dyestuff")
    assert "python progress" in err and "compiled progress" in err


def test_stdout_is_restored_after_an_error(capfd):
    with pytest.raises(ValueError), stdout_to_stderr():
        raise ValueError
    print("after")
    assert capfd.readouterr().out == "after\n"


def test_pymcs_progress_bar_goes_to_stderr_and_no_progress_turns_it_off(capfd, sitka_csv):
    """PyMC's sampler (a residual structure the kernel does not cover) draws its progress bar with
    rich, on stdout."""
    assert main(["fit", sitka_csv, "size ~ time", *RESIDUAL_NUTS]) == 0
    out, err = capfd.readouterr()
    assert out.startswith("Bayesian linear mixed model") and "draws/s" not in out
    assert "draws/s" in err
    assert main(["fit", sitka_csv, "size ~ time", *RESIDUAL_NUTS, "--no-progress"]) == 0
    out, err = capfd.readouterr()
    assert out.startswith("Bayesian linear mixed model") and "draws/s" not in err


def test_csv_output_is_the_fits_tables(capsys):
    assert main(["example", "sleepstudy", "--output", "csv"]) == 0
    out = capsys.readouterr().out
    table = pd.read_csv(io.StringIO(out))
    fit = blm.LMM("Reaction ~ Days + (Days | Subject)", blm.datasets.load("sleepstudy")).fit()
    fixed = table[table["effect"] == "fixed"].set_index("term")
    coef = fit.coef_table()
    for column in ("estimate", "std_error", "statistic", "df", "p_value"):
        np.testing.assert_allclose(fixed[column], coef[column], rtol=1e-12)
    ran_pars = table[table["effect"] == "ran_pars"]
    np.testing.assert_allclose(ran_pars["estimate"], fit.varcorr()["sdcor"], rtol=1e-12)
    assert ran_pars["term"].tolist() == ["sd__(Intercept)", "sd__Days", "cor__(Intercept).Days", "sd__Observation"]
    assert ran_pars["group"].tolist() == ["Subject"] * 3 + ["Residual"]


def test_json_output_has_the_model_and_the_estimates(capsys, sitka_csv):
    assert main(["fit", sitka_csv, "size ~ time * treat + (1 | tree)", "--output", "json", "--ddf",
                 "kenward-roger"]) == 0
    report = json.loads(capsys.readouterr().out)
    fit = blm.LMM("size ~ time * treat + (1 | tree)", pd.read_csv(sitka_csv)).fit()
    assert report["data"] == sitka_csv and report["nobs"] == 395 and report["groups"] == {"tree": 79}
    assert report["ddf"] == "kenward-roger" and report["deviance"] == pytest.approx(fit.deviance, rel=1e-12)
    fixed = [row for row in report["estimates"] if row["effect"] == "fixed"]
    np.testing.assert_allclose([row["df"] for row in fixed], fit.coef_table(ddf="kenward-roger")["df"], rtol=1e-12)
    residual = report["estimates"][-1]
    assert residual["term"] == "sd__Observation" and residual["estimate"] == pytest.approx(fit.sigma, rel=1e-12)
    assert residual["df"] is None  # NaN is JSON's null


def test_posterior_csv_output(capsys):
    args = ["example", "Dyestuff", "--method", "NUTS", "--draws", "100", "--tune", "100", "--chains", "2",
            "--seed", "1", "--output", "csv", "--no-progress"]
    assert main(args) == 0
    table = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert table["term"].tolist() == ["(Intercept)", "sd__(Intercept)", "sd__Observation"]
    assert {"estimate", "std_error", "conf_low", "conf_high", "ess_bulk", "ess_tail", "r_hat"} <= set(table.columns)
    assert (table["conf_low"] < table["estimate"]).all() and (table["estimate"] < table["conf_high"]).all()


def test_summary_table_takes_ddf(capsys):
    assert main(["example", "sleepstudy", "--ddf", "asymptotic"]) == 0
    assert "z-tests use the normal approximation" in capsys.readouterr().out
