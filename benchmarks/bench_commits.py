"""The same workloads on two versions of bayeslmm, interleaved in one run: does a change slow anything?

    .venv/bin/python benchmarks/bench_commits.py BEFORE_COMMIT [AFTER_COMMIT] [--repeats 5]

Each version is exported (``git archive``) to a temporary directory and every workload runs in a
fresh process importing that version, alternating between the versions so that machine load
hits both alike.  Prints the median seconds of each workload and after/before.  Only the
public API that both versions share is used (``fit.loglik``, ``coef_table``, ``confint``...).
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]

SETUP = """
import time, warnings
import numpy as np, pandas as pd
import bayeslmm as blm
warnings.simplefilter("ignore")
rng = np.random.default_rng(1)
def slopes(n, groups):
    g = rng.integers(0, groups, n); x = rng.normal(size=n)
    b = rng.normal(size=(groups, 2)) * [1.0, 0.5]
    y = 1 + 0.5 * x + b[g, 0] + b[g, 1] * x + rng.normal(size=n)
    return pd.DataFrame({"y": y, "x": x, "g": np.char.add("g", g.astype(str))})
sleep = blm.datasets.load("sleepstudy"); sitka = blm.datasets.load("Sitka")
pen = blm.datasets.load("Penicillin")
big = slopes(200_000, 2_000)
"""

WORKLOADS = {
    "sleepstudy REML": 'blm.LMM("Reaction ~ Days + (Days | Subject)", sleep).fit()',
    "200k rows, slopes REML": 'blm.LMM("y ~ x + (x | g)", big).fit()',
    "Penicillin crossed REML": 'blm.LMM("diameter ~ 1 + (1 | plate) + (1 | sample)", pen).fit()',
    "Sitka AR(1) REML": 'blm.LMM("size ~ time + (1 | tree)", sitka, residual="ar1(visit | tree)").fit()',
    "sleepstudy KR anova": 'blm.LMM("Reaction ~ Days + (Days | Subject)", sleep).fit().anova(ddf="kenward-roger")',
    "sleepstudy profile confint": 'blm.LMM("Reaction ~ Days + (Days | Subject)", sleep).fit().confint()',
    "sleepstudy bootstrap 200": 'blm.LMM("Reaction ~ Days + (1 | Subject)", sleep).fit().bootstrap(200, seed=1)',
}


def export(commit: str, into: Path) -> Path:
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", commit, "bayeslmm"], cwd=REPO, check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def time_once(tree: Path, statement: str) -> float:
    code = SETUP + f"\nstart = time.perf_counter()\n{statement}\nprint(time.perf_counter() - start)\n"
    out = subprocess.run([sys.executable, "-c", code], cwd=tree, check=True, capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("before")
    parser.add_argument("after", nargs="?", default="HEAD")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        trees = {name: export(commit, Path(tmp) / name) for name, commit in
                 (("before", args.before), ("after", args.after))}
        print(f"{'workload':32s} {'before s':>9s} {'after s':>9s} {'after/before':>12s}", flush=True)
        for label, statement in WORKLOADS.items():
            times = {"before": [], "after": []}
            for _ in range(args.repeats):
                for name, tree in trees.items():
                    times[name].append(time_once(tree, statement))
            before, after = np.median(times["before"]), np.median(times["after"])
            print(f"{label:32s} {before:9.3f} {after:9.3f} {after / before:12.2f}", flush=True)


if __name__ == "__main__":
    main()
