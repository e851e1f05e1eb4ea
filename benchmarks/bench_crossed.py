"""Crossed and nested designs with slopes (issue 12): bayeslmm against lme4 (and rstanarm), same run.

    .venv/bin/python benchmarks/bench_crossed.py [--large] [--bayes] [--bayes-maximal]

Each design is simulated with a seed and written to one CSV that both tools read.  lme4 is
timed inside R around the lmer call only; ours around LMM(...).fit() with the data already
in a DataFrame (after an untimed warm-up fit).  Both fit by REML with default settings; cheap
designs take the best of --repeats fits in each tool.  Printed: seconds, REML log-likelihoods,
ours − lme4 (≥ −1e-6 means ours reached lme4's optimum; ≤ 1e-6 that lme4 reached ours), lme4's
convergence messages, and the ratio ours / lme4 with the issue's target.

- subjects × items, 56 × 32 fully crossed (1,792 rows): the maximal 4 + 4 model (target ≤ 0.1×)
  and (1 + prec | subj) + (1 + prec | item);
- three factors: pupils in classes in schools, crossed with neighbourhoods (2,400 rows), target
  ≤ 0.2×; also ours in a fresh process with OPENBLAS_NUM_THREADS=1 and with the default;
- InstEval-sized: 73,421 rows, 2,972 × 1,128 × 14 levels (target ≤ 0.1×);
- --large: 1M ratings, 60,000 users × 8,000 items, ours in a child process (peak RSS from
  getrusage, under an address-space cap so that a dense L22 fails instead of swamping the
  machine); target < 60 s within 8 GB;
- --bayes: NUTS, 4 × 1,000 draws after 1,000 tuning steps, marginalised, on the 1,792 rows with
  (1 + prec | subj) + (1 + prec | item), against rstanarm's stan_lmer (same chains, draws and
  cores) when R has rstanarm; --bayes-maximal adds the 4 + 4 model.  Bulk ESS in both tools is
  the minimum over fixed effects, random-effect sds (stan_lmer: variances, the same ranks) and σ.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

import bayeslmm as blm

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from bench_bayes import time_ours as sample_ours  # noqa: E402
from rscript import run_r_on_csv  # noqa: E402

MAXIMAL = "y ~ x1 + x2 + x3 + (1 + x1 + x2 + x3 | subj) + (1 + x1 + x2 + x3 | item)"  # stan_glmer refuses 'b' as a name
PREC = "y ~ prec + (1 + prec | subj) + (1 + prec | item)"
THREE_FACTOR = "y ~ ses + (1 + ses | school) + (1 | class) + (1 | hood)"
INSTEVAL = "y ~ x + (1 | s) + (1 | d) + (1 | dept)"
RATINGS = "y ~ x + (1 | user) + (1 | item)"
ADDRESS_SPACE_CAP = 12 * 2**30  # bytes; the target is 8 GB of resident memory
TOLERANCE = 1e-6
DEFAULT_DESIGNS = ["maximal", "prec", "three", "insteval"]
LARGE_TIMEOUT = 1_200  # seconds for each tool's 1M-row fit before it is reported as not finished


# --- simulated designs ------------------------------------------------------------------------

def labels(prefix: str, codes: np.ndarray) -> np.ndarray:
    return np.char.add(prefix, codes.astype(str))


def correlated_effects(rng, levels: int, sds, correlation: float = 0.3) -> np.ndarray:
    """levels × len(sds) random effects with the given sds and one common correlation."""
    sds = np.asarray(sds, float)
    cor = np.full((sds.size, sds.size), correlation) + (1 - correlation) * np.eye(sds.size)
    return rng.normal(size=(levels, sds.size)) @ np.linalg.cholesky(cor).T * sds  # a zero sd is allowed


def simulate_subjects_items(predictors, subj_sds, item_sds, seed: int) -> pd.DataFrame:
    """56 subjects × 32 items, every pair once; ±0.5 contrasts varying within subjects and items."""
    rng = np.random.default_rng(seed)
    subj, item = (a.ravel() for a in np.meshgrid(np.arange(56), np.arange(32), indexing="ij"))
    design = np.column_stack([np.ones(subj.size)] + [rng.choice([-0.5, 0.5], subj.size) for _ in predictors])
    slopes = np.r_[1.0, np.linspace(0.4, 0.1, len(predictors))]
    b_subj, b_item = correlated_effects(rng, 56, subj_sds), correlated_effects(rng, 32, item_sds)
    y = design @ slopes + (design * b_subj[subj]).sum(1) + (design * b_item[item]).sum(1) + rng.normal(size=subj.size)
    return pd.DataFrame({"y": y, **dict(zip(predictors, design[:, 1:].T)),
                         "subj": labels("s", subj), "item": labels("i", item)})


def simulate_maximal(seed: int = 12) -> pd.DataFrame:
    """Small variances for the item slopes, so that the maximal fit is singular, as is typical."""
    return simulate_subjects_items(["x1", "x2", "x3"], [0.8, 0.4, 0.3, 0.2], [0.5, 0.2, 0.05, 0.0], seed)


def simulate_prec(seed: int = 13) -> pd.DataFrame:
    return simulate_subjects_items(["prec"], [0.8, 0.3], [0.5, 0.2], seed)


def simulate_three_factor(seed: int = 14) -> pd.DataFrame:
    """40 schools × 4 classes × 15 pupils; 50 neighbourhoods crossed with schools."""
    rng = np.random.default_rng(seed)
    school = np.repeat(np.arange(40), 60)
    klass = np.repeat(np.arange(160), 15)
    hood = rng.integers(0, 50, school.size)
    ses = rng.normal(size=school.size)
    b_school = correlated_effects(rng, 40, [0.6, 0.2])
    y = (1 + 0.3 * ses + b_school[school, 0] + b_school[school, 1] * ses + 0.4 * rng.normal(size=160)[klass]
         + 0.3 * rng.normal(size=50)[hood] + rng.normal(size=school.size))
    return pd.DataFrame({"y": y, "ses": ses, "school": labels("s", school), "class": labels("c", klass),
                         "hood": labels("h", hood)})


def simulate_insteval(seed: int = 15) -> pd.DataFrame:
    """InstEval's shape: students × lecturers, each lecturer in one of 14 departments."""
    rng = np.random.default_rng(seed)
    n = 73_421
    s, d = rng.integers(0, 2_972, n), rng.integers(0, 1_128, n)
    dept = rng.integers(0, 14, 1_128)[d]
    x = rng.normal(size=n)
    y = (3 + 0.1 * x + 0.3 * rng.normal(size=2_972)[s] + 0.5 * rng.normal(size=1_128)[d]
         + 0.1 * rng.normal(size=14)[dept] + rng.normal(size=n))
    return pd.DataFrame({"y": y, "x": x, "s": labels("s", s), "d": labels("d", d), "dept": labels("p", dept)})


