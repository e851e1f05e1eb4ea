"""BayesSetup: what both PyMC models, the exact draws and the post-processing read, and the
posterior's coords (the covariance parameters' names are :mod:`bayeslmm.model.covariance`'s).
"""
from __future__ import annotations

from dataclasses import dataclass

from bayeslmm.linalg.crossprod import CrossProducts
from bayeslmm.model.covariance import random_effect_coords
from bayeslmm.model.priors import ModelPriors
from bayeslmm.model.spec import ModelSpec


@dataclass(frozen=True)
class BayesSetup:
    """Everything both PyMC models and the conditional draws read."""

    spec: ModelSpec
    stats: CrossProducts
    priors: ModelPriors
    residual: object = None  # a bound residual structure (bayeslmm.cov), or None for σ²I

    @property
    def labels(self) -> tuple[str, ...]:
        return self.priors.labels


def coords(spec: ModelSpec, labels) -> dict[str, list]:
    """The posterior's coords: the fixed effects, the rows, then the random effects'
    (:func:`bayeslmm.model.covariance.random_effect_coords`)."""
    return {"fixef": list(spec.fixef_names), "obs": list(range(spec.n))} | random_effect_coords(spec, labels)
