"""NUTS on sleepstudy over the compiled kernel (nutpie) against PyMC's NUTS, in fresh processes.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_kernel.py [--repeats 3]

Each run is a new Python process: ``import bayeslmm`` is timed apart, then model construction
to the finished posterior (4 chains × 1,000 draws after 1,000 tuning steps, the defaults).  The
kernel's first run uses an empty numba cache directory (``NUMBA_CACHE_DIR``): the first-ever
compile; later runs load the kernel from that cache.  Prints seconds, minimum bulk ESS, ESS per
second, max R-hat and divergences.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

CHILD = """
import json, sys, time
t0 = time.perf_counter()
import bayeslmm as blm
t1 = time.perf_counter()
data = blm.datasets.load("sleepstudy")
model = blm.LMM("Reaction ~ Days + (Days | Subject)", data)
post = model.fit(method="NUTS", sampler=sys.argv[1], random_seed=int(sys.argv[2]), progressbar=False)
t2 = time.perf_counter()
d = post.diagnostics
print(json.dumps({"import": t1 - t0, "fit": t2 - t1, "ess_bulk": d["min_ess_bulk"], "r_hat": d["max_r_hat"],
                  "divergences": d["divergences"], "sampler": post.sampler}))
"""


def run(sampler: str, seed: int, cache: str) -> dict:
    env = dict(os.environ, NUMBA_CACHE_DIR=cache)
    out = subprocess.run([sys.executable, "-c", CHILD, sampler, str(seed)], env=env, capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def report(label: str, r: dict) -> None:
    print(f"{label:<22} import {r['import']:5.2f} s  fit {r['fit']:6.2f} s  min bulk ESS {r['ess_bulk']:7.0f}  "
          f"ESS/s {r['ess_bulk'] / r['fit']:8.0f}  max R-hat {r['r_hat']:.4f}  divergences {r['divergences']}",
          flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.2f}", flush=True)
    with tempfile.TemporaryDirectory() as cache:
        report("kernel, cold cache", run("kernel", 100, cache))
        for i in range(args.repeats):
            report("kernel, warm cache", run("kernel", 101 + i, cache))
            report("pymc (PyMC's NUTS)", run("pymc", 101 + i, cache))
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
