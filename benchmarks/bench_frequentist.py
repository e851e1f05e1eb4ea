"""REML fits: bayeslmm against statsmodels MixedLM (and lme4, when R is installed), same run.

    .venv/bin/python -m pip install -e ".[bench]"      # statsmodels
    .venv/bin/python benchmarks/bench_frequentist.py [--sizes 2000 20000 1000000] [--no-lme4]

Simulates y ~ x1 + x2 + (1 + x1 | g) (sds 1 and 0.5, correlation 0.3, σ = 1) at each
size (200, 2,000 and 20,000 groups), and a crossed model y ~ x + (1 | f1) + (1 | f2)
with 3,000 × 1,000 levels on 75,000 rows.  Times the fit with the data already in a
DataFrame; prints seconds and the peers' time divided by ours.  lme4 is timed by
Rscript on the same data (only the lmer call), if R with lme4 is on the PATH.
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

import bayeslmm as blm

sys.path.insert(0, str(Path(__file__).parent))
from rscript import run_r_on_csv  # noqa: E402

GROUPS = {2_000: 200, 20_000: 2_000, 1_000_000: 20_000}


def simulate_slopes(n: int, groups: int, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g = rng.integers(0, groups, n)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    cov = np.array([[1.0, 0.3 * 0.5], [0.3 * 0.5, 0.25]])
    b = rng.normal(size=(groups, 2)) @ np.linalg.cholesky(cov).T
    y = 1 + 0.5 * x1 - 0.3 * x2 + b[g, 0] + b[g, 1] * x1 + rng.normal(size=n)
    return pd.DataFrame({"y": y, "x1": x1, "x2": x2, "g": np.char.add("g", g.astype(str))})


def simulate_crossed(n: int = 75_000, levels=(3_000, 1_000), seed: int = 2) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    f1, f2 = rng.integers(0, levels[0], n), rng.integers(0, levels[1], n)
    x = rng.normal(size=n)
    y = 1 + 0.5 * x + rng.normal(size=levels[0])[f1] + 0.5 * rng.normal(size=levels[1])[f2] + rng.normal(size=n)
    return pd.DataFrame({"y": y, "x": x, "f1": np.char.add("a", f1.astype(str)), "f2": np.char.add("b", f2.astype(str))})


def time_bayeslmm(formula: str, data: pd.DataFrame) -> tuple[float, float]:
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = blm.LMM(formula, data).fit()
    return time.perf_counter() - start, fit.loglik


def time_statsmodels(data: pd.DataFrame) -> tuple[float, float]:
    import statsmodels.formula.api as smf

    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = smf.mixedlm("y ~ x1 + x2", data, groups=data["g"], re_formula="~x1").fit(reml=True)
    return time.perf_counter() - start, float(fit.llf)


R_SCRIPT = """
suppressMessages(library(lme4))
d <- read.csv("{path}")
t <- system.time(f <- suppressMessages(suppressWarnings(lmer({formula}, data = d, REML = TRUE))))[["elapsed"]]
cat(t, as.numeric(logLik(f)), "\\n")
"""


def time_lme4(formula: str, data: pd.DataFrame) -> tuple[float, float] | None:
    out = run_r_on_csv(R_SCRIPT.replace("{formula}", formula), data, "lme4")
    return None if out is None else (out[0], out[1])


def second_fit_seconds() -> float:
    model = blm.LMM("Reaction ~ Days + (Days | Subject)", blm.datasets.load("sleepstudy"))
    model.fit()
    start = time.perf_counter()
    blm.LMM("Reaction ~ Days + (Days | Subject)", blm.datasets.load("sleepstudy")).fit()
    return time.perf_counter() - start


def report(label: str, ours: tuple[float, float], peers: dict[str, tuple[float, float] | None]) -> None:
    print(f"{label}: bayeslmm {ours[0]:.2f} s (logLik {ours[1]:.3f})")
    for name, result in peers.items():
        if result is not None:
            print(f"    {name:12s} {result[0]:8.2f} s (logLik {result[1]:.3f})  ratio {result[0] / ours[0]:6.1f}x")
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(GROUPS))
    parser.add_argument("--no-lme4", action="store_true")
    parser.add_argument("--no-statsmodels", action="store_true")
    args = parser.parse_args()
    formula = "y ~ x1 + x2 + (1 + x1 | g)"
    print(f"second REML fit of sleepstudy in one process: {second_fit_seconds():.3f} s")
    for n in args.sizes:
        data = simulate_slopes(n, GROUPS.get(n, max(n // 50, 2)))
        peers = {"statsmodels": None if args.no_statsmodels else time_statsmodels(data),
                 "lme4": None if args.no_lme4 else time_lme4(formula, data)}
        report(f"{formula}, n = {n:,}", time_bayeslmm(formula, data), peers)
    crossed = simulate_crossed()
    formula = "y ~ x + (1 | f1) + (1 | f2)"
    report(f"{formula}, n = 75,000, 3,000 x 1,000 levels", time_bayeslmm(formula, crossed),
           {"lme4": None if args.no_lme4 else time_lme4(formula, crossed)})


if __name__ == "__main__":
    main()
