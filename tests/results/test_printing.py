"""results/printing.py: the summary text against lmerTest's printed ``summary(lmer)`` (row labels,
column headers and numbers as printed, digits included, block by block), and the HTML against
the text.

lmerTest's output is stored in tests/reference/lmerTest_summary_*.txt (make_summary_reference.R,
lmerTest 3.1-3, lme4 1.1.31). lme4's optimiser stops earlier than ours, so a number agrees when it
is printed the same way (fixed or scientific, the same decimals) and within half a unit of
lmerTest's last printed digit plus 1e-4 relative.  Two departures are on purpose (the issue asks
for them): the correlation of the fixed effects keeps the full names (lme4 cuts them to 6
characters), and the title has no class tag (``[lmerModLmerTest]``).
"""
from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

import bayeslmm as blm
from bayeslmm.results.rformat import coefficient_columns, format_numbers, format_pvalues
from conftest import TESTS

SLEEP = ("Reaction ~ Days + (Days | Subject)", "sleepstudy")
CASES = {  # reference file: (formula, dataset, method, ddf)
    "sleepstudy_reml": (*SLEEP, "REML", "satterthwaite"),
    "sleepstudy_ml": (*SLEEP, "ML", "satterthwaite"),
    "sleepstudy_kr": (*SLEEP, "REML", "kenward-roger"),
    "penicillin_reml": ("diameter ~ 1 + (1 | plate) + (1 | sample)", "Penicillin", "REML", "satterthwaite"),
    "sitka_reml": ("size ~ time * treat + (1 | tree)", "Sitka", "REML", "satterthwaite"),
}
R_NAMES = {"treatozone": "treat[ozone]", "time:treatozone": "time:treat[ozone]"}  # R's coefficient names


@pytest.fixture(scope="module")
def summaries():
    cache = {}

    def get(key):
        if key not in cache:
            formula, dataset, method, ddf = CASES[key]
            cache[key] = blm.LMM(formula, blm.datasets.load(dataset)).fit(method).summary(ddf=ddf)
        return cache[key]

    return get


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _blocks(text: str) -> list[list[str]]:
    """The text's blank-line separated blocks, each a list of lines."""
    blocks = [[line.rstrip() for line in block.splitlines()] for block in re.split(r"\n\s*\n", text.strip())]
    return [block for block in blocks if block]


def _tokens(lines: list[str]) -> tuple[list[str], list[str]]:
    """(labels, numbers) in reading order: the layout aside, what a reader sees."""
    tokens = [R_NAMES.get(token, token) for line in lines for token in line.replace("< ", "<").split()]
    return [t for t in tokens if not _is_number(t)], [t for t in tokens if _is_number(t)]


def _printed_as(token: str) -> tuple[bool, int]:
    """(scientific?, decimals) of a printed number."""
    mantissa = token.lower().split("e")[0]
    return "e" in token.lower(), len(mantissa.split(".")[1]) if "." in mantissa else 0


def _assert_close(ours: list[str], printed: list[str], context: str):
    assert len(ours) == len(printed), (context, ours, printed)
    for a, b in zip(ours, printed):
        assert _printed_as(a) == _printed_as(b), (context, a, b)
        decimals = _printed_as(b)[1] - (int(b.lower().split("e")[1]) if "e" in b.lower() else 0)
        tolerance = 0.5 * 10.0**-decimals + 0.5e-4 + 1e-4 * abs(float(b))
        assert abs(float(a) - float(b)) <= tolerance, (context, a, b)


def _heading(block: list[str]) -> str:
    """lmerTest's title (wrapped over lines at width 80) without its class tag."""
    title = " ".join(line for line in block if not line.lstrip().startswith(("Formula:", "Data:")))
    return re.sub(r"\s*\[\s*'?lmerModLmerTest'?\]", "", " ".join(title.split())).replace(" .", ".")


