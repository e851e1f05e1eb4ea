"""The same fit whatever the BLAS thread count (issue 12), and the limit's own behaviour.

Each thread count runs in a fresh interpreter with OPENBLAS_NUM_THREADS / OMP_NUM_THREADS set
before NumPy loads, so the two processes really start with different BLAS settings (the child
reports the count it found); each fits twice, so a run is also checked against itself.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from threadpoolctl import threadpool_info

from bayeslmm import threads
from bayeslmm.threads import large_block, large_block_threads, large_blocks_from, one_blas_thread
from conftest import REPO

# Fitted in the child: three grouping factors, crossed and nested (on the code before issue 12 its
# optimizer took 151 evaluations with one thread and 154 with two), and a residual structure.
CHILD = """
import json, sys
import numpy as np
import pandas as pd
from threadpoolctl import threadpool_info
import bayeslmm as blm
from bayeslmm.threads import large_block_threads, large_blocks_from, one_blas_thread

threads = sorted({pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"})
schools = blm.LMM("y ~ ses + (1 + ses | school) + (1 | class) + (1 | hood)",
                  pd.read_csv("tests/data/schools_hoods.csv"))
sitka = blm.LMM("size ~ time * treat + (1 | tree)", blm.datasets.load("Sitka"), residual="ar1(visit | tree)")
fits = {}
for name, model, method in [("schools_reml", schools, "REML"), ("schools_ml", schools, "ML"),
                            ("ar1_reml", sitka, "REML")]:
    runs = [model.fit(method=method) for _ in range(2)]
    fits[name] = [{"loglik": fit.loglik, "theta": list(fit.theta), "phi": list(fit.state.phi),
                   "evaluations": fit.state.optsum.n_evaluations} for fit in runs]
# a crossed design whose second block (300 rows) takes the large-block path, the threshold lowered to it
rng = np.random.default_rng(4)
ratings = pd.DataFrame({"user": rng.integers(0, 500, 4000), "item": rng.integers(0, 300, 4000)})
ratings["y"] = (rng.normal(size=500)[ratings.user] + rng.normal(size=300)[ratings.item]
                + rng.normal(size=len(ratings)))
crossed = blm.LMM("y ~ 1 + (1 | user) + (1 | item)", ratings)
with large_blocks_from(300), one_blas_thread():
    block_threads = large_block_threads(crossed.stats.pairs.size)
with large_blocks_from(300):
    runs = [crossed.fit() for _ in range(2)]
fits["large_block_reml"] = [{"loglik": fit.loglik, "theta": list(fit.theta), "phi": [],
                             "evaluations": fit.state.optsum.n_evaluations} for fit in runs]
# the default route (no large_blocks_from): its threshold lowered to the same block, the cores idle
import bayeslmm.threads as threads_module
threads_module.LARGE_BLOCK, threads_module.os.getloadavg = 300, lambda: (0.0, 0.0, 0.0)
with one_blas_thread():
    default_threads = large_block_threads(crossed.stats.pairs.size)
runs = [crossed.fit() for _ in range(2)]
fits["large_block_default"] = [{"loglik": fit.loglik, "theta": list(fit.theta), "phi": [],
                                "evaluations": fit.state.optsum.n_evaluations} for fit in runs]
json.dump({"threads": threads, "block_threads": block_threads, "default_threads": default_threads, "fits": fits},
          sys.stdout)
"""


def child_with_blas_threads(count: int) -> subprocess.Popen:
    env = {**os.environ, "OPENBLAS_NUM_THREADS": str(count), "OMP_NUM_THREADS": str(count),
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-c", CHILD], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def by_threads() -> dict[int, dict]:
    """The children's fits by BLAS thread count (the two run side by side)."""
    children = {count: child_with_blas_threads(count) for count in (1, 2)}
    out = {}
    for count, child in children.items():
        stdout, stderr = child.communicate(timeout=300)
        assert child.returncode == 0, stderr
        out[count] = json.loads(stdout)
    return out


def test_the_children_start_with_different_blas_thread_counts(by_threads):
    assert by_threads[1]["threads"] == [1]
    assert by_threads[2]["threads"] == [2]
    # inside a fit a block from the threshold on gets the caller's threads
    assert by_threads[1]["block_threads"] == 1 and by_threads[2]["block_threads"] == 2
    assert by_threads[1]["default_threads"] == 1 and by_threads[2]["default_threads"] == 2


@pytest.mark.parametrize("name", ["schools_reml", "schools_ml", "ar1_reml"])
def test_one_and_two_blas_threads_give_the_same_fit(by_threads, name):
    one, two = by_threads[1]["fits"][name][0], by_threads[2]["fits"][name][0]
    assert abs(one["loglik"] - two["loglik"]) <= 1e-8
    np.testing.assert_allclose(one["theta"], two["theta"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(one["phi"], two["phi"], rtol=0, atol=1e-6)
    assert one["evaluations"] == two["evaluations"]  # the optimizer took the same path


def test_a_large_block_on_the_callers_threads_gives_the_same_fit(by_threads):
    """The second block's Cholesky factor and inverse on 1 or 2 BLAS threads (the threshold
    lowered; opted in, and by default on idle cores): the log-likelihood to 1e-8, θ to 1e-6 (the
    optimizer's path may differ)."""
    for name in ("large_block_reml", "large_block_default"):
        one, two = by_threads[1]["fits"][name][0], by_threads[2]["fits"][name][0]
        assert abs(one["loglik"] - two["loglik"]) <= 1e-8
        np.testing.assert_allclose(one["theta"], two["theta"], rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", ["schools_reml", "schools_ml", "ar1_reml", "large_block_reml", "large_block_default"])
def test_a_fit_repeated_in_one_process_is_identical(by_threads, name):
    for count in (1, 2):
        first, second = by_threads[count]["fits"][name]
        assert first == second


def blas_thread_counts() -> list[int]:
    return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]


def test_one_blas_thread_limits_inside_and_restores_after():
    before = blas_thread_counts()
    with one_blas_thread():
        assert blas_thread_counts() == [1] * len(before)
        with one_blas_thread():  # nested, as a fit inside a bootstrap
            assert blas_thread_counts() == [1] * len(before)
        assert blas_thread_counts() == [1] * len(before)
    assert blas_thread_counts() == before


def test_a_large_block_gets_the_callers_threads_back_inside_a_fit():
    caller = blas_thread_counts()
    with large_blocks_from(100), one_blas_thread():
        assert large_block_threads(99) == 1 and large_block_threads(100) == max(caller)
        with large_block(100):
            assert blas_thread_counts() == [max(caller)] * len(caller)
        assert blas_thread_counts() == [1] * len(caller)
    assert large_block_threads(100) == 1  # outside a fit nothing is limited or raised


@pytest.mark.parametrize("load, idle", [(0.2, True), (1.4, True), (2.0, False), (6.5, False)])
def test_by_default_a_large_block_gets_the_callers_threads_only_on_idle_cores(monkeypatch, load, idle):
    """Without large_blocks_from: from LARGE_BLOCK rows on, the caller's threads where the load
    average (the fit's own thread counted) leaves a core for each extra one (2 cores here)."""
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (load, load, load))
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 2)
    token = threads._caller_threads.set(2)  # as one_blas_thread records a caller with two threads
    try:
        assert threads.large_block_threads(threads.LARGE_BLOCK - 1) == 1
        assert threads.large_block_threads(threads.LARGE_BLOCK) == (2 if idle else 1)
        with large_blocks_from(math.inf):
            assert threads.large_block_threads(10**6) == 1  # opted out
    finally:
        threads._caller_threads.reset(token)
