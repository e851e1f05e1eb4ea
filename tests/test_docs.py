"""The docstring examples and the notebooks run as written."""
from __future__ import annotations

import doctest
import json

import matplotlib
import pytest

import bayeslmm.datasets
import bayeslmm.frames
import bayeslmm.inference.core
import bayeslmm.inference.kr_blocks
import bayeslmm.lmm
import bayeslmm.persist
import bayeslmm.results.bayesian
import bayeslmm.results.frequentist
from conftest import REPO

matplotlib.use("Agg")


@pytest.mark.filterwarnings("ignore:.*BLAS.*", "ignore::bayeslmm.PosteriorWarning")
@pytest.mark.parametrize("module", [bayeslmm.lmm, bayeslmm.results.frequentist, bayeslmm.results.bayesian, bayeslmm.inference.core,
                                    bayeslmm.datasets, bayeslmm.inference.kr_blocks, bayeslmm.frames,
                                    bayeslmm.persist])
def test_docstring_examples(module):
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
