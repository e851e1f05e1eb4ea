"""BayesSetup: what both PyMC models, the exact draws and the post-processing read, and the
posterior's coords (the covariance parameters' names are :mod:`bayeslmm.model.covariance`'s).
"""
from __future__ import annotations

from dataclasses import dataclass

from bayeslmm.linalg.crossprod import CrossProducts
from bayeslmm.model.covariance import random_effect_coords
from bayeslmm.model.priors import ModelPriors
from bayeslmm.model.residual import BoundStructure
from bayeslmm.model.spec import ModelSpec


@dataclass(frozen=True)
class BayesSetup:
    """Everything both PyMC models and the conditional draws read."""

    spec: ModelSpec
    stats: CrossProducts
    priors: ModelPriors
    residual: BoundStructure | None = None  # None: σ²I

    @property
    def labels(self) -> tuple[str, ...]:
        return self.priors.labels


def coords(spec: ModelSpec, labels) -> dict[str, list]:
    """The posterior's coords: the fixed effects, the rows, then the random effects'
    (:func:`bayeslmm.model.covariance.random_effect_coords`)."""
    rows = list(range(spec.n)) if spec.rows_in_memory else []  # summarised data: no rows to label
    return {"fixef": list(spec.fixef_names), "obs": rows} | random_effect_coords(spec, labels)
