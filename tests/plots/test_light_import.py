"""Importing the plots does not import matplotlib or arviz-plots: a plot imports them when drawn."""
from __future__ import annotations

import subprocess
import sys

from conftest import REPO


def test_importing_the_plots_imports_no_plotting_library():
    code = ("import sys, bayeslmm, bayeslmm.plots; "
            "print(sorted(m for m in ('matplotlib', 'arviz_plots') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
