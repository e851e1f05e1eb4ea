"""Residual covariance structures: bayeslmm against nlme (when R is installed), same run.

    .venv/bin/python benchmarks/bench_residual.py [--no-nlme] [--quick]

- Unstructured covariance over 10 visits, 5,000 subjects (50,000 rows), a treatment-by-visit
  mean ``y ~ treat * C(visit)`` (20 fixed effects, 54 covariance parameters besides σ), REML;
  complete data and with 10 % of visits missing at random.  Target: under 10 s.
- AR(1) over 10 visits, 100,000 subjects (1,000,000 rows), ``y ~ time + treat``, REML, as a
  GLS and with a random intercept per subject.  Target: under 30 s.

nlme (``gls(..., corSymm + varIdent)``, ``gls``/``lme`` with ``corAR1``) is timed by Rscript on
the same data: on 500 subjects for the unstructured model and 10,000 for AR(1) (at the full sizes
nlme takes far longer than a benchmark run allows), so the printed ratios compare like with like
on those sizes.  Times run from the DataFrame to the fit.
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


def simulate_unstructured(subjects: int, visits: int = 10, missing: float = 0.0, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    t = np.arange(1, visits + 1)
    sd = 1 + 0.1 * t
    corr = 0.3 + 0.6 * np.exp(-np.abs(t[:, None] - t[None]) / 3)
    np.fill_diagonal(corr, 1)
    errors = rng.normal(size=(subjects, visits)) @ np.linalg.cholesky(corr * np.outer(sd, sd)).T
    treat = rng.integers(0, 2, subjects)
    y = 10 + 0.5 * t[None] + 0.3 * treat[:, None] * t[None] + errors
    data = pd.DataFrame({"y": y.ravel(), "visit": np.tile(t, subjects),
                         "subject": np.repeat(np.arange(subjects), visits),
                         "treat": np.repeat(np.where(treat, "active", "placebo"), visits)})
    return data[rng.random(len(data)) >= missing].reset_index(drop=True)


def simulate_ar1(subjects: int, visits: int = 10, rho: float = 0.6, intercept_sd: float = 1.0,
                 seed: int = 4) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    errors = np.empty((subjects, visits))
    errors[:, 0] = rng.normal(size=subjects)
    for j in range(1, visits):
        errors[:, j] = rho * errors[:, j - 1] + np.sqrt(1 - rho**2) * rng.normal(size=subjects)
    treat = rng.integers(0, 2, subjects)
    t = np.arange(1, visits + 1)
    y = 5 + 0.2 * t[None] + 0.5 * treat[:, None] + intercept_sd * rng.normal(size=(subjects, 1)) + errors
    return pd.DataFrame({"y": y.ravel(), "time": np.tile(t, subjects),
                         "subject": np.repeat(np.arange(subjects), visits), "treat": np.repeat(treat, visits)})


def time_ours(formula: str, data: pd.DataFrame, residual: str) -> tuple[float, float]:
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = blm.LMM(formula, data, residual=residual).fit()
    return time.perf_counter() - start, fit.loglik


NLME = {
    "un": 'gls(y ~ factor(treat) * factor(visit), data = d, correlation = corSymm(form = ~ 1 | subject), '
          'weights = varIdent(form = ~ 1 | visit), method = "REML")',
    "ar1_gls": 'gls(y ~ time + treat, data = d, correlation = corAR1(form = ~ time | subject), method = "REML")',
    "ar1_lme": 'lme(y ~ time + treat, random = ~ 1 | subject, data = d, '
               'correlation = corAR1(form = ~ time | subject), method = "REML")',
}


def time_nlme(call: str, data: pd.DataFrame) -> tuple[float, float] | None:
    script = ('suppressMessages(library(nlme)); d <- read.csv("{path}")\n'
              f"t <- system.time(f <- {call})[['elapsed']]\n"
              'cat(t, as.numeric(logLik(f)), "\\n")\n')
    out = run_r_on_csv(script, data, "nlme")
    return None if out is None else (out[0], out[1])


def report(label: str, ours: tuple[float, float], peer: tuple[float, float] | None = None) -> None:
    line = f"{label}: bayeslmm {ours[0]:.2f} s (logLik {ours[1]:.3f})"
    if peer is not None:
        line += f"; nlme {peer[0]:.2f} s (logLik {peer[1]:.3f}), ratio {peer[0] / ours[0]:.1f}x"
    print(line)
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-nlme", action="store_true")
    parser.add_argument("--quick", action="store_true", help="only the nlme-sized comparisons")
    args = parser.parse_args()
    nlme = (lambda call, data: None) if args.no_nlme else time_nlme
    un_formula, un_structure = "y ~ treat * C(visit)", "us(visit | subject)"

    small = simulate_unstructured(500)
    report("unstructured, 10 visits, 500 subjects", time_ours(un_formula, small, un_structure), nlme(NLME["un"], small))
    small_ar1 = simulate_ar1(10_000)
    report("AR(1) GLS, 100,000 rows", time_ours("y ~ time + treat", small_ar1, "ar1(time | subject)"),
           nlme(NLME["ar1_gls"], small_ar1))
    report("AR(1) + (1 | subject), 100,000 rows",
           time_ours("y ~ time + treat + (1 | subject)", small_ar1, "ar1(time | subject)"),
           nlme(NLME["ar1_lme"], small_ar1))
    if args.quick:
        return
    for missing in (0.0, 0.1):
        data = simulate_unstructured(5_000, missing=missing)
        report(f"unstructured, 10 visits, 5,000 subjects, {missing:.0%} visits missing ({len(data):,} rows)",
               time_ours(un_formula, data, un_structure))
    large = simulate_ar1(100_000)
    report("AR(1) GLS, 1,000,000 rows", time_ours("y ~ time + treat", large, "ar1(time | subject)"))
    report("AR(1) + (1 | subject), 1,000,000 rows",
           time_ours("y ~ time + treat + (1 | subject)", large, "ar1(time | subject)"))


if __name__ == "__main__":
    main()
