"""Fit y ~ x1 + x2 + (1 + x1 | g) from a Dask DataFrame (not a test; issue 14).

The data are generated lazily, partition by partition (``dd.from_map``: one partition of
``GROUPS_PER_PARTITION`` groups × 100 rows at a time), written to Parquet and read back;
the REML fit and the marginalised NUTS posterior then run from the same statistics.

    python benchmarks/bench_dask.py --groups 10000 100000 1000000 [--nuts 500 500] [--workers 2]
    python benchmarks/bench_dask.py --peers 10000 100000   # lme4 and statsmodels, in memory

Prints one line per size: rows, partitions, Parquet write time, REML time (both passes and
the optimiser), peak RSS of this process and of the workers, NUTS time; with ``--peers``,
lme4's (Rscript, data.table's fread) and statsmodels' MixedLM REML fits of the same rows
in memory, with their time and peak memory (``/usr/bin/time``'s maximum resident set).
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import time

import numpy as np
import pandas as pd

ROWS_PER_GROUP = 100
GROUPS_PER_PARTITION = 10_000  # 1M rows per partition
TRUTH = {"beta": (1.0, 0.5, -0.3), "sd": (0.8, 0.3), "cor": 0.2, "sigma": 1.0}


def make_partition(index: int) -> pd.DataFrame:
    """Groups index·G … (index+1)·G − 1, 100 rows each, from a seed of their own."""
    rng = np.random.default_rng(index)
    G, m = GROUPS_PER_PARTITION, ROWS_PER_GROUP
    g = np.repeat(np.arange(index * G, (index + 1) * G), m)
    x1, x2 = rng.normal(size=G * m), rng.normal(size=G * m)
    sd, cor = TRUTH["sd"], TRUTH["cor"]
    cov = np.array([[sd[0] ** 2, cor * sd[0] * sd[1]], [cor * sd[0] * sd[1], sd[1] ** 2]])
    b = rng.multivariate_normal(np.zeros(2), cov, size=G)
    b0, b1 = np.repeat(b[:, 0], m), np.repeat(b[:, 1], m)
    beta = TRUTH["beta"]
    y = beta[0] + beta[1] * x1 + beta[2] * x2 + b0 + b1 * x1 + rng.normal(scale=TRUTH["sigma"], size=G * m)
    return pd.DataFrame({"y": y, "x1": x1, "x2": x2, "g": g})


def peak_rss_mb(client) -> tuple[float, float]:
    """Peak RSS of this process and the largest of the workers' (MB; Linux ru_maxrss is in kB)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if client is None:
        return own, 0.0
    workers = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return own, max(workers.values())


