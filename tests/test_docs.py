"""The docstring examples and the notebooks run as written."""
from __future__ import annotations

import doctest
import importlib
import importlib.util
import json
import pkgutil
from pathlib import Path

import matplotlib
import pytest

import bayeslmm
from conftest import REPO

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


@pytest.mark.filterwarnings("ignore:.*BLAS.*", "ignore::bayeslmm.PosteriorWarning")
@pytest.mark.parametrize("path", sorted((REPO / "notebooks").glob("*.ipynb")), ids=lambda p: p.name)
def test_notebook_code_runs(path):
    cells = json.loads(path.read_text())["cells"]
    namespace: dict = {}
    for cell in cells:
        if cell["cell_type"] == "code":
            exec(compile("".join(cell["source"]), f"{path.name}", "exec"), namespace)
