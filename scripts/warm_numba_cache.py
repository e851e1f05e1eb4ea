"""Compile bayeslmm's numba kernels once, into numba's on-disk cache (run by scripts/setup.sh).

The kernels (``bayeslmm/linalg/compiled.py``, ``compiled_blocked.py``, ``compiled_residual.py`` and
nutpie's callbacks in ``bayeslmm/bayes/nutpie_callbacks.py``) are ``cache=True``: compiled on first use and loaded
from the cache in every later process.  The first use costs about 45 s in all; paying it at
set-up keeps it out of the first fit (and out of the test suite's first tests).
"""
import warnings

import numpy as np

import bayeslmm as blm
from bayeslmm.bayes import nutpie_callbacks  # compiling its C callbacks compiles the log-densities

warnings.simplefilter("ignore")
for formula, name in [("Reaction ~ Days + (Days | Subject)", "sleepstudy"),
                      ("diameter ~ 1 + (1 | plate) + (1 | sample)", "Penicillin")]:
    blm.LMM(formula, blm.datasets.load(name)).fit()  # the REML objectives of one and of two factors
# a residual structure's callbacks, and its weights and whitened statistics the exact draws call from Python
nutpie_callbacks.residual_callbacks()
from bayeslmm.bayes import kernel_residual  # noqa: E402
from bayeslmm.linalg import compiled_residual  # noqa: E402

sitka = blm.LMM("size ~ time + (1 | tree)", blm.datasets.load("Sitka"), residual="ar1(visit | tree)")
arguments = kernel_residual.residual_arguments(sitka._bayes_setup(None), 0)
weights = compiled_residual.residual_weights(np.zeros(1), *arguments[:6])[1]
compiled_residual.weighted_statistics(weights, *arguments[6:])
