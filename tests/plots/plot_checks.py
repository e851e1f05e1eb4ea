"""The small fits the plot tests draw (each built once per session) and what the tests read
from a figure.  Not a conftest.py: the tests' shared ``conftest`` is tests/conftest.py."""
from __future__ import annotations

from functools import cache

import matplotlib

import bayeslmm as blm

matplotlib.use("Agg")

SLEEP = "Reaction ~ Days + (Days | Subject)"


@cache
def sleep_fit():
    return blm.LMM(SLEEP, blm.datasets.load("sleepstudy")).fit()


@cache
def sleep_posterior():
    model = blm.LMM(SLEEP, blm.datasets.load("sleepstudy"))
    return model.fit(method="NUTS", draws=200, tune=200, chains=2, random_seed=1, progressbar=False)


@cache
def penicillin_fit():
    return blm.LMM("diameter ~ 1 + (1 | plate) + (1 | sample)", blm.datasets.load("Penicillin")).fit()


def artists(ax, gid: str) -> list:
    """The panel's artists with this gid (lines, collections and patches)."""
    return [artist for artist in [*ax.lines, *ax.collections, *ax.patches] if artist.get_gid() == gid]
