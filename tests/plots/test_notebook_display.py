"""A returned Figure displays as an image in an IPython session without ``%matplotlib inline``."""
from __future__ import annotations

import base64

import pytest

import bayeslmm as blm


@pytest.fixture
def shell():
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    yield shell
    InteractiveShell.clear_instance()


def test_a_plot_displays_as_a_png_in_ipython(shell):
    from matplotlib.figure import Figure

    fit = blm.LMM("Yield ~ 1 + (1 | Batch)", blm.datasets.load("Dyestuff")).fit()
    assert "image/png" not in shell.display_formatter.format(Figure())[0]  # IPython alone shows text
    data, _ = shell.display_formatter.format(blm.plots.caterpillar(fit))
    assert base64.b64decode(data["image/png"])[:4] == b"\x89PNG"
