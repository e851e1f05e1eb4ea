"""Compile bayeslmm's numba kernels once, into numba's on-disk cache (run by scripts/setup.sh).

The kernels (``bayeslmm/linalg/compiled.py``, ``compiled_blocked.py``, ``compiled_residual.py``,
nutpie's callbacks in ``bayeslmm/bayes/nutpie_callbacks.py`` and the posterior's loops in
``bayeslmm/bayes/compiled_draws.py``) are ``cache=True``: compiled on first use and loaded
from the cache in every later process.  The first use costs about 45 s in all; paying it at
set-up keeps it out of the first fit (and out of the test suite's first tests).
"""
import importlib.util
import warnings

import numpy as np

import bayeslmm as blm
from bayeslmm.bayes import kernel_residual, nutpie_callbacks
from bayeslmm.linalg import compiled_residual

warnings.simplefilter("ignore")
for several_factors in (False, True):  # compiling the C callbacks compiles the log-densities
    nutpie_callbacks.compiled_callbacks(several_factors)
for formula, name in [("Reaction ~ Days + (Days | Subject)", "sleepstudy"),
                      ("diameter ~ 1 + (1 | plate) + (1 | sample)", "Penicillin")]:
    blm.LMM(formula, blm.datasets.load(name)).fit()  # the REML objectives of one and of two factors
if importlib.util.find_spec("nutpie"):  # a tiny NUTS fit: the exact draws of β and b, the log-likelihood
    blm.LMM("Reaction ~ Days + (Days | Subject)", blm.datasets.load("sleepstudy")).fit(
        method="NUTS", draws=5, tune=5, chains=1, random_seed=1, progressbar=False)
# a residual structure's callbacks, and its weights and whitened statistics the exact draws call from Python
nutpie_callbacks.residual_callbacks()

sitka = blm.LMM("size ~ time + (1 | tree)", blm.datasets.load("Sitka"), residual="ar1(visit | tree)")
arguments = kernel_residual.residual_arguments(sitka._bayes_setup(None), 0)
weights = compiled_residual.residual_weights(np.zeros(1), *arguments[:6])[1]
compiled_residual.weighted_statistics(weights, *arguments[6:])
