"""Frequentist inference timings: profile intervals and the parametric bootstrap, against lme4.

    .venv/bin/python benchmarks/bench_inference.py [--nsim 1000] [--no-lme4]

On sleepstudy, Reaction ~ Days + (Days | Subject) by REML: times ``fit.confint("profile")``,
``fit.bootstrap(nsim)`` (refits of simulated responses) and the simulated exact RLRT of
Reaction ~ Days + (1 | Subject) with 10,000 null values.  If Rscript with lme4 is on the
PATH, times lme4's ``confint(fm, method = "profile")`` and ``bootMer(fm, nsim = nsim)``
(default statistic: fixef) and RLRsim's ``exactRLRT`` (if installed) in the same run, and
prints lme4's time over ours.  Only the call itself is timed on both sides.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import time
import warnings

import bayeslmm as blm

R_SCRIPT = r"""
suppressMessages(library(lme4))
fm <- lmer(Reaction ~ Days + (Days | Subject), sleepstudy)
profile <- system.time(suppressMessages(confint(fm, method = "profile")))[["elapsed"]]
boot <- system.time(b <- bootMer(fm, function(x) {
  c(as.data.frame(VarCorr(x), order = "lower.tri")$sdcor, fixef(x))
}, nsim = NSIM, seed = 1))[["elapsed"]]
rlrt <- NA
if (requireNamespace("RLRsim", quietly = TRUE)) {
  m <- lmer(Reaction ~ Days + (1 | Subject), sleepstudy)
  rlrt <- system.time(RLRsim::exactRLRT(m, nsim = 10000, seed = 1))[["elapsed"]]
}
cat(profile, boot, rlrt, "\n")
"""


def timed(function):
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        function()
    return time.perf_counter() - start


def time_lme4(nsim: int) -> dict | None:
    if shutil.which("Rscript") is None:
        return None
    out = subprocess.run(["Rscript", "-e", R_SCRIPT.replace("NSIM", str(nsim))], capture_output=True, text=True)
    if out.returncode != 0:
        print("lme4 timing failed:", out.stderr.strip().splitlines()[-1:])
        return None
    profile, boot, rlrt = (float(x) for x in out.stdout.split())
    return {"profile CI": profile, "bootstrap": boot, "exact RLRT": rlrt}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nsim", type=int, default=1000)
    parser.add_argument("--no-lme4", action="store_true")
    args = parser.parse_args()
    data = blm.datasets.load("sleepstudy")
    fit = blm.LMM("Reaction ~ Days + (Days | Subject)", data).fit()
    intercept = blm.LMM("Reaction ~ Days + (1 | Subject)", data)
    ours = {
        "profile CI": timed(lambda: fit.confint("profile")),
        "bootstrap": timed(lambda: fit.bootstrap(args.nsim, seed=1)),
        "exact RLRT": timed(lambda: blm.exact_rlrt(intercept, n_sim=10000, seed=1)),
    }
    peers = None if args.no_lme4 else time_lme4(args.nsim)
    print(f"sleepstudy, Reaction ~ Days + (Days | Subject); bootstrap with {args.nsim} refits")
    print(f"{'task':<14}{'bayeslmm (s)':>14}{'lme4 (s)':>12}{'lme4 / ours':>14}")
    for task, seconds in ours.items():
        peer = None if peers is None else peers[task]
        ratio = f"{peer / seconds:14.1f}" if peer == peer and peer is not None else f"{'':>14}"
        peer_text = f"{peer:12.2f}" if peer == peer and peer is not None else f"{'—':>12}"
        print(f"{task:<14}{seconds:14.2f}{peer_text}{ratio}")


if __name__ == "__main__":
    main()
