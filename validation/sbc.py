"""Simulation-based calibration (Talts et al. 2018) of the marginalised NUTS sampler.

    .venv/bin/python validation/sbc.py [--replicates 100] [--out docs/validation]

Replicates are independent (replicate k uses the random stream [SEED, k]), so the work can be
split over processes and merged:

    .venv/bin/python validation/sbc.py --first 0 --replicates 50 --part a &
    .venv/bin/python validation/sbc.py --first 50 --replicates 50 --part b &
    wait; .venv/bin/python validation/sbc.py --merge a b

For each replicate: draw (β, sds, correlation, σ) from fixed priors, simulate y from
y ~ x + (x | g) on a fixed design (30 groups × 8 observations), fit with
method="NUTS" (marginalised, 2 chains × 500 draws), thin to 100 draws and record the
rank of each true value among them.  If the sampler and the exact conditional draws are
right, every parameter's ranks are uniform on 0…100: the script reports a χ² test over
10 bins per parameter and saves the ranks and a histogram.
"""
from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

import bayeslmm as blm
from bayeslmm.priors import HalfNormal, Normal

GROUPS, PER_GROUP, THIN_TO = 30, 8, 100
PRIORS = {"(Intercept)": Normal(0, 1), "x": Normal(0, 1), "g": {"sd": HalfNormal(1.0), "eta": 2.0},
          "sigma": HalfNormal(1.0)}
PARAMETERS = ["beta[(Intercept)]", "beta[x]", "sd[(Intercept)]", "sd[x]", "corr", "sigma"]


def design(rng) -> pd.DataFrame:
    g = np.repeat([f"g{i:02d}" for i in range(GROUPS)], PER_GROUP)
    return pd.DataFrame({"x": rng.normal(size=g.size), "g": g})


def draw_truth(rng, data: pd.DataFrame) -> dict:
    """A draw from PRIORS (γ0 is the intercept at mean(x), as bayeslmm's priors define it)."""
    gamma0, slope = rng.normal(0, 1, 2)
    sd = np.abs(rng.normal(0, 1, 2))
    # LKJ(2) for a 2×2 correlation: (r + 1)/2 ~ Beta(2, 2)
    corr = 2 * rng.beta(2, 2) - 1
    return {"beta[(Intercept)]": gamma0 - slope * data["x"].mean(), "beta[x]": slope, "sd[(Intercept)]": sd[0],
            "sd[x]": sd[1], "corr": corr, "sigma": abs(rng.normal(0, 1))}


def simulate(rng, data: pd.DataFrame, truth: dict) -> pd.DataFrame:
    cov = np.array([[truth["sd[(Intercept)]"] ** 2, truth["corr"] * truth["sd[(Intercept)]"] * truth["sd[x]"]],
                    [truth["corr"] * truth["sd[(Intercept)]"] * truth["sd[x]"], truth["sd[x]"] ** 2]])
    b = rng.multivariate_normal(np.zeros(2), cov, GROUPS)
    codes = pd.factorize(data["g"])[0]
    mu = truth["beta[(Intercept)]"] + truth["beta[x]"] * data["x"] + b[codes, 0] + b[codes, 1] * data["x"]
    return data.assign(y=mu + truth["sigma"] * rng.normal(size=len(data)))


def posterior_draws(post) -> dict:
    p = post.posterior
    flat = lambda a: a.values.reshape(-1, *a.shape[2:])  # noqa: E731
    beta, sd = flat(p["beta"]), flat(p["sd_g"])
    return {"beta[(Intercept)]": beta[:, 0], "beta[x]": beta[:, 1], "sd[(Intercept)]": sd[:, 0], "sd[x]": sd[:, 1],
            "corr": flat(p["corr_g"])[:, 0], "sigma": flat(p["sigma"])}


SEED = 20261121


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replicates", type=int, default=100)
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument("--part", help="write ranks to <out>/sbc_part_<PART>.json and stop")
    parser.add_argument("--merge", nargs="+", help="merge these parts and report")
    parser.add_argument("--out", default="docs/validation")
    args = parser.parse_args()
    out = Path(args.out)
    if args.merge:
        parts = [json.loads((out / f"sbc_part_{p}.json").read_text()) for p in args.merge]
        report({name: sum((part[name] for part in parts), []) for name in PARAMETERS}, out)
        return
    ranks = run(range(args.first, args.first + args.replicates))
    if args.part:
        out.mkdir(parents=True, exist_ok=True)
        (out / f"sbc_part_{args.part}.json").write_text(json.dumps(ranks))
    else:
        report(ranks, out)


def run(replicates) -> dict:
    ranks = {name: [] for name in PARAMETERS}
    for replicate in replicates:
        rng = np.random.default_rng([SEED, replicate])
        data = design(rng)
        truth = draw_truth(rng, data)
        sample = simulate(rng, data, truth)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            post = blm.LMM("y ~ x + (x | g)", sample).fit(method="NUTS", draws=500, tune=500, chains=2,
                                                          random_seed=replicate, progressbar=False, priors=PRIORS,
                                                          log_likelihood=False)
        draws = posterior_draws(post)
        for name in PARAMETERS:
            thinned = draws[name][:: len(draws[name]) // THIN_TO][:THIN_TO]
            ranks[name].append(int((thinned < truth[name]).sum()))
        print(f"replicate {replicate} done", flush=True)
    return ranks


def report(ranks: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, values in ranks.items():
        counts = np.histogram(values, bins=10, range=(0, THIN_TO + 1))[0]
        rows.append({"parameter": name, "replicates": len(values), "chi2_10_bins": stats.chisquare(counts).statistic,
                     "p_value": stats.chisquare(counts).pvalue, "counts": counts.tolist()})
    table = pd.DataFrame(rows)
    print(table.to_string(index=False))
    lines = ["| parameter | replicates | χ² (10 bins, 9 df) | p-value | counts per bin |", "|---|---|---|---|---|"]
    lines += [f"| {r['parameter']} | {r['replicates']} | {r['chi2_10_bins']:.1f} | {r['p_value']:.3f} | "
              f"{' '.join(map(str, r['counts']))} |" for r in rows]
    (out / "sbc_table.md").write_text("\n".join(lines) + "\n")
    (out / "sbc_ranks.json").write_text(json.dumps({"ranks": ranks, "summary": rows}, indent=1))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(ranks), figsize=(3 * len(ranks), 2.6), sharey=True)
    for ax, (name, values) in zip(axes, ranks.items()):
        ax.hist(values, bins=10, range=(0, THIN_TO + 1), color="tab:blue", alpha=0.8)
        ax.axhline(len(values) / 10, color="k", lw=1, ls="--")
        ax.set_title(name, fontsize=9)
    fig.suptitle("SBC rank histograms (uniform if calibrated)")
    fig.tight_layout()
    fig.savefig(out / "sbc_ranks.png", dpi=100)


if __name__ == "__main__":
    main()
