"""Simulate tests/data/crossed_maximal_gradient.csv: subjects × items, the "maximal" 4 + 4 design.

56 subjects × 32 items fully crossed (1,792 rows); a, b, c are ±0.5 contrasts, a and b vary
within subjects and items, c between items. Random intercepts and a, b, c slopes on both
factors, correlated; the item c slope and the item b slope have sd 0, so the ML and REML optima
are singular on items. Rerun from the repository root:

    /work/main/.venv/bin/python tests/reference/simulate_gradient_data.py
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def correlated(rng, sds, correlation, size):
    sds = np.asarray(sds, dtype=float)
    cor = np.full((sds.size, sds.size), correlation) + (1 - correlation) * np.eye(sds.size)
    return rng.multivariate_normal(np.zeros(sds.size), cor * np.outer(sds, sds), size=size)


def simulate(seed: int = 2026) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n_subj, n_item = 56, 32
    subj, item = np.repeat(np.arange(n_subj), n_item), np.tile(np.arange(n_item), n_subj)
    a = rng.choice([-0.5, 0.5], subj.size)
    b = np.where((subj + item) % 2 == 0, -0.5, 0.5)
    c = np.where(item % 2 == 0, -0.5, 0.5)  # varies between items only within subjects
    c = np.where((item // 2 + subj) % 2 == 0, c, -c)
    s = correlated(rng, [0.8, 0.5, 0.35, 0.25], 0.4, n_subj)
    i = correlated(rng, [0.6, 0.3, 1e-9, 1e-9], 0.5, n_item)
    design = np.column_stack([np.ones(subj.size), a, b, c])
    y = (2.0 + design @ np.array([0.0, 0.3, -0.2, 0.15])
         + (design * s[subj]).sum(axis=1) + (design * i[item]).sum(axis=1) + rng.normal(0, 1.0, subj.size))
    return pd.DataFrame({"subj": [f"s{k:02d}" for k in subj], "item": [f"i{k:02d}" for k in item],
                         "a": a, "b": b, "c": c, "y": np.round(y, 6)})


if __name__ == "__main__":
    simulate().to_csv(Path(__file__).parents[1] / "data" / "crossed_maximal_gradient.csv", index=False)
