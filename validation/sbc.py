"""Simulation-based calibration (Talts et al. 2018) of the marginalised NUTS sampler.

    .venv/bin/python validation/sbc.py [--case slopes|ar1] [--replicates 100] [--out docs/validation]

Replicates are independent (replicate k uses the random stream [SEED, k]), so the work can be
split over processes and merged:

    .venv/bin/python validation/sbc.py --first 0 --replicates 50 --part a &
    .venv/bin/python validation/sbc.py --first 50 --replicates 50 --part b &
    wait; .venv/bin/python validation/sbc.py --merge a b

(add ``--case ar1`` or ``--case crossed`` to all three for those cases; their files are named
sbc_ar1_* and sbc_crossed_*).

For each replicate: draw the parameters from fixed priors, simulate y on a fixed design
(30 groups × 8 observations), fit with method="NUTS" (marginalised, 2 chains × 500 draws),
thin to 100 draws and record the rank of each true value among them.  Two cases:

- ``slopes``: y ~ x + (x | g): β, the two sds, their correlation and σ;
- ``ar1``: y ~ x + (1 | g) with AR(1) errors over t = 1…8 within g (``residual="ar1(t | g)"``):
  β, the intercept sd, σ and ρ (uniform on (−1, 1), the default prior);
- ``crossed``: y ~ x + (1 + x | subj) + (1 | item), 16 subjects × 10 items (its own design):
  β, both subject sds and their correlation, the item sd and σ (two grouping factors: the
  blocked Cholesky's exact gradient drives NUTS).
  If the sampler and the exact conditional draws are
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
from bayeslmm.model.priors import HalfNormal, Normal

GROUPS, PER_GROUP, THIN_TO = 30, 8, 100
BETA_PRIORS = {"(Intercept)": Normal(0, 1), "x": Normal(0, 1), "sigma": HalfNormal(1.0)}


def design(rng) -> pd.DataFrame:
    g = np.repeat([f"g{i:02d}" for i in range(GROUPS)], PER_GROUP)
    return pd.DataFrame({"x": rng.normal(size=g.size), "g": g, "t": np.tile(np.arange(1, PER_GROUP + 1), GROUPS)})


def draw_beta(rng, data: pd.DataFrame) -> dict:
    """β from its prior (γ0 is the intercept at mean(x), as bayeslmm's priors define it)."""
    gamma0, slope = rng.normal(0, 1, 2)
    return {"beta[(Intercept)]": gamma0 - slope * data["x"].mean(), "beta[x]": slope}


def fixed_part(truth: dict, data: pd.DataFrame) -> np.ndarray:
    return truth["beta[(Intercept)]"] + truth["beta[x]"] * data["x"].to_numpy()


class Slopes:
    formula, residual = "y ~ x + (x | g)", None
    design = staticmethod(design)
    priors = BETA_PRIORS | {"g": {"sd": HalfNormal(1.0), "eta": 2.0}}
    parameters = ["beta[(Intercept)]", "beta[x]", "sd[(Intercept)]", "sd[x]", "corr", "sigma"]

    @staticmethod
    def draw_truth(rng, data: pd.DataFrame) -> dict:
        truth = draw_beta(rng, data)
        sd = np.abs(rng.normal(0, 1, 2))
        # LKJ(2) for a 2×2 correlation: (r + 1)/2 ~ Beta(2, 2)
        return truth | {"sd[(Intercept)]": sd[0], "sd[x]": sd[1], "corr": 2 * rng.beta(2, 2) - 1,
                        "sigma": abs(rng.normal(0, 1))}

    @staticmethod
    def simulate(rng, data: pd.DataFrame, truth: dict) -> pd.DataFrame:
        sd0, sd1, r = truth["sd[(Intercept)]"], truth["sd[x]"], truth["corr"]
        b = rng.multivariate_normal(np.zeros(2), [[sd0**2, r * sd0 * sd1], [r * sd0 * sd1, sd1**2]], GROUPS)
        codes = pd.factorize(data["g"])[0]
        mu = fixed_part(truth, data) + b[codes, 0] + b[codes, 1] * data["x"].to_numpy()
        return data.assign(y=mu + truth["sigma"] * rng.normal(size=len(data)))

    @staticmethod
    def draws(p) -> dict:
        sd = _flat(p["sd_g"])
        return {"sd[(Intercept)]": sd[:, 0], "sd[x]": sd[:, 1], "corr": _flat(p["corr_g"])[:, 0]}


class AR1:
    formula, residual = "y ~ x + (1 | g)", "ar1(t | g)"
    design = staticmethod(design)
    priors = BETA_PRIORS | {"g": {"sd": HalfNormal(1.0)}}
    parameters = ["beta[(Intercept)]", "beta[x]", "sd[(Intercept)]", "sigma", "rho"]

    @staticmethod
    def draw_truth(rng, data: pd.DataFrame) -> dict:
        truth = draw_beta(rng, data)
        return truth | {"sd[(Intercept)]": abs(rng.normal(0, 1)), "sigma": abs(rng.normal(0, 1)),
                        "rho": rng.uniform(-1, 1)}

    @staticmethod
    def simulate(rng, data: pd.DataFrame, truth: dict) -> pd.DataFrame:
        """Stationary AR(1) errors within each group: Cov(e_t, e_s) = σ² ρ^|t − s|."""
        rho, sigma = truth["rho"], truth["sigma"]
        shocks = rng.normal(size=(GROUPS, PER_GROUP))
        errors = np.empty_like(shocks)
        errors[:, 0] = sigma * shocks[:, 0]
        for t in range(1, PER_GROUP):
            errors[:, t] = rho * errors[:, t - 1] + sigma * np.sqrt(1 - rho**2) * shocks[:, t]
        b = truth["sd[(Intercept)]"] * rng.normal(size=GROUPS)
        codes = pd.factorize(data["g"])[0]
        return data.assign(y=fixed_part(truth, data) + b[codes] + errors.ravel())

    @staticmethod
    def draws(p) -> dict:
        return {"sd[(Intercept)]": _flat(p["sd_g"])[:, 0], "rho": _flat(p["rho"])}


class Crossed:
    """Subjects × items, every subject meeting every item once, slopes on the subjects."""

    formula, residual = "y ~ x + (1 + x | subj) + (1 | item)", None
    priors = BETA_PRIORS | {"subj": {"sd": HalfNormal(1.0), "eta": 2.0}, "item": {"sd": HalfNormal(1.0)}}
    parameters = ["beta[(Intercept)]", "beta[x]", "sd_subj[(Intercept)]", "sd_subj[x]", "corr_subj",
                  "sd_item", "sigma"]
    SUBJECTS, ITEMS = 16, 10

    @classmethod
    def design(cls, rng) -> pd.DataFrame:
        subj = np.repeat([f"s{i:02d}" for i in range(cls.SUBJECTS)], cls.ITEMS)
        item = np.tile([f"i{j:02d}" for j in range(cls.ITEMS)], cls.SUBJECTS)
        return pd.DataFrame({"x": rng.normal(size=subj.size), "subj": subj, "item": item})

    @staticmethod
    def draw_truth(rng, data: pd.DataFrame) -> dict:
        truth = draw_beta(rng, data)
        sd = np.abs(rng.normal(0, 1, 3))
        return truth | {"sd_subj[(Intercept)]": sd[0], "sd_subj[x]": sd[1], "corr_subj": 2 * rng.beta(2, 2) - 1,
                        "sd_item": sd[2], "sigma": abs(rng.normal(0, 1))}

    @classmethod
    def simulate(cls, rng, data: pd.DataFrame, truth: dict) -> pd.DataFrame:
        sd0, sd1, r = truth["sd_subj[(Intercept)]"], truth["sd_subj[x]"], truth["corr_subj"]
        b = rng.multivariate_normal(np.zeros(2), [[sd0**2, r * sd0 * sd1], [r * sd0 * sd1, sd1**2]], cls.SUBJECTS)
        c = truth["sd_item"] * rng.normal(size=cls.ITEMS)
        subj, item = pd.factorize(data["subj"])[0], pd.factorize(data["item"])[0]
        mu = fixed_part(truth, data) + b[subj, 0] + b[subj, 1] * data["x"].to_numpy() + c[item]
        return data.assign(y=mu + truth["sigma"] * rng.normal(size=len(data)))

    @staticmethod
    def draws(p) -> dict:
        sd = _flat(p["sd_subj"])
        return {"sd_subj[(Intercept)]": sd[:, 0], "sd_subj[x]": sd[:, 1], "corr_subj": _flat(p["corr_subj"])[:, 0],
                "sd_item": _flat(p["sd_item"])[:, 0]}


CASES = {"slopes": Slopes, "ar1": AR1, "crossed": Crossed}


def _flat(values) -> np.ndarray:
    return values.values.reshape(-1, *values.shape[2:])


def posterior_draws(post, case) -> dict:
    beta = _flat(post.posterior["beta"])
    return {"beta[(Intercept)]": beta[:, 0], "beta[x]": beta[:, 1], "sigma": _flat(post.posterior["sigma"])} | \
        case.draws(post.posterior)


SEED = 20261121


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replicates", type=int, default=100)
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument("--part", help="write ranks to <out>/sbc[_CASE]_part_<PART>.json and stop")
    parser.add_argument("--merge", nargs="+", help="merge these parts and report")
    parser.add_argument("--out", default="docs/validation")
    parser.add_argument("--case", default="slopes", choices=list(CASES))
    args = parser.parse_args()
    out, case = Path(args.out), CASES[args.case]
    prefix = "sbc" if args.case == "slopes" else f"sbc_{args.case}"  # the slopes case keeps its file names
    if args.merge:
        parts = [json.loads((out / f"{prefix}_part_{p}.json").read_text()) for p in args.merge]
        report({name: sum((part[name] for part in parts), []) for name in case.parameters}, out, prefix)
        return
    ranks = run(case, range(args.first, args.first + args.replicates))
    if args.part:
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{prefix}_part_{args.part}.json").write_text(json.dumps(ranks))
    else:
        report(ranks, out, prefix)


def run(case, replicates) -> dict:
    ranks = {name: [] for name in case.parameters}
    for replicate in replicates:
        rng = np.random.default_rng([SEED, replicate])
        data = case.design(rng)
        truth = case.draw_truth(rng, data)
        sample = case.simulate(rng, data, truth)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            post = blm.LMM(case.formula, sample, residual=case.residual).fit(
                method="NUTS", draws=500, tune=500, chains=2, random_seed=replicate, progressbar=False,
                priors=case.priors, log_likelihood=False)
        draws = posterior_draws(post, case)
        for name in case.parameters:
            thinned = draws[name][:: len(draws[name]) // THIN_TO][:THIN_TO]
            ranks[name].append(int((thinned < truth[name]).sum()))
        print(f"replicate {replicate} done", flush=True)
    return ranks


def report(ranks: dict, out: Path, prefix: str) -> None:
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
    (out / f"{prefix}_table.md").write_text("\n".join(lines) + "\n")
    (out / f"{prefix}_ranks.json").write_text(json.dumps({"ranks": ranks, "summary": rows}, indent=1))
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
    fig.savefig(out / f"{prefix}_ranks.png", dpi=100)


if __name__ == "__main__":
    main()
