"""BayesSetup: what both PyMC models, the exact draws and the post-processing read, and the
names (dims, coords) of the posterior's variables.
"""
from __future__ import annotations

from dataclasses import dataclass

from bayeslmm.linalg.crossprod import CrossProducts
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


def effect_dim(label: str) -> str:
    return f"{label}_effect"


def pair_dim(label: str) -> str:
    return f"{label}_pair"


def term_pairs(term) -> list[tuple[int, int]]:
    """(row, column) of each correlation, lme4's order: lower triangle column by column."""
    return [(r, c) for c in range(term.size) for r in range(c + 1, term.size)]


def coords(spec: ModelSpec, labels) -> dict[str, list]:
    out: dict[str, list] = {"fixef": list(spec.fixef_names), "obs": list(range(spec.n))}
    for factor in spec.factors:
        out[factor.name] = list(factor.levels)
        out[effect_dim(factor.name)] = list(factor.column_names)
    for term, label in zip(spec.terms, labels):
        out[effect_dim(label)] = list(term.column_names)
        pairs = term_pairs(term)
        if pairs:
            out[pair_dim(label)] = [f"{term.column_names[c]},{term.column_names[r]}" for r, c in pairs]
    return out
