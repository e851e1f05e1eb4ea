"""results/posterior_printing.py: the posterior's summary (95% intervals by default, each row's
numbers to the same decimals, ESS whole) and prior_summary (the priors in effect, their
data-scaled values computed here from the data as priors.py documents them)."""
from __future__ import annotations

import re

import numpy as np
import pytest

import bayeslmm as blm
from bayeslmm.priors import HalfNormal, Normal

FORMULA = "Reaction ~ Days + (Days | Subject)"
pytestmark = pytest.mark.filterwarnings("ignore::bayeslmm.PosteriorWarning")


@pytest.fixture(scope="module")
def model():
    return blm.LMM(FORMULA, blm.datasets.load("sleepstudy"))


@pytest.fixture(scope="module")
def post(model):
    return model.fit(method="NUTS", priors={"sigma": HalfNormal(50)}, draws=150, tune=200, chains=2, random_seed=3,
                     progressbar=False)


def _block(text: str, title: str) -> list[str]:
    return text.split(title)[1].strip().split("\n\n")[0].splitlines()


def test_summary_has_95_intervals_integer_ess_and_the_tables_numbers(post):
    summary = post.summary()
    text = str(summary)
    header, *rows = _block(text, "Fixed effects:")
    assert header.split() == ["mean", "sd", "l-95%", "CI", "u-95%", "CI", "ess_bulk", "ess_tail", "r_hat"]
    table = post.fixef()
    for row, (name, values) in zip(rows, table.iterrows()):
        cells = row[len(name):].split()
        assert row.startswith(name)
        numbers = cells[:4]
        decimals = {len(c.split(".")[1]) if "." in c else 0 for c in numbers}
        assert len(decimals) == 1  # the estimate, its sd and interval to the same decimals
        np.testing.assert_allclose([float(c) for c in numbers],
                                   values[["mean", "sd", "l-95% CI", "u-95% CI"]].to_numpy(dtype=float),
                                   atol=0.51 * 10.0 ** -decimals.pop())
        assert cells[4:6] == [str(int(round(values["ess_bulk"]))), str(int(round(values["ess_tail"])))]
        assert cells[6] == f"{values['r_hat']:.2f}"
    assert "   Data: sleepstudy" in text.splitlines()
    assert list(post.summary(level=0.9).fixed_effects.columns[2:4]) == ["l-90% CI", "u-90% CI"]


def test_summary_random_effects_rows_and_html(post):
    text = str(post.summary())
    rows = _block(text, "Random effects (sd, correlation) and residual sd:")[1:]
    assert [row.split()[0] for row in rows] == ["Subject", "Subject", "Subject", "Residual"]
    assert "None" not in text and "nan" not in text
    html = post.summary()._repr_html_()
    ess = [int(v) for v in re.findall(r"<td>(\d+)</td>", html)]
    expected = np.concatenate([post.fixef()[["ess_bulk", "ess_tail"]].to_numpy(),
                               post.varcorr()[["ess_bulk", "ess_tail"]].to_numpy()]).round().astype(int)
    assert sorted(ess) == sorted(expected.reshape(-1).tolist())


def test_prior_summary_lists_the_data_scaled_priors(model, post):
    """The defaults of bayeslmm.model.priors, from the data: Normal(mean y, 2.5 sd y) on the
    intercept at the means, Normal(0, 2.5 sd y / sd x) on a slope, HalfStudentT(3, sd y / rms of
    the column) on each sd, LKJ(2), and the user's sigma prior."""
    data = blm.datasets.load("sleepstudy")
    y, days = data["Reaction"].to_numpy(), data["Days"].to_numpy()
    sd_y = np.std(y)
    table = post.prior_summary()
    assert list(table.columns) == ["prior", "class", "coef", "group", "lb", "ub", "source"]
    expected = [
        (f"Normal(mu={np.mean(y):.4g}, sigma={2.5 * sd_y:.4g})", "Intercept", "", "", "default"),
        (f"Normal(mu=0, sigma={2.5 * sd_y / np.std(days):.4g})", "b", "Days", "", "default"),
        ("LKJ(2)", "cor", "", "Subject", "default"),
        (f"HalfStudentT(nu=3, sigma={sd_y:.4g})", "sd", "(Intercept)", "Subject", "default"),
        (f"HalfStudentT(nu=3, sigma={sd_y / np.sqrt(np.mean(days**2)):.4g})", "sd", "Days", "Subject", "default"),
        ("HalfNormal(sigma=50)", "sigma", "", "", "user"),
    ]
    assert [tuple(row) for row in table[["prior", "class", "coef", "group", "source"]].to_numpy()] == expected
    assert table.equals(model.prior_summary(priors={"sigma": HalfNormal(50)}))
    assert repr(table).splitlines()[0].split() == list(table.columns)  # no row numbers, as brms prints it


def test_prior_summary_of_user_fixed_effect_and_residual_priors():
    model = blm.LMM("size ~ time + (1 | tree)", blm.datasets.load("Sitka"), residual="ar1(visit | tree)")
    table = model.prior_summary(priors={"time": Normal(0, 1), "residual": {"eta": 3.0}})
    by_class = table.set_index("class")
    assert by_class.loc["b", "prior"] == "Normal(mu=0, sigma=1)" and by_class.loc["b", "source"] == "user"
    assert by_class.loc["rho", "prior"] == "ScaledBeta(a=1, b=1)" and by_class.loc["rho", "source"] == "default"
    assert by_class.loc["rescor", "prior"] == "LKJ(3)" and by_class.loc["rescor", "source"] == "user"
    assert by_class.loc["log_sd_ratio", "prior"] == "Normal(mu=0, sigma=1)"
    assert "cor" not in by_class.index  # a one-column term has no correlation
