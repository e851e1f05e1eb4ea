"""The docstring examples run as written (the notebooks: test_notebooks.py)."""
from __future__ import annotations

import doctest
import importlib
import importlib.util
import pkgutil
from pathlib import Path

import matplotlib
import pytest

import bayeslmm

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
