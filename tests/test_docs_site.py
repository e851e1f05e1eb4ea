"""The documentation site builds without warnings, and the "Coming from R" page names only calls
that exist."""
from __future__ import annotations

import ast
import inspect
import os
import re
import subprocess
import sys

import pytest

import bayeslmm
from bayeslmm import BayesResult, LMMResult
from bayeslmm.lmm import LMM
from conftest import REPO

FROM_R = (REPO / "docs" / "from_r.md").read_text()
# the names the page's bayeslmm column starts its calls from, and what they stand for
ROOTS = {"blm": bayeslmm, "cov": bayeslmm.cov, "model": LMM, "fit": LMMResult, "small": LMMResult,
         "m": LMMResult, "post": BayesResult, "post_a": BayesResult, "post_b": BayesResult}


def test_site_builds_strictly(tmp_path):
    """`mkdocs build --strict`: a broken link, a missing page or notebook, an API reference that
    does not resolve or a docstring mkdocstrings cannot read fails the build. The notebooks are
    not executed (mkdocs-jupyter, execute: false); the build runs in tmp_path (its caches too)."""
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(REPO / "mkdocs.yml"),
                             "-d", str(tmp_path / "site")], cwd=tmp_path, capture_output=True, text=True,
                            env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    pages = {path.relative_to(tmp_path / "site").as_posix() for path in (tmp_path / "site").rglob("index.html")}
    assert {"from_r/index.html", "api/results/index.html", "notebooks/mmrm_clinical_trial/index.html"} <= pages
    results_page = (tmp_path / "site" / "api" / "results" / "index.html").read_text()
    assert "coef_table" in results_page and "sample_posterior_predictive" in results_page


def test_from_r_code_blocks_run():
    """The page's Python blocks run as written."""
    blocks = re.findall(r"```python\n(.*?)```", FROM_R, flags=re.S)
    assert blocks
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "from_r.md", "exec"), namespace)
    assert isinstance(namespace["fit"], LMMResult)


def _bayeslmm_cells() -> list[str]:
    """The second column of every table row after the header rows."""
    cells = []
    for line in FROM_R.splitlines():
        if line.startswith("| ") and not line.startswith(("| R |", "|---")):
            columns = _split_row(line)
            assert len(columns) == 2, line
            cells.append(columns[1])
    return cells


def _split_row(line: str) -> list[str]:
    """A table row's cells; a | inside a code span does not separate cells (as Python-Markdown reads it)."""
    cells, current, in_code = [], "", False
    for char in line.strip().strip("|"):
        if char == "`":
            in_code = not in_code
        if char == "|" and not in_code:
            cells.append(current.strip())
            current = ""
        else:
            current += char
    return cells + [current.strip()]


def _parse(span: str) -> ast.AST | None:
    """An expression, or keyword arguments (``priors={...}``) read as a call's; None for a
    command line."""
    if span.startswith("bayeslmm "):
        return None
    try:
        return ast.parse(span, mode="eval")
    except SyntaxError:
        return ast.parse(f"f({span})", mode="eval")


def _has(owner, name: str) -> bool:
    """A module's or class's attribute, or an attribute a class's __init__ sets on its instances."""
    if hasattr(owner, name):
        return True
    init = getattr(owner, "__init__", None)
    return inspect.isclass(owner) and hasattr(init, "__code__") and name in init.__code__.co_names


def _resolve(node):
    """What a Name/Attribute/Call chain rooted at ROOTS refers to (a class stands for its
    instances); None when it is not rooted there or its value is not known statically."""
    if isinstance(node, ast.Name):
        return ROOTS.get(node.id)
    if isinstance(node, ast.Attribute):
        owner = _resolve(node.value)
        if owner is None:
            return None
        assert _has(owner, node.attr), f"{ast.unparse(node)}: {owner!r} has no {node.attr!r}"
        return getattr(owner, node.attr, None)
    if isinstance(node, ast.Call):
        called = _resolve(node.func)
        return called if inspect.isclass(called) else None
    return None


def _check_keywords(call: ast.Call) -> bool:
    """The call's keyword arguments are parameters of what it calls. Returns whether it was checked."""
    called = _resolve(call.func)
    if called is None or not callable(called):
        return False
    # named parameters only: bayeslmm's **unknown catch-alls exist to refuse other names
    parameters = inspect.signature(called.__init__ if inspect.isclass(called) else called).parameters
    for keyword in call.keywords:
        assert keyword.arg in parameters, f"{ast.unparse(call)}: no argument {keyword.arg!r}"
    return True


def test_from_r_calls_exist():
    """Every code span of the bayeslmm column parses, and every attribute and keyword argument of a
    call rooted at blm, cov, model, fit or post exists."""
    checked = 0
    for cell in _bayeslmm_cells():
        spans = re.findall(r"`([^`]+)`", cell)
        assert spans, f"a row without a bayeslmm call: {cell}"
        for span in spans:
            tree = _parse(span)
            if tree is None:
                continue
            for node in ast.walk(tree):
                if isinstance(node, ast.Attribute) and _resolve(node) is not None:
                    checked += 1
                if isinstance(node, ast.Call):
                    checked += _check_keywords(node)
    assert checked > 100


@pytest.mark.parametrize("span, problem", [("fit.confidence()", "no 'confidence'"),
                                           ("fit.confint(methd='wald')", "no argument 'methd'")])
def test_from_r_check_catches_a_wrong_call(span, problem):
    """The check above fails on a misspelt method or argument."""
    with pytest.raises(AssertionError, match=problem):
        for node in ast.walk(_parse(span)):
            _resolve(node) if isinstance(node, ast.Attribute) else None
            if isinstance(node, ast.Call):
                _check_keywords(node)


def test_every_page_and_notebook_is_in_the_nav():
    """A page or notebook left out of mkdocs.yml's nav would be built but hard to find."""
    nav = (REPO / "mkdocs.yml").read_text().split("\nnav:", 1)[1].split("\nplugins:", 1)[0]
    pages = [path.relative_to(REPO / "docs").as_posix() for path in (REPO / "docs").glob("*.md")]
    pages += [f"notebooks/{path.name}" for path in (REPO / "notebooks").glob("*.ipynb")]
    pages += [f"api/{path.name}" for path in (REPO / "docs" / "api").glob("*.md")]
    assert [page for page in pages if f": {page}" not in nav] == []
