"""Simulate the data of the crossed and nested reference cases (issue 12) and write them to tests/data/.

Run from the repository root, then fit them in R:

    python tests/reference/make_crossed_data.py
    Rscript tests/reference/make_crossed_reference.R

Deterministic (NumPy's default generator with fixed seeds); numbers are rounded to 6 decimals,
so R and the tests read exactly the same values.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

DATA = Path("tests") / "data"


def labels(prefix: str, count: int) -> np.ndarray:
    width = len(str(count))
    return np.array([f"{prefix}{i + 1:0{width}d}" for i in range(count)])


def correlated(rng: np.random.Generator, count: int, sds, cor) -> np.ndarray:
    """``count`` draws of N(0, diag(sds) cor diag(sds)) as rows."""
    cov = np.diag(sds) @ np.asarray(cor, dtype=float) @ np.diag(sds)
    return rng.multivariate_normal(np.zeros(len(sds)), cov, size=count, method="eigh")


def crossed_slopes(seed: int = 1201) -> pd.DataFrame:
    """40 subjects x 24 items, 10% of the pairs dropped at random; a continuous x per trial;
    correlated intercepts and slopes for both factors (an interior optimum)."""
    rng = np.random.default_rng(seed)
    n_subj, n_item = 40, 24
    subj, item = np.divmod(np.arange(n_subj * n_item), n_item)
    keep = rng.random(subj.size) >= 0.1
    subj, item = subj[keep], item[keep]
    x = rng.normal(size=subj.size)
    b_subj = correlated(rng, n_subj, [1.0, 0.5], [[1, 0.3], [0.3, 1]])
    b_item = correlated(rng, n_item, [0.7, 0.4], [[1, -0.4], [-0.4, 1]])
    y = (2.0 + 0.5 * x + b_subj[subj, 0] + b_subj[subj, 1] * x + b_item[item, 0] + b_item[item, 1] * x
         + rng.normal(size=subj.size))
    return pd.DataFrame({"subj": labels("s", n_subj)[subj], "item": labels("i", n_item)[item], "x": x, "y": y})


def crossed_maximal(seed: int = 1202) -> pd.DataFrame:
    """56 subjects x 32 items, fully crossed (1,792 rows); a 2x2x2 within-subject and
    within-item design in a Latin square (condition = (subject + item) mod 8), contrasts a, b, c
    of +-0.5; the maximal structure, with slope variances small or zero so the optimum is singular."""
    rng = np.random.default_rng(seed)
    n_subj, n_item = 56, 32
    subj, item = np.divmod(np.arange(n_subj * n_item), n_item)
    condition = (subj + item) % 8
    a, b, c = (((condition >> shift) & 1) - 0.5 for shift in (0, 1, 2))
    cor = [[1, 0.2, 0, 0], [0.2, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]
    b_subj = correlated(rng, n_subj, [0.8, 0.3, 0.1, 0.0], cor)
    b_item = correlated(rng, n_item, [0.5, 0.0, 0.2, 0.05], cor)
    design = np.column_stack([np.ones_like(a), a, b, c])
    y = (design @ np.array([3.0, 0.4, -0.2, 0.1]) + np.sum(design * b_subj[subj], axis=1)
         + np.sum(design * b_item[item], axis=1) + rng.normal(size=subj.size))
    return pd.DataFrame({"subj": labels("s", n_subj)[subj], "item": labels("i", n_item)[item],
                         "a": a, "b": b, "c": c, "y": y})


def schools(seed: int = 1203) -> pd.DataFrame:
    """60 schools x 4 classes x 10 pupils (2,400 rows): classes nested in schools (their labels
    unique), neighbourhoods crossed with schools (each school's pupils live in five of 30
    neighbourhoods); a pupil-level ses with a random slope per school."""
    rng = np.random.default_rng(seed)
    n_school, n_class, n_pupil, n_hood = 60, 4, 10, 30
    school = np.repeat(np.arange(n_school), n_class * n_pupil)
    klass = np.repeat(np.arange(n_school * n_class), n_pupil)
    hood = (school // 2 + rng.integers(0, 5, size=school.size)) % n_hood
    ses = rng.normal(size=school.size)
    b_school = correlated(rng, n_school, [0.8, 0.3], [[1, 0.2], [0.2, 1]])
    y = (1.0 + 0.6 * ses + b_school[school, 0] + b_school[school, 1] * ses
         + rng.normal(scale=0.5, size=n_school * n_class)[klass] + rng.normal(scale=0.4, size=n_hood)[hood]
         + rng.normal(size=school.size))
    class_labels = np.array([f"{s}c{k + 1}" for s in labels("sch", n_school) for k in range(n_class)])
    return pd.DataFrame({"school": labels("sch", n_school)[school], "class": class_labels[klass],
                         "hood": labels("h", n_hood)[hood], "ses": ses, "y": y})


def write(frame: pd.DataFrame, name: str) -> None:
    frame.round(6).to_csv(DATA / f"{name}.csv", index=False)


if __name__ == "__main__":
    if not DATA.is_dir():
        raise SystemExit("run this script from the repository root")
    write(crossed_slopes(), "crossed_slopes")
    write(crossed_maximal(), "crossed_maximal")
    write(schools(), "schools_hoods")
