"""NUTS with a residual structure on Sitka: the compiled kernel (nutpie) against PyMC's NUTS, in
fresh processes.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_kernel_residual.py [--repeats 2]

The notebook's AR(1) models of the 79 Sitka spruce trees (395 rows): ``size ~ time * treat``
with ``ar1(visit | tree)`` (nlme's gls), and the same with a random intercept per tree; then
compound symmetry with an sd per treatment.  Each run is a new Python process, ``import
bayeslmm`` timed apart, then model construction to the finished posterior (4 chains × 1,000
draws after 1,000 tuning steps, the defaults; the exact β and b draws, the pointwise
log-likelihood and the diagnostics included).  The kernel's first run of the script uses an
empty numba cache directory (``NUMBA_CACHE_DIR``): the first-ever compile.  Prints seconds,
minimum bulk ESS, ESS per second, max R-hat and divergences, and the ratio of ESS per second.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

MODELS = {
    "AR(1), gls": ("size ~ time * treat", "ar1(visit | tree)"),
    "AR(1) + (1 | tree)": ("size ~ time * treat + (1 | tree)", "ar1(visit | tree)"),
    "CS & het(treat) + (1 | tree)": ("size ~ time * treat + (1 | tree)", "cs(tree) + het(treat)"),
}

CHILD = """
import json, sys, time, warnings
t0 = time.perf_counter()
import bayeslmm as blm
t1 = time.perf_counter()
data = blm.datasets.load("Sitka")
model = blm.LMM(sys.argv[1], data, residual=sys.argv[2])
with warnings.catch_warnings():
    warnings.simplefilter("ignore", blm.PosteriorWarning)
    post = model.fit(method="NUTS", sampler=sys.argv[3], random_seed=int(sys.argv[4]), progressbar=False)
t2 = time.perf_counter()
d = post.diagnostics
print(json.dumps({"import": t1 - t0, "fit": t2 - t1, "ess_bulk": d["min_ess_bulk"], "r_hat": d["max_r_hat"],
                  "divergences": d["divergences"], "sampler": post.sampler}))
"""


def run(formula: str, structure: str, sampler: str, seed: int, cache: str) -> dict:
    env = dict(os.environ, NUMBA_CACHE_DIR=cache)
    out = subprocess.run([sys.executable, "-c", CHILD, formula, structure, sampler, str(seed)], env=env,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def report(label: str, r: dict) -> float:
    rate = r["ess_bulk"] / r["fit"]
    print(f"  {label:<20} import {r['import']:5.2f} s  fit {r['fit']:6.2f} s  min bulk ESS {r['ess_bulk']:6.0f}  "
          f"ESS/s {rate:6.0f}  max R-hat {r['r_hat']:.4f}  divergences {r['divergences']}", flush=True)
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.2f}", flush=True)
    with tempfile.TemporaryDirectory() as cache:
        for number, (label, (formula, structure)) in enumerate(MODELS.items()):
            print(f"{label}: {formula}, residual={structure!r}", flush=True)
            if number == 0:
                report("kernel, cold cache", run(formula, structure, "kernel", 100, cache))
            for i in range(args.repeats):
                ours = report("kernel, warm cache", run(formula, structure, "kernel", 101 + i, cache))
                theirs = report("sampler='pymc'", run(formula, structure, "pymc", 101 + i, cache))
                print(f"  ratio of ESS/s: {ours / theirs:.1f}x", flush=True)
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