def cpu_seconds() -> float:
    """CPU time of this process so far (user + system, all threads): the shared machine's load
    stretches the wall time, much less the CPU time."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run(groups: int, directory: str, nuts: tuple[int, int] | None, client, loo: bool = False) -> dict:
    """Write, read back and fit one size; ``nuts``: (draws, tune) of a 2-chain posterior, or None;
    ``loo``: then leave-one-group-out LOO of the posterior."""
    import dask.dataframe as dd

    import bayeslmm as blm

    partitions = max(1, groups // GROUPS_PER_PARTITION)
    path = os.path.join(directory, f"data_{groups}")
    t0 = time.perf_counter()
    dd.from_map(make_partition, range(partitions)).to_parquet(path, write_index=False)
    written = time.perf_counter() - t0
    ddf = dd.read_parquet(path)
    t0 = time.perf_counter()
    model = blm.LMM("y ~ x1 + x2 + (1 + x1 | g)", ddf)
    passes = time.perf_counter() - t0
    fit = model.fit()
    reml = time.perf_counter() - t0
    own, worker = peak_rss_mb(client)
    out = {"rows": groups * ROWS_PER_GROUP, "partitions": partitions, "parquet_s": written, "passes_s": passes,
           "reml_s": reml, "driver_peak_MB": own, "worker_peak_MB": worker, "loglik": fit.loglik,
           "sigma": fit.sigma, "sds": fit.varcorr()["sdcor"].round(4).tolist(), "load": os.getloadavg()[0]}
    print(out, flush=True)  # the REML figures before the posterior's
    if nuts:
        t0, cpu0 = time.perf_counter(), cpu_seconds()
        post = model.fit(method="NUTS", draws=nuts[0], tune=nuts[1], chains=2, random_seed=1, progressbar=False)
        out["nuts_s"] = time.perf_counter() - t0
        out["nuts_cpu_s"] = cpu_seconds() - cpu0  # both chains' threads: ≈ 2 × nuts_s on two idle cores
        out["nuts_draws"] = nuts
        out["nuts_ess_bulk_min"] = float(post.varcorr()["ess_bulk"].min())
        out["nuts_driver_peak_MB"], _ = peak_rss_mb(client)  # with b drawn exactly: draws × groups × 2
        out["nuts_steps_per_draw"] = float(post.idata["sample_stats"]["n_steps"].mean())
        out["nuts_load"] = os.getloadavg()[0]
        if loo:  # leave-one-group-out from the per-group statistics of the pass
            t0 = time.perf_counter()
            out["loo_group_elpd"] = float(post.loo(by="group").elpd)
            out["loo_group_s"] = time.perf_counter() - t0
    shutil.rmtree(path, ignore_errors=True)
    return out


LME4 = """
suppressMessages({library(lme4); library(data.table)})
d <- fread("{path}")
t0 <- proc.time()[["elapsed"]]
fit <- lmer(y ~ x1 + x2 + (1 + x1 | g), data = d, REML = TRUE)
cat(sprintf("%.3f %.8f %.10f", proc.time()[["elapsed"]] - t0, as.numeric(logLik(fit)), sigma(fit)), "\n")
"""

STATSMODELS = """
import sys, time
import pandas as pd
import statsmodels.formula.api as smf
d = pd.read_parquet(sys.argv[1])
t0 = time.perf_counter()
fit = smf.mixedlm("y ~ x1 + x2", d, groups=d["g"], re_formula="~x1").fit(reml=True)
print(time.perf_counter() - t0, fit.llf, fit.scale ** 0.5)
"""


def peer(groups: int, directory: str, which: str, timeout: float) -> dict:
    """One peer's in-memory REML fit of the same rows: its time, logLik, σ and peak RSS (MB)."""
    import subprocess
    import sys

    partitions = max(1, groups // GROUPS_PER_PARTITION)
    data = pd.concat([make_partition(k) for k in range(partitions)], ignore_index=True)
    if which == "lme4":
        path = os.path.join(directory, f"peer_{groups}.csv")
        data.to_csv(path, index=False)
        script = os.path.join(directory, "peer.R")
        with open(script, "w") as handle:
            handle.write(LME4.replace("{path}", path))
        command = ["Rscript", script]
    else:
        path = os.path.join(directory, f"peer_{groups}.parquet")
        data.to_parquet(path)
        command = [sys.executable, "-c", STATSMODELS, path]
    del data
    try:
        out = subprocess.run(["/usr/bin/time", "-v", *command], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"peer": which, "rows": groups * ROWS_PER_GROUP, "result": f"not finished after {timeout:.0f} s"}
    finally:
        os.remove(path)
    peak = [line for line in out.stderr.splitlines() if "Maximum resident set size" in line]
    if out.returncode != 0 or not out.stdout.split():
        return {"peer": which, "rows": groups * ROWS_PER_GROUP, "result": out.stderr.strip()[-300:]}
    seconds, loglik, sigma = (float(v) for v in out.stdout.split()[:3])
    return {"peer": which, "rows": groups * ROWS_PER_GROUP, "fit_s": seconds, "loglik": loglik, "sigma": sigma,
            "peak_MB": int(peak[0].split()[-1]) / 1024 if peak else None, "load": os.getloadavg()[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--nuts", type=int, nargs=2, default=None, metavar=("DRAWS", "TUNE"),
                        help="also sample 2 chains of the marginalised posterior")
    parser.add_argument("--loo", action="store_true", help="also leave-one-group-out LOO of the posterior")
    parser.add_argument("--workers", type=int, default=2, help="0: Dask's threads, no cluster")
    parser.add_argument("--directory", default=None, help="where the Parquet files go (a temporary one by default)")
    parser.add_argument("--peers", type=int, nargs="*", default=None, help="sizes (groups) for lme4 and statsmodels")
    parser.add_argument("--peer-timeout", type=float, default=1800)
    args = parser.parse_args()
    if args.peers is not None:
        directory = args.directory or tempfile.mkdtemp(prefix="bench_dask_")
        for groups in args.peers:
            for which in ("lme4", "statsmodels"):
                print(peer(groups, directory, which, args.peer_timeout), flush=True)
        return
    client = None
    if args.workers:
        from distributed import Client, LocalCluster

        cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True, memory_limit="3GB")
        client = Client(cluster)
    directory = args.directory or tempfile.mkdtemp(prefix="bench_dask_")
    for groups in args.groups:
        print(run(groups, directory, args.nuts, client, args.loo), flush=True)


if __name__ == "__main__":
    main()