def simulate_ratings(seed: int = 16) -> pd.DataFrame:
    """1M ratings of 8,000 items by 60,000 users."""
    rng = np.random.default_rng(seed)
    n = 1_000_000
    user, item = rng.integers(0, 60_000, n), rng.integers(0, 8_000, n)
    x = rng.normal(size=n)
    y = 3 + 0.2 * x + 0.5 * rng.normal(size=60_000)[user] + 0.7 * rng.normal(size=8_000)[item] + rng.normal(size=n)
    return pd.DataFrame({"y": y, "x": x, "user": labels("u", user), "item": labels("i", item)})


# --- timing each tool -------------------------------------------------------------------------

def time_ours(formula: str, data: pd.DataFrame, repeats: int = 1) -> dict:
    """Best of `repeats` REML fits (seconds), the log-likelihood and the optimiser's verdict."""
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = blm.LMM(formula, data).fit()
        seconds.append(time.perf_counter() - start)
    return {"seconds": min(seconds), "loglik": fit.loglik, "converged": fit.optsum.converged}


def warm_up() -> None:
    """One untimed fit, so that imports and first-call costs stay out of the timings."""
    time_ours("Reaction ~ Days + (Days | Subject)", blm.datasets.load("sleepstudy"))


LME4_SCRIPT = """
suppressMessages(library(lme4))
d <- read.csv("{path}")
best <- Inf
for (i in seq_len({repeats})) {
  t <- system.time(f <- suppressMessages(suppressWarnings(lmer({formula}, data = d, REML = TRUE))))[["elapsed"]]
  best <- min(best, t)
}
cat(sprintf("%.17g", c(best, as.numeric(logLik(f)), length(f@optinfo$conv$lme4$messages), isSingular(f))), "\\n")
"""


def time_lme4(formula: str, data: pd.DataFrame, repeats: int = 1, timeout: float | None = None) -> dict | None:
    script = LME4_SCRIPT.replace("{formula}", formula).replace("{repeats}", str(repeats))
    out = run_r_on_csv(script, data, "lme4", timeout)
    return None if out is None else {"seconds": out[0], "loglik": out[1], "messages": int(out[2]), "singular": bool(out[3])}


