"""results/printing.py: the summary text against lme4's printed ``summary(lmer)`` (row labels,
column headers and numbers, block by block), and the HTML against the text.

lme4's output is stored in tests/reference/lme4_summary_*.txt (make_summary_reference.R, lme4
1.1.31). lme4 prints 3 to 5 significant digits and its optimiser stops earlier than ours, so
a number agrees when it is within half a unit of lme4's last printed digit plus 1e-4 relative.
"""
from __future__ import annotations

import re

import numpy as np
import pytest

import bayeslmm as blm
from conftest import TESTS

CASES = {  # reference file: (formula, dataset, method)
    "sleepstudy_reml": ("Reaction ~ Days + (Days | Subject)", "sleepstudy", "REML"),
    "sleepstudy_ml": ("Reaction ~ Days + (Days | Subject)", "sleepstudy", "ML"),
    "penicillin_reml": ("diameter ~ 1 + (1 | plate) + (1 | sample)", "Penicillin", "REML"),
}


@pytest.fixture(scope="module")
def summaries():
    cache = {}

    def get(key):
        if key not in cache:
            formula, dataset, method = CASES[key]
            cache[key] = blm.LMM(formula, blm.datasets.load(dataset)).fit(method).summary()
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
    tokens = [token for line in lines for token in line.split()]
    return [t for t in tokens if not _is_number(t)], [t for t in tokens if _is_number(t)]


def _assert_close(ours: list[str], printed: list[str], context: str):
    assert len(ours) == len(printed), (context, ours, printed)
    for a, b in zip(ours, printed):
        decimals = len(b.split(".")[1]) if "." in b else 0
        tolerance = 0.5 * 10.0**-decimals + 0.5e-4 + 1e-4 * abs(float(b))
        assert abs(float(a) - float(b)) <= tolerance, (context, a, b)


@pytest.mark.parametrize("key", CASES)
def test_summary_text_has_lme4s_blocks_labels_and_numbers(key, summaries):
    ours = _blocks(str(summaries(key)))
    lme4 = _blocks((TESTS / "reference" / f"lme4_summary_{key}.txt").read_text())
    assert len(ours) == len(lme4)
    # the heading: lme4's title without its class tag, the formula; lme4's "Data:" line is not ours
    assert ours[0][0] == re.sub(r"\s*\['lmerMod'\]", "", lme4[0][0])
    assert ours[0][1] == lme4[0][1]
    for mine, theirs in zip(ours[1:], lme4[1:]):
        (my_labels, my_numbers), (their_labels, their_numbers) = _tokens(mine), _tokens(theirs)
        assert my_labels == their_labels, (mine, theirs)
        _assert_close(my_numbers, their_numbers, theirs[0])
    counts = [line for line in sum(lme4, []) if line.startswith("Number of obs")]
    assert counts[0] in str(summaries(key)).splitlines()


def _html_numbers(html: str) -> list[str]:
    cells = re.findall(r"<td>(.*?)</td>", html)
    return [cell for cell in cells if _is_number(cell)]


@pytest.mark.parametrize("key", CASES)
def test_html_renders_the_numbers_of_the_text(key, summaries):
    """The HTML tables hold the text's numbers in the same order (criteria, scaled residuals,
    random effects, fixed effects), at least to the text's precision."""
    summary = summaries(key)
    blocks = _blocks(str(summary))
    wanted = [b for b in blocks[1:] if not b[0].startswith("Correlation of Fixed Effects")]
    lines = [line for block in wanted for line in block if not line.startswith("Number of obs")]
    text_numbers = _tokens(lines)[1]
    _assert_close(_html_numbers(summary._repr_html_()), text_numbers, key)
    assert "Number of obs" in summary._repr_html_()


def test_summary_numbers_are_the_fits(summaries):
    """The printed table values are the fit's own (no stale or rounded copies)."""
    fit = blm.LMM(CASES["sleepstudy_reml"][0], blm.datasets.load("sleepstudy")).fit()
    summary = summaries("sleepstudy_reml")
    np.testing.assert_allclose(summary.fixed_effects["Estimate"], fit.fixef(), rtol=1e-12)
    np.testing.assert_allclose(summary.fixed_effects["t value"], fit.fixef() / fit.se(), rtol=1e-12)
    np.testing.assert_allclose(summary.random_effects["Variance"].iloc[-1], fit.sigma**2, rtol=1e-12)
    assert summary.criteria.iloc[0, 0] == pytest.approx(fit.deviance, rel=1e-12)