@pytest.mark.parametrize("key", CASES)
def test_summary_text_has_lmertests_blocks_labels_and_numbers(key, summaries):
    ours = _blocks(str(summaries(key)))
    theirs = _blocks((TESTS / "reference" / f"lmerTest_summary_{key}.txt").read_text())
    assert len(ours) == len(theirs)
    assert ours[0] == [_heading(theirs[0])] + theirs[0][-2:]  # title, Formula:, Data:
    for mine, their in zip(ours[1:], theirs[1:]):
        correlation = mine[0].startswith("Correlation of Fixed Effects")
        (my_labels, my_numbers), (their_labels, their_numbers) = _tokens(mine), _tokens(their)
        if not correlation:  # there lme4 abbreviates the names, we do not
            assert my_labels == their_labels, (mine, their)
        _assert_close(my_numbers, their_numbers, their[0], )
    counts = [line for line in sum(theirs, []) if line.startswith("Number of obs")]
    assert counts[0] in str(summaries(key)).splitlines()


def _html_numbers(html: str) -> list[str]:
    cells = re.findall(r"<td>(.*?)</td>", html)
    return [cell.strip() for cell in cells if _is_number(cell)]


@pytest.mark.parametrize("key", CASES)
def test_html_renders_the_numbers_of_the_text(key, summaries):
    """The HTML tables hold the text's numbers as printed, in the same order (criteria, scaled
    residuals, random effects, fixed effects, their correlation with full names)."""
    summary = summaries(key)
    lines = [line for block in _blocks(str(summary))[1:] for line in block
             if not line.startswith(("Number of obs", "Signif. codes"))]
    assert _html_numbers(summary._repr_html_()) == _tokens(lines)[1]
    assert "Number of obs" in summary._repr_html_() and "Data:" in summary._repr_html_()
    for name in summary.correlation.columns:
        assert f"<th>{name}</th>" in summary._repr_html_()


def test_summary_numbers_are_the_fits(summaries):
    """The printed table values are the fit's own (no stale or rounded copies)."""
    fit = blm.LMM(CASES["sleepstudy_reml"][0], blm.datasets.load("sleepstudy")).fit()
    summary = summaries("sleepstudy_reml")
    table = fit.coef_table()
    np.testing.assert_allclose(summary.fixed_effects["Estimate"], fit.fixef(), rtol=1e-12)
    np.testing.assert_allclose(summary.fixed_effects["t value"], fit.fixef() / fit.se(), rtol=1e-12)
    np.testing.assert_allclose(summary.fixed_effects["df"], table["df"], rtol=1e-12)
    np.testing.assert_allclose(summary.fixed_effects["Pr(>|t|)"], table["p_value"], rtol=1e-12)
    np.testing.assert_allclose(summary.random_effects["Variance"].iloc[-1], fit.sigma**2, rtol=1e-12)
    assert summary.criteria.iloc[0, 0] == pytest.approx(fit.deviance, rel=1e-12)


def test_unavailable_df_fall_back_to_lme4s_columns_with_a_note():
    """Kenward–Roger is defined for REML fits: an ML fit's summary says so and shows no df or p."""
    fit = blm.LMM(SLEEP[0], blm.datasets.load("sleepstudy")).fit("ML")
    with pytest.warns(UserWarning, match="Kenward-Roger's method is not available"):
        summary = fit.summary(ddf="kenward-roger")
    assert list(summary.fixed_effects.columns) == ["Estimate", "Std. Error", "t value"]
    assert summary.title == "Linear mixed model fit by maximum likelihood"
    assert "defined for REML fits" in str(summary)


def test_asymptotic_summary_has_z_tests(summaries):
    fit = blm.LMM(SLEEP[0], blm.datasets.load("sleepstudy")).fit()
    summary = fit.summary(ddf="asymptotic")
    assert list(summary.fixed_effects.columns) == ["Estimate", "Std. Error", "z value", "Pr(>|z|)"]
    np.testing.assert_allclose(summary.fixed_effects["Pr(>|z|)"], fit.coef_table(ddf="asymptotic")["p_value"])
    assert "z-tests use the normal approximation" in str(summary)


