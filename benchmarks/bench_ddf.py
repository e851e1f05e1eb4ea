"""Kenward–Roger and type-3 F tests: bayeslmm against pbkrtest / lmerTest (same run, same data).

    .venv/bin/python benchmarks/bench_ddf.py [--sizes 2000 5000] [--no-r]

Simulates y ~ x1 + x2 + (1 + x1 | g) (as bench_frequentist.py; n / 10 groups), fits it by
REML once, then times, with the fit already made: the KR coefficient table, the KR type-3
anova and the Satterthwaite type-3 anova.  R times pbkrtest::vcovAdj + lmerTest's
summary(ddf = "Kenward-Roger") and anova(type = 3, ddf = ...) on its own lmer fit of the same
CSV (only those calls).  Prints seconds and R's time over ours, and the largest relative
difference in the KR df.  lmerTest computes its Satterthwaite Hessian and Jacobian inside
lmer(), so its anova time leaves that part out; ours includes it (Richardson-extrapolated
differences, about 0.3 s here).  Run with the worktree first on the path, e.g.
``PYTHONPATH=. .venv/bin/python benchmarks/bench_ddf.py``.
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

import bayeslmm as blm

sys.path.insert(0, str(Path(__file__).parent))
from bench_frequentist import simulate_slopes  # noqa: E402
from rscript import run_r_on_csv  # noqa: E402

FORMULA = "y ~ x1 + x2 + (1 + x1 | g)"
R_SCRIPT = """
suppressMessages({library(lmerTest); library(pbkrtest)})
d <- read.csv("{path}")
f <- lmer({formula}, data = d, REML = TRUE)
t1 <- system.time(s <- summary(f, ddf = "Kenward-Roger"))[["elapsed"]]
t2 <- system.time(a <- anova(f, type = 3, ddf = "Kenward-Roger"))[["elapsed"]]
t3 <- system.time(b <- anova(f, type = 3, ddf = "Satterthwaite"))[["elapsed"]]
cat(t1, t2, t3, s$coefficients[, "df"], "\\n")
"""


def timed(f):
    start = time.perf_counter()
    out = f()
    return time.perf_counter() - start, out


def time_r(data) -> list[float] | None:
    return run_r_on_csv(R_SCRIPT.replace("{formula}", FORMULA), data, "R")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 5000])
    parser.add_argument("--no-r", action="store_true")
    args = parser.parse_args()
    for n in args.sizes:
        data = simulate_slopes(n, n // 10)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = blm.LMM(FORMULA, data).fit()
        t_coef, table = timed(lambda: fit.coef_table(ddf="kenward-roger"))
        t_kr, _ = timed(lambda: fit.anova(ddf="kenward-roger"))
        t_sat, _ = timed(lambda: fit.anova(ddf="satterthwaite"))
        print(f"n = {n}: bayeslmm KR coef_table {t_coef:.3f} s, KR anova {t_kr:.3f} s, "
              f"Satterthwaite anova {t_sat:.3f} s")
        r = None if args.no_r else time_r(data)
        if r:
            print(f"  lmerTest/pbkrtest: KR summary {r[0]:.2f} s ({r[0] / t_coef:.0f}x), KR anova {r[1]:.2f} s "
                  f"({r[1] / t_kr:.0f}x), Satterthwaite anova {r[2]:.2f} s ({r[2] / t_sat:.2f}x, derivatives made in lmer); "
                  f"KR df max rel. diff {np.max(np.abs(table['df'].to_numpy() / np.array(r[3:]) - 1)):.1e}")


if __name__ == "__main__":
    main()