CHILD_SCRIPT = """
import json, resource, sys, time, warnings
sys.path.insert(0, {here!r})
import pandas as pd
from bench_crossed import time_ours, warm_up
data = pd.read_csv({path!r})
warm_up()
rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
result = time_ours({formula!r}, data, {repeats})
result["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
result["rss_before_gb"] = rss_before
print(json.dumps(result))
"""


def cap_address_space() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE_CAP, ADDRESS_SPACE_CAP))


def time_ours_in_child(formula: str, data: pd.DataFrame, repeats: int = 1, env: dict | None = None,
                       cap: bool = False, timeout: float | None = None) -> dict:
    """Our fit in a fresh Python process (its own BLAS threads and peak memory), or why it failed."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "d.csv"
        data.to_csv(path, index=False)
        code = CHILD_SCRIPT.format(here=str(HERE), path=str(path), formula=formula, repeats=repeats)
        try:
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                                 preexec_fn=cap_address_space if cap else None, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"error": f"not finished after {timeout:.0f} s (stopped)"}
    if out.returncode != 0:
        return {"error": f"exit {out.returncode}: {out.stderr.strip()[-400:]}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


# --- reports ----------------------------------------------------------------------------------

def _seconds(seconds: float) -> str:
    """Seconds to the millisecond below 10 s (the small designs' ratios need the digits)."""
    return f"{seconds:8.3f}" if seconds < 10 else f"{seconds:8.2f}"


def report(label: str, ours: dict, lme4: dict | None, target: float | None = None) -> None:
    print(f"\n{label}")
    if "error" in ours:
        print(f"  bayeslmm failed: {ours['error']}")
    else:
        memory = (f", peak RSS {ours['peak_rss_gb']:.2f} GB ({ours['rss_before_gb']:.2f} GB before the fit)"
                  if "peak_rss_gb" in ours else "")
        print(f"  bayeslmm {_seconds(ours['seconds'])} s  logLik {ours['loglik']:.6f}  "
              f"converged {ours['converged']}{memory}")
    if lme4 is None:
        print("  lme4 not timed")
    else:
        print(f"  lme4     {_seconds(lme4['seconds'])} s  logLik {lme4['loglik']:.6f}  "
              f"messages {lme4['messages']} (singular {lme4['singular']})")
    if lme4 is not None and "error" not in ours:
        diff = ours["loglik"] - lme4["loglik"]
        ratio = ours["seconds"] / lme4["seconds"]
        goal = "" if target is None else f" (target ≤ {target}×: {'met' if ratio <= target else 'missed'})"
        print(f"  ours − lme4 logLik {diff:+.2e}: ours reached lme4's {diff >= -TOLERANCE}, "
              f"lme4 reached ours {diff <= TOLERANCE}")
        print(f"  ratio ours / lme4 {ratio:.2f}×{goal}")
    sys.stdout.flush()


def frequentist_design(label: str, formula: str, data: pd.DataFrame, target: float | None, repeats: int,
                       lme4: bool) -> None:
    report(f"{label}: {formula}", time_ours(formula, data, repeats),
           time_lme4(formula, data, repeats) if lme4 else None, target)


def blas_threads(formula: str, data: pd.DataFrame, repeats: int) -> None:
    """Ours in fresh processes with one OpenBLAS thread and with OpenBLAS's default."""
    default = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    one, other = time_ours_in_child(formula, data, repeats, {**default, "OPENBLAS_NUM_THREADS": "1"}), \
        time_ours_in_child(formula, data, repeats, default)
    print(f"  BLAS threads, fresh processes (best of {repeats}):")
    for name, result in (("OPENBLAS_NUM_THREADS=1", one), ("default", other)):
        print(f"    {name:24s} " + (result.get("error") or f"{result['seconds']:.3f} s  logLik {result['loglik']:.9f}"))
    if "error" not in one and "error" not in other:
        print(f"    logLik difference {one['loglik'] - other['loglik']:+.2e}, time default / one thread "
              f"{other['seconds'] / one['seconds']:.2f}×")


def large_design(lme4: bool) -> None:
    data = simulate_ratings()
    ours = time_ours_in_child(RATINGS, data, cap=True, timeout=LARGE_TIMEOUT)
    report(f"1M ratings, 60,000 users × 8,000 items (target < 60 s within 8 GB): {RATINGS}", ours,
           time_lme4(RATINGS, data, timeout=LARGE_TIMEOUT) if lme4 else None)


STAN_SCRIPT = """
suppressMessages(library(rstanarm))
d <- read.csv("{path}")
t <- system.time(f <- stan_lmer({formula}, data = d, chains = 4, iter = 2000, warmup = 1000, cores = 2,
                                seed = 1, refresh = 0))[["elapsed"]]
draws <- as.array(f)
names <- dimnames(draws)[[3]]
variances <- grep("^Sigma\\\\[[^:]*:([^,]*),\\\\1\\\\]$", names, value = TRUE)
keep <- c(grep("^(b|Sigma)\\\\[", names, invert = TRUE, value = TRUE), variances)
ess <- sapply(keep, function(p) rstan::ess_bulk(draws[, , p]))
rhat <- sapply(keep, function(p) rstan::Rhat(draws[, , p]))
div <- sum(sapply(rstan::get_sampler_params(f$stanfit, inc_warmup = FALSE), function(x) sum(x[, "divergent__"])))
cat(t, min(ess), max(rhat), div, "\\n")
"""


def time_rstanarm(formula: str, data: pd.DataFrame) -> dict | None:
    out = run_r_on_csv(STAN_SCRIPT.replace("{formula}", formula), data, "rstanarm")
    return None if out is None else {"wall": out[0], "min_ess": out[1], "max_r_hat": out[2], "divergences": int(out[3])}


def bayes_design(label: str, formula: str, data: pd.DataFrame) -> None:
    ours, stan = sample_ours(formula, data, cores=2), time_rstanarm(formula, data)  # stan_lmer: cores = 2 too
    print(f"\nNUTS 4 × 1,000, {label}: {formula}")
    for name, result in (("bayeslmm", ours), ("stan_lmer", stan)):
        if result is None:
            print(f"  {name:9s} not run")
            continue
        print(f"  {name:9s} {result['wall']:7.1f} s  min bulk ESS {result['min_ess']:6.0f}  "
              f"{result['min_ess'] / result['wall']:6.1f} ESS/s  max R-hat {result['max_r_hat']:.3f}  "
              f"divergences {result['divergences']}")
    if stan is not None:
        rate = (ours["min_ess"] / ours["wall"]) / (stan["min_ess"] / stan["wall"])
        print(f"  ESS/s ours / stan_lmer {rate:.2f}×, seconds ours / stan_lmer {ours['wall'] / stan['wall']:.2f}×")
    sys.stdout.flush()


def cheap_designs(names: list[str], repeats: int, lme4: bool) -> None:
    """The designs run by default; the 2,400-row one also under one and the default BLAS threads."""
    if "maximal" in names:
        frequentist_design("subjects × items 56 × 32, maximal", MAXIMAL, simulate_maximal(), 0.1, 1, lme4)
    if "prec" in names:
        frequentist_design("subjects × items 56 × 32", PREC, simulate_prec(), None, repeats, lme4)
    if "three" in names:
        three = simulate_three_factor()
        frequentist_design("three factors, 2,400 rows", THREE_FACTOR, three, 0.2, repeats, lme4)
        blas_threads(THREE_FACTOR, three, repeats)
    if "insteval" in names:
        frequentist_design("InstEval-sized, 73,421 rows", INSTEVAL, simulate_insteval(), 0.1, 1, lme4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--designs", nargs="*", default=DEFAULT_DESIGNS, choices=DEFAULT_DESIGNS,
                        help="which of the default designs (none: only the flagged ones)")
    parser.add_argument("--large", action="store_true", help="the 1M-row ratings model")
    parser.add_argument("--bayes", action="store_true", help="NUTS against stan_lmer, (1 + prec | ...) model")
    parser.add_argument("--bayes-maximal", action="store_true", help="also NUTS on the maximal 4 + 4 model")
    parser.add_argument("--repeats", type=int, default=3, help="fits per tool on the designs under 2,500 rows")
    parser.add_argument("--no-lme4", action="store_true")
    args = parser.parse_args()
    lme4 = not args.no_lme4
    print("load average (1, 5, 15 min) at the start: %.1f %.1f %.1f on %d cores" % (*os.getloadavg(), os.cpu_count()))
    warm_up()
    cheap_designs(args.designs, args.repeats, lme4)
    if args.large:
        large_design(lme4)
    if args.bayes or args.bayes_maximal:
        bayes_design("1,792 rows", PREC, simulate_prec())
    if args.bayes_maximal:
        bayes_design("1,792 rows, maximal", MAXIMAL, simulate_maximal())

if __name__ == "__main__":
    main()