def test_a_zero_variance_prints_as_zero():
    """A boundary fit's variance is 0 up to round-off (θ = 1e-13 here); lme4 would print
    σ²θ² = 6.5e-24 and its column in scientific notation, we print 0 and keep the column fixed."""
    fit = blm.LMM("Reaction ~ Days + (1 | Subject) + (0 + Days | Subject)", blm.datasets.load("sleepstudy")).fit()
    fit.theta = np.array([fit.theta[0], 1e-13])
    assert 0 < fit.varcorr()["vcov"].iloc[1] < 1e-20  # the case this test is about
    summary = fit.summary(ddf="asymptotic")
    block = str(summary).split("Random effects:")[1].split("Number of obs")[0]
    assert "e-" not in block and "e+" not in block
    days = next(line for line in block.splitlines() if " Days " in line).split()
    assert [float(v) for v in days[-2:]] == [0.0, 0.0] and summary.random_effects["Variance"].iloc[1] == 0


def test_correlation_block_keeps_full_names(summaries):
    summary = summaries("sitka_reml")
    text = str(summary).split("Correlation of Fixed Effects:")[1]
    assert "time:treat[ozone]" in text and "(Intercept)" in text and "(Intr)" not in text
    assert list(summary.correlation.columns) == ["(Intercept)", "time", "treat[ozone]"]


@pytest.mark.parametrize("values, digits, printed", [  # R 4.2.2's dput(format(values, digits = digits))
    ([612.10, 35.07, 654.94], 4, ["612.10", " 35.07", "654.94"]),
    ([24.741, 5.922, 25.592], 4, ["24.741", " 5.922", "25.592"]),
    ([0.0, 0.7169, 3.7311], 4, ["0.0000", "0.7169", "3.7311"]),
    ([2.5e-25, 0.7169, 3.73], 4, ["2.500e-25", "7.169e-01", "3.730e+00"]),
    ([-2.07923, -0.6714, 0.06292, 0.58377, 2.97959], 4, ["-2.07923", "-0.67140", " 0.06292", " 0.58377", " 2.97959"]),
    ([1e5, 1.5], 7, ["1.0e+05", "1.5e+00"]),
    ([123456.789, -0.001], 4, ["123456.789", "    -0.001"]),
    ([0.000156], 3, ["0.000156"]),
    ([3.26e-06], 3, ["3.26e-06"]),
    ([1e-300, 1.0], 4, ["1e-300", " 1e+00"]),
])
def test_numbers_format_as_r_formats_them(values, digits, printed):
    assert format_numbers(values, digits) == printed


def test_pvalues_and_coefficients_as_printcoefmat_prints_them():
    """lmerTest's Sitka table (tests/reference/lmerTest_summary_sitka_reml.txt) from its numbers."""
    table = pd.DataFrame({"Estimate": [2.1217, 0.014147, 0.22168, -0.0021385],
                          "Std. Error": [0.15439, 0.00046190, 0.18674, 0.00055868],
                          "df": [177.36, 314.0, 177.36, 314.0], "t value": [13.742, 30.629, 1.187, -3.828],
                          "Pr(>|t|)": [1e-28, 1e-95, 0.236784, 0.000156]})
    printed = coefficient_columns(table)
    assert [s.strip() for s in printed["Std. Error"]] == ["1.544e-01", "4.619e-04", "1.867e-01", "5.587e-04"]
    assert [s.strip() for s in printed["df"]] == ["1.774e+02", "3.140e+02", "1.774e+02", "3.140e+02"]
    assert printed["Pr(>|t|)"] == ["< 2e-16", "< 2e-16", "0.236784", "0.000156"]
    assert format_pvalues([0.5, 1e-20]) == ["0.5", "<2e-16"]
    assert format_pvalues([0.0234, 1e-20, 1e-5]) == ["0.0234", "<2e-16", "1e-05"]


def test_readme_shows_the_summary_as_printed(summaries):
    readme = (TESTS.parent / "README.md").read_text()
    start = readme.index("Linear mixed model fit by REML. t-tests use")
    assert readme[start:readme.index("```", start)] == str(summaries("sleepstudy_reml"))


def test_the_summary_is_kept_for_the_fits_theta():
    """Jupyter shows text and HTML in turn: the df are computed once, again when θ or ddf change."""
    fit = blm.LMM(SLEEP[0], blm.datasets.load("sleepstudy")).fit()
    first = fit.summary()
    assert fit.summary() is first and fit.summary(ddf="asymptotic") is not first
    fit.theta = fit.theta * 1.5
    assert fit.summary(ddf="asymptotic").random_effects["Variance"].iloc[0] != first.random_effects["Variance"].iloc[0]
