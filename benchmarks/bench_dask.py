"""Fit y ~ x1 + x2 + (1 + x1 | g) from a Dask DataFrame (not a test; issue 14).

The data are generated lazily, partition by partition (``dd.from_map``: one partition of
``GROUPS_PER_PARTITION`` groups × 100 rows at a time), written to Parquet and read back;
the REML fit and the marginalised NUTS posterior then run from the same statistics.

    python benchmarks/bench_dask.py --groups 10000 100000 1000000 [--nuts] [--workers 2]

Prints one line per size: rows, partitions, Parquet write time, REML time (both passes and
the optimiser), peak RSS of this process and of the workers, NUTS time.
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


def run(groups: int, directory: str, nuts: bool, client) -> dict:
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
    if nuts:
        t0 = time.perf_counter()
        post = model.fit(method="NUTS", draws=500, tune=500, chains=2, random_seed=1, progressbar=False)
        out["nuts_s"] = time.perf_counter() - t0
        out["nuts_ess_min"] = float(post.fixef()["ess_bulk"].min())
        out["driver_peak_MB"], out["worker_peak_MB"] = peak_rss_mb(client)
    shutil.rmtree(path, ignore_errors=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--nuts", action="store_true")
    parser.add_argument("--workers", type=int, default=2, help="0: Dask's threads, no cluster")
    parser.add_argument("--directory", default=None, help="where the Parquet files go (a temporary one by default)")
    args = parser.parse_args()
    client = None
    if args.workers:
        from distributed import Client, LocalCluster

        cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True, memory_limit="3GB")
        client = Client(cluster)
    directory = args.directory or tempfile.mkdtemp(prefix="bench_dask_")
    for groups in args.groups:
        print(run(groups, directory, args.nuts, client), flush=True)


if __name__ == "__main__":
    main()
