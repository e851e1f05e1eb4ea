"""NUTS: bayeslmm's marginalised sampler against bambi, on the same data in the same run.

    .venv/bin/python benchmarks/bench_bayes.py [--bambi-python PATH] [--skip-20k]

bambi pins formulae < 0.7 while bayeslmm needs ≥ 0.9, so bambi lives in its own
environment: `bash benchmarks/setup_bambi.sh` creates `.venv-bambi`, and this script
runs bambi there on the CSV it writes (after its imports, as ours: pymc and nutpie are imported
before our timing starts; loading our compiled kernels from numba's cache is timed).  Both fit `y ~ x + (x | g)` with 4 chains ×
1,000 draws after 1,000 tuning steps.  Measured: wall time from model construction to
the finished posterior, and the minimum bulk ESS over the fixed effects, the random-effect
sds and σ; printed as ESS per second and the ratio ours / bambi.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import pandas as pd

import bayeslmm as blm

HERE = Path(__file__).parent
SETTINGS = dict(draws=1000, tune=1000, chains=4)

BAMBI_SCRIPT = r"""
import json, sys, time, warnings
warnings.filterwarnings("ignore")
import arviz as az, bambi as bmb, pandas as pd
data = pd.read_csv(sys.argv[1], dtype={sys.argv[3]: str})
start = time.perf_counter()
model = bmb.Model(sys.argv[2], data)
idata = model.fit(draws=1000, tune=1000, chains=4, random_seed=1, progressbar=False)
wall = time.perf_counter() - start
table = az.summary(idata, round_to="none")
keep = [name for name in table.index if "|" not in name or name.endswith("_sigma")]
keep = [name for name in keep if not name.startswith(("mu", "y_mean"))]
print(json.dumps({"wall": wall, "min_ess": float(table.loc[keep, "ess_bulk"].min()), "parameters": keep}))
"""


def simulate_20k(seed: int = 3) -> pd.DataFrame:
    """20,000 rows, 2,000 groups: y ~ x1 + x2 + (1 + x1 | g), sds 1 and 0.5, correlation 0.3, σ = 1."""
    from bench_frequentist import simulate_slopes

    return simulate_slopes(20_000, 2_000, seed)


def time_ours(formula: str, data: pd.DataFrame, cores: int | None = None) -> dict:
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        post = blm.LMM(formula, data).fit(method="NUTS", random_seed=1, progressbar=False, cores=cores,
                                               **SETTINGS)
    wall = time.perf_counter() - start
    varcorr = post.varcorr()
    sds_and_sigma = varcorr[varcorr["var2"].isna()]
    ess = float(min(post.fixef()["ess_bulk"].min(), sds_and_sigma["ess_bulk"].min()))
    return {"wall": wall, "min_ess": ess, "divergences": post.diagnostics["divergences"],
            "max_r_hat": post.diagnostics["max_r_hat"]}


def time_bambi(python: str, formula: str, data: pd.DataFrame, group: str) -> dict | None:
    if not Path(python).exists():
        print(f"  (bambi not run: {python} not found; run bash benchmarks/setup_bambi.sh)")
        return None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "data.csv"
        data.to_csv(path, index=False)
        out = subprocess.run([python, "-c", BAMBI_SCRIPT, str(path), formula, group], capture_output=True, text=True)
    if out.returncode != 0:
        print(f"  (bambi failed: {out.stderr.strip()[-300:]})")
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def report(label: str, ours: dict, bambi: dict | None) -> None:
    rate = ours["min_ess"] / ours["wall"]
    print(f"{label} (load average now {os.getloadavg()[0]:.1f})\n  bayeslmm: {ours['wall']:.1f} s, min bulk ESS {ours['min_ess']:.0f} → {rate:.0f} ESS/s "
          f"(divergences {ours['divergences']}, max R-hat {ours['max_r_hat']:.3f})")
    if bambi:
        other = bambi["min_ess"] / bambi["wall"]
        print(f"  bambi:    {bambi['wall']:.1f} s, min bulk ESS {bambi['min_ess']:.0f} → {other:.0f} ESS/s")
        print(f"  ratio:    {rate / other:.1f}x ESS per second")
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bambi-python", default=str(HERE.parent / ".venv-bambi" / "bin" / "python"))
    parser.add_argument("--skip-20k", action="store_true")
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    sleep = blm.datasets.load("sleepstudy")
    formula = "Reaction ~ Days + (Days | Subject)"
    blm.LMM(formula, sleep).pymc_model(marginalize=True)  # import-time costs out of the timing:
    import nutpie  # noqa: F401  pymc, and nutpie (0.8 s: it imports ArviZ and matplotlib), as bambi's script
    report(f"sleepstudy, {formula}", time_ours(formula, sleep), time_bambi(args.bambi_python, formula, sleep, "Subject"))
    if not args.skip_20k:
        data = simulate_20k()
        formula = "y ~ x1 + x2 + (1 + x1 | g)"
        report(f"20,000 rows / 2,000 groups, {formula}", time_ours(formula, data),
               time_bambi(args.bambi_python, formula, data, "g"))


if __name__ == "__main__":
    main()
